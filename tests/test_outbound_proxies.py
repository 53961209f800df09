"""Which outbound connections follow the environment's proxy (docs/operations.md,
"Outbound connections: proxies and redirects"), over real local servers.

NWC relays are the operator's choice (`--nwc-relay`): they go through the
proxy the environment names for them (websockets' rules). Webhooks, zap
receipt relays and rss::payment fetches go to URLs a payer or an API client
chose: they connect to exactly the address the SSRF guard checked, never
through a proxy, whatever the environment says.
"""

from __future__ import annotations

import http.server
import importlib.util
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.server import ServerConnection, serve

from lnplugin import rss_payment, webhooks, zapper
from lnplugin.nwc.relay import Relay
from tests import e2e
from tests.helpers_proxy import http_proxy, url_of

tmp = e2e.fixture_tmp

PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "WS_PROXY", "WSS_PROXY")
LOOPBACK = ("127.0.0.0/8",)


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A running proxy that every proxy variable names (nothing bypasses it)."""
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    with http_proxy() as server:
        for name in PROXY_VARIABLES:
            monkeypatch.setenv(name, url_of(server))
            monkeypatch.setenv(name.lower(), url_of(server))
        yield server


@pytest.fixture
def relay_server() -> Iterator[tuple[int, list[str]]]:
    """A websocket server answering every EVENT with OK true, as a relay does;
    the port and the messages it got."""
    got: list[str] = []

    def handler(ws: ServerConnection) -> None:
        for message in ws:
            got.append(str(message))
            parsed = json.loads(message)
            if parsed[0] == "EVENT":
                ws.send(json.dumps(["OK", parsed[1]["id"], True, ""]))

    with serve(handler, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield server.socket.getsockname()[1], got


@pytest.fixture
def http_target() -> Iterator[tuple[str, list[str]]]:
    """A plain HTTP server on loopback; its URL and the request lines it got."""
    got: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            got.append(f"{self.command} {self.path}")
            self.rfile.read(int(self.headers.get("content-length") or 0))
            self.send_response(200)
            self.send_header("x-rss-payment", "%7B%7D")
            self.send_header("content-length", "0")
            self.end_headers()

        do_GET = do_POST = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", got
    finally:
        server.shutdown()
        server.server_close()


def _connected(relay: Relay) -> None:
    deadline = time.monotonic() + 20
    while relay.state != "connected":
        assert time.monotonic() < deadline, relay.last_error
        time.sleep(0.05)


def _connect_an_nwc_relay(port: int) -> None:
    """Start lnplugin's relay client on the local relay, wait until it is
    connected, and stop it."""
    relay = Relay(
        f"ws://127.0.0.1:{port}",
        on_event=lambda *_: None,
        subscription=lambda: {"kinds": [23194]},
        on_connect=lambda _: None,
    )
    relay.start()
    try:
        _connected(relay)
    finally:
        relay.stop()


def test_an_nwc_relay_goes_through_the_environments_proxy(
    proxy: Any, relay_server: tuple[int, list[str]]
) -> None:
    port, got = relay_server
    _connect_an_nwc_relay(port)
    assert proxy.asked == [f"CONNECT 127.0.0.1:{port}"]
    assert any(json.loads(m)[0] == "REQ" for m in got)  # the subscription came through


def test_no_proxy_lets_an_nwc_relay_connect_directly(
    proxy: Any, relay_server: tuple[int, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    port, _ = relay_server
    _connect_an_nwc_relay(port)
    assert proxy.asked == []


def test_payer_chosen_urls_never_go_through_a_proxy(
    proxy: Any, relay_server: tuple[int, list[str]], http_target: tuple[str, list[str]]
) -> None:
    """With every proxy variable set, each still reaches its target, and the
    proxy is asked for nothing."""
    url, got = http_target
    sent = webhooks.post(f"{url}/hook", b"{}", {"content-type": "application/json"}, LOOPBACK)
    assert sent.ok, sent
    fetched = rss_payment.fetch(f"{url}/episode", rss_payment.FetchSettings(allow=LOOPBACK))
    assert fetched.header == "%7B%7D", fetched
    assert got == ["POST /hook", "GET /episode"]
    port, messages = relay_server
    receipt = zapper.publish(f"ws://127.0.0.1:{port}", '{"id": "00"}', "00", LOOPBACK)
    assert receipt.sent, receipt
    assert [json.loads(m)[0] for m in messages] == ["EVENT"]
    assert proxy.asked == []


def test_a_socks_proxy_for_an_nwc_relay_without_python_socks_is_one_line(tmp: Path) -> None:
    """websockets needs python-socks for a SOCKS proxy and raised ImportError
    on each connect: the relay's thread died on it, and NWC was silently gone."""
    if importlib.util.find_spec("python_socks") is not None:
        pytest.skip("python-socks is installed here: a SOCKS proxy works")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LNPLUGIN_")}
    env = {k: v for k, v in env.items() if not k.lower().endswith("_proxy")}
    env["HTTPS_PROXY"] = "socks5h://127.0.0.1:9050"
    proc = e2e.run(tmp / "data", "serve", "--port", "0", "--nwc-relay", "ws://127.0.0.1:1", env=env)
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.splitlines()
    assert line.startswith("Error: invalid setting nwc_relay (--nwc-relay / LNPLUGIN_NWC_RELAY): ")
    assert "socks5h://127.0.0.1:9050" in line and "python-socks" in line and "NO_PROXY" in line
