"""Shutdown of a real `lnplugin serve` process under a burst of signals.

`timeout`, systemd and process supervisors may send SIGTERM more than once,
and an operator may press Ctrl-C twice. Every server here has an open event
stream (the case whose shutdown hook takes a lock) and gets a burst of
SIGTERMs and SIGINTs; each must exit, and cleanly.
"""

from __future__ import annotations

import signal
import subprocess
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
            stderr = server.proc.stderr.read() if server.proc.stderr else ""
            assert "Traceback" not in stderr, stderr
    finally:
        for stream in streams:
            stream.close()
        for server in servers:
            if server.proc is not None and server.proc.poll() is None:
                server.proc.kill()
                server.proc.wait(10)
