"""Run `lnplugin` as a real process, the way an operator does, and talk to it.

`Server` starts `python -m lnplugin serve` on a free port and reads the URL
and the bootstrap admin token from the banner it prints. `run()` runs any
other `lnplugin` command to its end, `cli()` returns its output and
`run_doctor()` runs `lnplugin doctor`. `Api` is a bearer-token client for a
running lnplugin (standalone or plugin mode), `wait_for()` polls for
background work and `scalar()` reads the store. Below them: the keysend
payloads, and the checks and the crash-safety drill that the CLN and LND
end-to-end tests share.

Two fixtures, for a test module to take in as `tmp = e2e.fixture_tmp` and
`api = e2e.fixture_api`: `tmp` is a short directory under /tmp (unix socket
paths must be short), `api` an `Api` with the admin token of the module's own
`server` fixture.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import random
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import bolt11
import pytest
import requests

from tests.nwc_relay import Relay

STARTUP_TIMEOUT = 20.0
WAIT = 30.0  # seconds: a liveness bound for background work, not a timing assertion
T = TypeVar("T")

# -- keysend payloads -------------------------------------------------------------

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


# -- lnplugin as a process --------------------------------------------------------


def run(
    data_dir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `lnplugin ARGS --data-dir DATA_DIR` to its end; `env` replaces the environment."""
    return subprocess.run(
        [sys.executable, "-m", "lnplugin", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def cli(data_dir: Path, *args: str, check: bool = True, env: dict[str, str] | None = None) -> str:
    """Run `lnplugin ARGS --data-dir DATA_DIR`; returns stdout."""
    proc = run(data_dir, *args, env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"lnplugin {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout if check else proc.stdout + proc.stderr


def run_doctor(data_dir: Path, *args: str) -> tuple[int, list[str]]:
    """`lnplugin doctor ARGS` with no LNPLUGIN_ settings inherited: exit code, output lines."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LNPLUGIN_")}
    proc = run(data_dir, "doctor", *args, env=env)
    return proc.returncode, proc.stdout.splitlines()


# The checks `lnplugin doctor` runs for every node kind, after the node's own.
DATA_DIR_CHECKS = ("data dir", "store", "free space", "served by")


def node_lines(lines: list[str]) -> list[str]:
    """Doctor's output without the data-dir checks every node kind shares."""
    return [line for line in lines if line[5:].split(":")[0] not in DATA_DIR_CHECKS]


class Server:
    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.args = args
        # Per-token limits are tested on their own (test_token_limits.py); other
        # tests' admin token is not held to 100 requests a minute.
        self.env = {
            **os.environ,
            "LNPLUGIN_LOG_LEVEL": "warning",
            "LNPLUGIN_TOKEN_RATE_LIMIT": "1000000/minute",
            **(env or {}),
        }
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.token: str | None = None
        self.banner: list[str] = []
        self.session = requests.Session()

    def start(self) -> Server:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lnplugin",
                "serve",
                "--data-dir",
                str(self.data_dir),
                "--port",
                "0",
                *self.args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )
        lines: queue.Queue[str] = queue.Queue()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        stdout = self.proc.stdout

        def pump() -> None:
            for line in stdout:
                lines.put(line.rstrip("\n"))

        threading.Thread(target=pump, daemon=True).start()
        self._drain_stderr(self.proc)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        banner: list[str] = []
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise AssertionError(f"server exited: {self.stderr_text()}") from None
                continue
            banner.append(line)
            if line.startswith(("Admin token:", "No admin token yet")):
                break
            if len(banner) >= 2 and banner[-2].startswith("Admin token (shown once"):
                self.token = line.strip()
                break
        else:
            raise AssertionError(f"no startup banner; got {banner}")
        self.banner = banner
        self.url = banner[0].rsplit(" ", 1)[-1]
        return self

    def _drain_stderr(self, proc: subprocess.Popen[str]) -> None:
        """Read the server's stderr as it is written, on a thread of its own.

        Why: a pipe holds 64 KiB. A server that outlives many tests (a
        module's fixture) and logs a warning per retry fills it, and then
        every thread of the server that logs blocks in `write` for good: a
        relay that never reports itself connected, a request that never
        answers. Reading it here keeps the server's writes from ever waiting."""
        assert proc.stderr is not None
        stream = proc.stderr
        self._stderr: list[str] = []
        self._stderr_read = 0

        def drain() -> None:
            with contextlib.suppress(OSError, ValueError):
                for line in stream:
                    self._stderr.append(line)

        self._stderr_done = threading.Thread(target=drain, daemon=True)
        self._stderr_done.start()

    def stderr_text(self) -> str:
        """Everything the server wrote to stderr; once it has exited, all of it."""
        if self.proc is not None and self.proc.poll() is not None:
            self._stderr_done.join(10)
        return "".join(self._stderr)

    def stderr_since(self) -> str:
        """What the server wrote to stderr since the last call (not waiting)."""
        lines = self._stderr[self._stderr_read :]
        self._stderr_read += len(lines)
        return "".join(lines)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=20)
        self.session.close()
        return code

    def request(self, method: str, path: str, token: str | None = None, **kw: Any) -> Any:
        headers = kw.pop("headers", {})
        if token or self.token:
            headers.setdefault("Authorization", f"Bearer {token or self.token}")
        return self.session.request(method, self.url + path, headers=headers, timeout=10, **kw)

    def health(self) -> Any:
        """`GET /health` as its operator sees it (the follower's position, NWC),
        with the status key from the data dir's lock file, as `lnplugin status`
        reads it: a restarted server prints no token to send instead."""
        from lnplugin.api.info import STATUS_KEY_HEADER
        from lnplugin.service import serving

        found = serving(self.data_dir)
        assert found is not None and found.status_key, "the server noted no status key"
        return self.request("GET", "/health", headers={STATUS_KEY_HEADER: found.status_key}).json()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()


# -- talking to it ----------------------------------------------------------------


def cltv_delta_of_new_invoice(server: Server, **body: Any) -> int:
    """POST /invoices with `body` (it must answer 201): the final CLTV delta
    (BOLT11 `c`) of the invoice it made, read by the reference decoder."""
    r = server.request("POST", "/invoices", json=body)
    assert r.status_code == 201, r.text
    return int(bolt11.decode(r.json()["payment_request"]).min_final_cltv_expiry)


def hold_pair() -> tuple[str, str]:
    """A preimage an app keeps and the payment hash it makes a hold invoice for (hex)."""
    preimage = secrets.token_bytes(32)
    return preimage.hex(), hashlib.sha256(preimage).hexdigest()


def wait_for(check: Callable[..., T | None], what: str, timeout: float = WAIT) -> T:
    """Poll `check` until it returns something truthy; fail after `timeout`.

    `check` is called with no arguments. It is typed `Callable[..., ...]`
    because mypy cannot infer a lambda that binds a loop variable as a
    default (`lambda h=h: ...`) against `Callable[[], ...]`."""
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


# -- fixtures ---------------------------------------------------------------------


@pytest.fixture(name="tmp")
def fixture_tmp(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A fresh directory under /tmp named after the test module (pytest's own can be
    too long for a unix socket path)."""
    prefix = request.module.__name__.rpartition(".")[2].removeprefix("test_") + "-"
    path = Path(tempfile.mkdtemp(dir="/tmp", prefix=prefix))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(name="relay", scope="module")
def fixture_relay(home: Path) -> Iterator[Relay]:
    """A real nostr relay process in the test module's `home` directory, for
    the whole module (the NWC tests)."""
    relay = Relay(home / "relay").start()
    yield relay
    relay.kill()


@pytest.fixture(name="api")
def fixture_api(server: Server) -> Iterator[Api]:
    """An `Api` with the admin token of the test module's `server` fixture."""
    assert server.token
    client = Api(server.url, server.token)
    yield client
    client.close()


# -- checks the node end-to-end tests share ---------------------------------------


def create_pay_and_see_the_settlement(api: Api, kind: str, pay: Callable[[str], object]) -> None:
    """Create an invoice over HTTP, `pay` its BOLT11 on the node, and see the settlement
    (with a preimage that matches) by hash and in the incoming list."""
    info = api.get("/info")
    assert info["node"]["kind"] == kind and info["node"]["network"] == "regtest"
    created = api.post("/invoices", {"amount": 50, "description": "via lnplugin"})
    assert created["payment_request"].startswith("lnbcrt500n1")
    pay(created["payment_request"])
    got = wait_for(lambda: api.settled(created["payment_hash"]), "settlement")
    assert got["amount_received_msat"] == 50_000 and got["state"] == "SETTLED"
    assert hashlib.sha256(bytes.fromhex(got["preimage"])).hexdigest() == created["payment_hash"]
    listed = api.incoming(created["payment_hash"])
    assert listed is not None and listed["identifier"] == created["identifier"]


# -- crash safety -----------------------------------------------------------------


def stored_once(data_dir: Path, count: int) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """Wait for `count` settled rows, then (counts, events, cursor) from the store."""
    wait_for(
        lambda: (
            scalar(data_dir, "SELECT COUNT(*) FROM invoices WHERE state = 'SETTLED'")[0] >= count
        ),
        "all settlements stored",
        timeout=60,
    )
    counts = scalar(
        data_dir,
        "SELECT COUNT(*), COUNT(DISTINCT payment_hash), MAX(list_seq) FROM invoices "
        "WHERE type = 'incoming' AND state = 'SETTLED'",
    )
    events = scalar(
        data_dir,
        "SELECT COUNT(*), COUNT(DISTINCT payment_hash) FROM events WHERE type = ?",
        "invoice.incoming.settled",
    )
    cursor = scalar(data_dir, "SELECT value FROM cursors WHERE name = 'incoming'")[0]
    return counts, events, cursor


@dataclass
class Killed:
    """How a `sigkill_while_settling` drill went, and what the store held after it."""

    kills: int
    stored_at_kills: list[int]  # rows stored at each kill, for the log
    counts: tuple[int, ...]  # settled incoming: rows, distinct payment hashes, max list_seq
    events: tuple[int, ...]  # invoice.incoming.settled: events, distinct payment hashes
    cursor: int  # the persisted `incoming` cursor
    elapsed: float

    def __str__(self) -> str:
        return (
            f"kills={self.kills} elapsed={self.elapsed:.1f}s counts={self.counts} "
            f"events={self.events} cursor={self.cursor} stored_at_kills={self.stored_at_kills}"
        )


def sigkill_while_settling(
    serve: Callable[[], Server], settle: Callable[[], object], count: int, min_kills: int
) -> Killed:
    """Start lnplugin, then `settle` in a thread; SIGKILL lnplugin every 0.3-0.5 s and
    start it again until `settle` returned and it was killed `min_kills` times. Then
    wait for `count` settled rows and read what the store holds."""
    server = serve().start()
    data_dir = server.data_dir
    started = time.monotonic()
    settling = threading.Thread(target=settle, daemon=True)
    settling.start()
    kills = 0
    progress: list[int] = []
    try:
        while settling.is_alive() or kills < min_kills:
            time.sleep(random.uniform(0.3, 0.5))
            server.stop(signal.SIGKILL)
            kills += 1
            progress.append(scalar(data_dir, "SELECT COUNT(*) FROM invoices")[0])
            server = serve().start()
        counts, events, cursor = stored_once(data_dir, count)
    finally:
        server.stop()
    return Killed(kills, progress, counts, events, cursor, time.monotonic() - started)
