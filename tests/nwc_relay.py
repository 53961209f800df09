"""A real nostr relay for the NWC tests and the benchmark: rust-nostr's local
relay (`lnplugin_sim/nostr_relay.py`, from the `nostr-sdk` package), run as
its own process on a free loopback port.

`Relay.kill()` and `Relay.start()` again on the same port let a test drop
the relay under a running lnplugin and bring it back. The relay keeps events
in memory only, so a restarted relay has forgotten everything, as a relay
that does not store ephemeral events (all NWC traffic) has anyway.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

STARTUP_TIMEOUT = 20.0
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Relay:
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    def start(self) -> Relay:
        log = self.workdir / "relay.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lnplugin_sim.nostr_relay", "--port", str(self.port)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=open(log, "ab"),  # noqa: SIM115 - the child keeps it
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
