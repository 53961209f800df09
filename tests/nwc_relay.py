"""A real nostr relay for the NWC tests: the `nostr-relay` package from PyPI,
run as its own process on a free loopback port with its own SQLite file.

`Relay.kill()` and `Relay.start()` again on the same port let a test drop
the relay under a running lnplugin and bring it back.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nostr_relay
import yaml

STARTUP_TIMEOUT = 20.0


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
        default = Path(nostr_relay.__file__).with_name("config.yaml")
        config = yaml.safe_load(default.read_text())
        config["storage"]["sqlalchemy.url"] = f"sqlite+aiosqlite:///{workdir / 'relay.sqlite3'}"
        config["gunicorn"]["bind"] = f"127.0.0.1:{self.port}"
        config["gunicorn"]["loglevel"] = "warning"
        self.config = workdir / "relay.yaml"
        self.config.write_text(yaml.safe_dump(config))

    def start(self) -> Relay:
        exe = shutil.which("nostr-relay", path=os.path.dirname(sys.executable))
        assert exe, "the nostr-relay package is not installed (pip install -e '.[test]')"
        self.proc = subprocess.Popen(
            [exe, "-c", str(self.config), "serve", "--use-uvicorn"],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "relay.log", "ab"),  # noqa: SIM115 - the child keeps it
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError((self.workdir / "relay.log").read_text()[-2000:])
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError("nostr-relay did not start listening")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
