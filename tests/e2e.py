"""Run `lnplugin` as a real process, the way an operator does.

`Server` starts `python -m lnplugin serve` on a free port and reads the URL
and the bootstrap admin token from the banner it prints. `cli()` runs any
other `lnplugin` command and returns its output.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests

STARTUP_TIMEOUT = 20.0


def cli(data_dir: Path, *args: str, check: bool = True, env: dict[str, str] | None = None) -> str:
    """Run `lnplugin ARGS --data-dir DATA_DIR`; returns stdout."""
    proc = subprocess.run(
        [sys.executable, "-m", "lnplugin", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"lnplugin {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout if check else proc.stdout + proc.stderr


class Server:
    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.args = args
        self.env = {**os.environ, "LNPLUGIN_LOG_LEVEL": "warning", **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.token: str | None = None
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
        assert self.proc.stdout is not None
        stdout = self.proc.stdout

        def pump() -> None:
            for line in stdout:
                lines.put(line.rstrip("\n"))

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        banner: list[str] = []
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise AssertionError(f"server exited: {self.proc.stderr.read()}") from None  # type: ignore[union-attr]
                continue
            banner.append(line)
            if line.startswith("Admin token:"):
                break
            if len(banner) >= 2 and banner[-2].startswith("Admin token (shown once"):
                self.token = line.strip()
                break
        else:
            raise AssertionError(f"no startup banner; got {banner}")
        self.url = banner[0].rsplit(" ", 1)[-1]
        return self

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

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
