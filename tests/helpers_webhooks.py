"""Real processes for the webhook and SSE tests: an `lnplugin serve` process,
a local HTTP receiver with scripted answers, and a small SSE client.

Nothing here is mocked: the server is the installed `lnplugin` command on a
free port, and deliveries travel over TCP to the receiver.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import requests

from tests.helpers_tls import HTTPSServer

_SCRIPT = Path(sys.executable).parent / "lnplugin"
LNPLUGIN = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "lnplugin"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.02) -> Any:
    """Poll until `check()` is truthy; its value is returned. Fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def run_cli(*args: str, data_dir: Path, env: dict[str, str] | None = None) -> str:
    """Run `lnplugin ARGS --data-dir D`; returns stdout (fails on non-zero exit)."""
    done = subprocess.run(
        [*LNPLUGIN, *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


class Server:
    """`lnplugin serve` as a child process, restartable on the same data dir."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, *args: str) -> None:
        self.data_dir = data_dir
        # Tests make far more calls per minute than an app would; a test that
        # is about the per-token limit sets its own (tests/test_token_rate_limits.py).
        self.env = {
            **os.environ,
            "LNPLUGIN_LOG_LEVEL": "warning",
            "LNPLUGIN_TOKEN_RATE_LIMIT": "1000000/minute",
            **(env or {}),
        }
        self.args = args
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.token = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                *LNPLUGIN,
                "serve",
                "--data-dir",
                str(self.data_dir),
                "--port",
                str(self.port),
                *self.args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=self.env,
        )
        assert self.proc.stdout is not None
        banner = [self.proc.stdout.readline().strip() for _ in range(2)]
        if banner[1].startswith("Admin token (shown once"):
            self.token = self.proc.stdout.readline().strip()
        elif not self.token:
            self.token = run_cli("token", "create", "--scope", "admin", data_dir=self.data_dir)
            self.token = self.token.strip().splitlines()[-1]
        wait_for(self._healthy)
        return self

    def _healthy(self) -> bool:
        try:
            return requests.get(self.url + "/health", timeout=1).status_code < 500
        except requests.RequestException:
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash or power cut."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None

    # -- API shortcuts ----------------------------------------------------------

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def call(self, method: str, path: str, token: str | None = None, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return requests.request(method, self.url + path, headers=headers, timeout=15, **kw)

    def create_invoice(self, **body: Any) -> dict[str, Any]:
        reply = self.call("POST", "/invoices", json={"amount": 10, **body})
        assert reply.status_code == 201, reply.text
        return dict(reply.json())

    def pay(self, payment_hash: str) -> None:
        reply = self.call("POST", "/dev/pay", json={"payment_hash": payment_hash})
        assert reply.status_code == 200, reply.text

    def add_endpoint(self, url: str, types: list[str] | None = None) -> dict[str, Any]:
        types = types or ["invoice.incoming.settled"]
        reply = self.call("POST", "/webhook_endpoints", json={"url": url, "filter_types": types})
        assert reply.status_code == 201, reply.text
        return dict(reply.json())

    def deliveries(self, endpoint_id: str) -> list[dict[str, Any]]:
        reply = self.call("GET", f"/webhook_endpoints/{endpoint_id}/deliveries")
        assert reply.status_code == 200, reply.text
        return list(reply.json())

    def delivery(self, endpoint_id: str, event_id: str) -> dict[str, Any] | None:
        found = [d for d in self.deliveries(endpoint_id) if d["event_id"] == event_id]
        return found[0] if found else None

    def invoice_deliveries(self, payment_hash: str) -> dict[str, dict[str, Any]]:
        """Deliveries to the invoice's own `webhook` URL, by event type."""
        reply = self.call("GET", f"/invoices/{payment_hash}/deliveries")
        assert reply.status_code == 200, reply.text
        return {d["type"]: d for d in reply.json()}

    def wait_invoice_delivery(self, payment_hash: str, type_: str, status: str) -> dict[str, Any]:
        """The invoice's own delivery of its `type_` event, once it has `status`."""

        def check() -> dict[str, Any] | None:
            row = self.invoice_deliveries(payment_hash).get(type_)
            return row if row is not None and row["status"] == status else None

        return dict(wait_for(check))

    def wait_delivered(self, endpoint_id: str, event_id: str) -> dict[str, Any]:
        """The delivery row, once its status is `delivered`."""

        def check() -> dict[str, Any] | None:
            row = self.delivery(endpoint_id, event_id)
            return row if row is not None and row["status"] == "delivered" else None

        return dict(wait_for(check))


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class Receiver:
    """A local webhook receiver. `script[path]` lists status codes to answer in
    turn (the last one repeats); unscripted paths answer 200. A path in
    `hold` blocks its first request until `release` is set; a path in
    `stall` blocks every request until then (`stalled` counts them, and
    `most_stalled` is the most that were blocked at once). `overlapped` lists
    the webhook-id of every request that arrived while another with the same
    id was still unanswered: a sender must never have two attempts of one
    delivery open at once."""

    script: dict[str, list[int]] = field(default_factory=dict)
    hold: set[str] = field(default_factory=set)
    received: list[Received] = field(default_factory=list)
    accepted: dict[str, Received] = field(default_factory=dict)  # by webhook-id: deduplicated
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    overlapped: list[str] = field(default_factory=list)
    stall: set[str] = field(default_factory=set)
    stalled: int = 0
    most_stalled: int = 0
    # Serve HTTPS with this context (tests/helpers_tls.py); `url` then names localhost.
    tls: ssl.SSLContext | None = None

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                path = self.path.split("?")[0]
                item = Received(path, {k.lower(): v for k, v in self.headers.items()}, body)
                msg_id = item.headers.get("webhook-id", "")
                with receiver._lock:
                    receiver.received.append(item)
                    if receiver._open.get(msg_id):
                        receiver.overlapped.append(msg_id)
                    receiver._open[msg_id] = receiver._open.get(msg_id, 0) + 1
                    answers = receiver.script.get(path, [200])
                    code = answers.pop(0) if len(answers) > 1 else answers[0]
                    holding = path in receiver.hold
                    receiver.hold.discard(path)
                    stalling = path in receiver.stall
                    if stalling:
                        receiver.stalled += 1
                        receiver.most_stalled = max(receiver.most_stalled, receiver.stalled)
                if holding:
                    receiver.held.set()
                    receiver.release.wait(30)
                if stalling:
                    receiver.release.wait(30)
                    with receiver._lock:
                        receiver.stalled -= 1
                with receiver._lock:
                    # Answered from here on: the sender's next attempt can only
                    # start after reading this answer, so it is no overlap.
                    receiver._open[msg_id] -= 1
                    if 200 <= code < 300:
                        receiver.accepted.setdefault(msg_id, item)
                self.send_response(code)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self._lock = threading.Lock()
        self._open: dict[str, int] = {}  # unanswered requests by webhook-id
        self._server = HTTPSServer(Handler, self.tls)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def url(self, path: str = "/hook") -> str:
        if self.tls is not None:
            return f"https://localhost:{self._server.server_port}{path}"
        return f"http://127.0.0.1:{self._server.server_port}{path}"

    def close(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def for_event(self, event_id: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.headers.get("webhook-id") == event_id]

    def of_type(self, type_: str, payment_hash: str) -> list[Received]:
        with self._lock:
            items = list(self.received)
        return [
            r
            for r in items
            if r.json["type"] == type_ and r.json["data"].get("payment_hash") == payment_hash
        ]


@dataclass
class SSEEvent:
    id: str | None
    event: str | None
    data: str

    @property
    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.data))


class SSEClient:
    """Reads a text/event-stream response into events and comment lines."""

    def __init__(self, url: str, token: str, last_event_id: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self.response = requests.get(url, headers=headers, stream=True, timeout=20)
        self.comments: list[str] = []
        self._lines = self.response.iter_lines(decode_unicode=True) if self.ok else iter(())

    @property
    def ok(self) -> bool:
        return self.response.status_code == 200

    def events(self) -> Iterator[SSEEvent]:
        """Events until the server closes the stream."""
        fields: dict[str, str] = {}
        data: list[str] = []
        for line in self._lines:
            if line == "":
                if data:
                    yield SSEEvent(fields.get("id"), fields.get("event"), "\n".join(data))
                fields, data = {}, []
            elif line.startswith(":"):
                self.comments.append(line)
            else:
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "data":
                    data.append(value)
                else:
                    fields[name] = value

    def next(self) -> SSEEvent:
        return next(self.events())

    def close(self) -> None:
        self.response.close()
