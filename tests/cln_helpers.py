"""Helpers shared by the Core Lightning end-to-end and plugin-mode tests."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import requests

WAIT = 30.0  # seconds: a liveness bound for background work, not a timing assertion
T = TypeVar("T")

BOOST = {
    "action": "boost",
    "app_name": "Fountain",
    "podcast": "Lab Pod",
    "feedID": "920666",
    "episode": "Ep 1",
    "ts": 123,
    "value_msat_total": "21000",
    "sender_name": "@alice",
    "message": "great episode",
}
BOOST_BYTES = json.dumps(BOOST).encode()
CHAT = b"hello from whatsat"


def wait_for(check: Callable[[], T | None], what: str, timeout: float = WAIT) -> T:
    """Poll `check` until it returns something truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (requests.RequestException, sqlite3.Error) as exc:
            last = exc
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


class Api:
    """A bearer-token client for one running lnplugin (standalone or plugin)."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def get(self, path: str, **kw: Any) -> Any:
        reply = self.session.get(self.url + path, timeout=10, **kw)
        reply.raise_for_status()
        return reply.json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        reply = self.session.post(self.url + path, json=body, timeout=10)
        assert reply.status_code == 201, reply.text
        return reply.json()

    def incoming(self, payment_hash: str) -> dict[str, Any] | None:
        """The invoice from `/invoices/incoming` (settled only), or None."""
        for item in self.get("/invoices/incoming", params={"items": 100}):
            if item["payment_hash"] == payment_hash:
                return item
        return None

    def settled(self, payment_hash: str) -> dict[str, Any] | None:
        reply = self.session.get(f"{self.url}/invoices/{payment_hash}", timeout=10)
        if reply.status_code == 404:
            return None
        reply.raise_for_status()
        item = reply.json()
        return item if item["settled"] else None

    def close(self) -> None:
        self.session.close()


def db(data_dir: Path | str) -> sqlite3.Connection:
    """A read-only look at lnplugin's store, for counts the API does not expose."""
    path = Path(data_dir) / "lnplugin.sqlite"
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)


def scalar(data_dir: Path | str, sql: str, *args: Any) -> Any:
    conn = db(data_dir)
    try:
        return conn.execute(sql, args).fetchone()
    finally:
        conn.close()
