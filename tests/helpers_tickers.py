"""Local HTTP servers that answer as exchange-rate (ticker) APIs do.

Each `Ticker` serves `GET /<currency>` with the JSON its test set for that
currency (or, for `bytes`, those bytes as they are: a provider answering
garbage), or a 500 while `down` is set. A currency in `held` is answered
only once `release` is set (a provider that hangs; `asked` is set when
such a request arrives). `closed_port()` is a port nothing listens on (a
provider that is off). Real TCP, no mocks.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Ticker:
    def __init__(self, answers: dict[str, Any] | None = None) -> None:
        self.answers: dict[str, Any] = dict(answers or {})
        self.down = False
        self.hits = 0
        self.held: set[str] = set()
        self.asked = threading.Event()
        self.release = threading.Event()
        ticker = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                ticker.hits += 1
                key = self.path.strip("/").split("?")[0]
                if key in ticker.held:
                    ticker.asked.set()
                    ticker.release.wait(60)
                if ticker.down or key not in ticker.answers:
                    self.send_response(500 if ticker.down else 404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                answer = ticker.answers[key]
                body = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def provider(self, name: str, path: str = "rate") -> str:
        """A `--fiat-provider` value for this server."""
        return f"{name}=http://127.0.0.1:{self.port}/{{currency}}|{path}"

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed when the block ends: nothing listens
