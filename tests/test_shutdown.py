"""Shutdown of a real `lnplugin serve` process under a burst of signals.

`timeout`, systemd and process supervisors may send SIGTERM more than once,
and an operator may press Ctrl-C twice. Every server here has an open event
stream (the case whose shutdown hook takes a lock) and gets a burst of
SIGTERMs and SIGINTs; each must exit, and cleanly.
"""

from __future__ import annotations

import queue
import signal
import socket
import subprocess
import threading
from pathlib import Path

from tests.e2e import Server
from tests.helpers_webhooks import SSEClient

SERVERS = 6
BURST = 30
EXIT_WAIT = 30.0  # a liveness bound, not a timing assertion: shutdown is bounded at 10 s


def test_a_burst_of_signals_during_shutdown_neither_hangs_nor_crashes(tmp_path: Path) -> None:
    servers = [Server(tmp_path / f"s{i}").start() for i in range(SERVERS)]
    streams = []
    try:
        for server in servers:
            assert server.token
            stream = SSEClient(f"{server.url}/events", server.token)
            assert stream.ok
            created = server.request("POST", "/invoices", json={"amount": 1})
            assert created.status_code == 201
            # The stream is live (the hub writes to it) once this event arrives.
            assert stream.next().event == "invoice.incoming.created"
            streams.append(stream)
        for server in servers:
            assert server.proc is not None
            for i in range(BURST):
                server.proc.send_signal(signal.SIGINT if i % 5 == 4 else signal.SIGTERM)
        for server in servers:
            assert server.proc is not None
            try:
                code = server.proc.wait(timeout=EXIT_WAIT)
            except subprocess.TimeoutExpired:
                code = None
            assert code == 0, f"server {server.url} exit code {code}"
            stderr = server.stderr_text()
            assert "Traceback" not in stderr, stderr
    finally:
        for stream in streams:
            stream.close()
        for server in servers:
            if server.proc is not None and server.proc.poll() is None:
                server.proc.kill()
                server.proc.wait(10)


class Trickler:
    """A webhook receiver whose first answer never finishes: it sends the
    status line one byte at a time, each well within the sender's read
    timeout, so that attempt lasts as long as the receiver likes. Later
    connections get a plain `200` at once. `requests` has every request."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.requests: queue.Queue[bytes] = queue.Queue()
        self._closing = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        first = True
        while not self._closing.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            target = self._trickle if first else self._answer
            first = False
            threading.Thread(target=target, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(body) < length:
            body += conn.recv(65536)
        self.requests.put(head)

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            self._read(conn)
            for byte in b"HTTP/1.1 200 OK\r\n" * 100:
                if self._closing.wait(2.0):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            self._read(conn)
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")

    def close(self) -> None:
        self._closing.set()
        self.server.close()


def webhook_id(head: bytes) -> str:
    return next(
        line.split(":", 1)[1].strip()
        for line in head.decode().split("\r\n")
        if line.lower().startswith("webhook-id:")
    )


def test_a_receiver_that_never_finishes_does_not_hold_up_the_stop(tmp_path: Path) -> None:
    """SIGTERM ends the process cleanly (status 0) without waiting for an
    attempt whose receiver is still answering; that delivery stays pending
    and is sent again, with the same webhook-id, by the next start."""
    trickler = Trickler()
    args = ("--webhook-allow", "127.0.0.0/8")
    try:
        server = Server(tmp_path / "data", *args).start()
        assert server.token
        created = server.request(
            "POST",
            "/webhook_endpoints",
            json={
                "url": f"http://127.0.0.1:{trickler.port}/hook",
                "filter_types": ["invoice.incoming.created"],
            },
        )
        assert created.status_code == 201
        assert server.request("POST", "/invoices", json={"amount": 1}).status_code == 201
        first = webhook_id(trickler.requests.get(timeout=EXIT_WAIT))
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        try:
            code = server.proc.wait(timeout=EXIT_WAIT)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            code = None
        stderr = server.stderr_text()
        assert code == 0, stderr
        assert "exiting anyway" not in stderr and "Traceback" not in stderr, stderr

        restarted = Server(tmp_path / "data", *args).start()
        try:
            assert webhook_id(trickler.requests.get(timeout=EXIT_WAIT)) == first
        finally:
            assert restarted.stop() == 0
    finally:
        trickler.close()
