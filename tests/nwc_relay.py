"""A real nostr relay for the NWC tests and the benchmark: rust-nostr's local
relay (`lnplugin_sim/nostr_relay.py`, from the `nostr-sdk` package), run as
its own process on a free loopback port.

`Relay.kill()` and `Relay.start()` again on the same port let a test drop
the relay under a running lnplugin and bring it back. The relay keeps events
in memory only, so a restarted relay has forgotten everything, as a relay
that does not store ephemeral events (all NWC traffic) has anyway.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

STARTUP_TIMEOUT = 20.0
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Relay:
    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        notes_per_minute: int | None = None,
        auth: str | None = None,
    ) -> None:
        self.workdir = workdir
        self.notes_per_minute = notes_per_minute
        self.auth = auth  # NIP-42: "read", "write" or "both" (lnplugin_sim/nostr_relay.py)
        self.port = port or free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    def start(self) -> Relay:
        log = self.workdir / "relay.log"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lnplugin_sim.nostr_relay",
                "--port",
                str(self.port),
                "--log-level",
                "warn",
                *(
                    ["--notes-per-minute", str(self.notes_per_minute)]
                    if self.notes_per_minute
                    else []
                ),
                *(["--auth", self.auth] if self.auth else []),
            ],
            cwd=ROOT,
            stdout=open(log, "ab"),  # noqa: SIM115 - the child keeps it
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(log.read_text()[-2000:])
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.02)
        raise AssertionError("the nostr relay did not start listening")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)


class Gate:
    """A TCP proxy in front of a relay, for lnplugin's side only, so a test
    decides when lnplugin can reach the relay while the app (connected to the
    relay directly) stays subscribed.

    `close()` drops every connection through it and turns new ones away;
    `open()` lets them through again; `hold()` keeps lnplugin's connection up
    but swallows what lnplugin sends (counted in `swallowed`), so its events
    never reach the relay and are never acknowledged.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream = upstream_port
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        self.state = "open"
        self.swallowed = 0
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def open(self) -> None:
        self.state = "open"

    def hold(self) -> None:
        self.swallowed = 0
        self.state = "hold"

    def close(self) -> None:
        self.state = "closed"
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def stop(self) -> None:
        self.close()
        self._server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self.state == "closed":
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream), timeout=2)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_lnplugin: bool) -> None:
        try:
            while data := source.recv(65536):
                if from_lnplugin and self.state == "hold":
                    self.swallowed += len(data)
                    continue
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
