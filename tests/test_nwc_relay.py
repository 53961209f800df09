"""The relay connection's reconnect schedule (lnplugin/nwc/relay.py); its
behaviour against a real relay that drops us is in tests/test_nwc_faults.py.
Also the test relay's own command line (lnplugin_sim/nostr_relay.py)."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lnplugin.nwc.relay import BACKOFF_MAX, JITTER, Relay, backoff, shown_url


def test_the_first_reconnect_is_almost_at_once_then_the_wait_doubles_up_to_a_cap() -> None:
    # Notifications in flight wait for the first reconnect; a relay that
    # keeps dropping us is asked less and less often.
    assert all(0.005 <= backoff(0) <= 0.015 for _ in range(200))
    for attempt, base in ((1, 0.5), (2, 1.0), (3, 2.0), (7, 30.0), (30, 30.0)):
        waits = [backoff(attempt) for _ in range(200)]
        assert all(base * (1 - JITTER) <= w <= base * (1 + JITTER) for w in waits)
        assert max(waits) - min(waits) > base * JITTER  # jittered, so reconnects spread out
    assert max(backoff(50) for _ in range(200)) <= BACKOFF_MAX * (1 + JITTER)


def test_a_relay_url_is_shown_without_its_credentials() -> None:
    # Paid relays put a password or a token in the URL; logs and the public
    # /health show the relay by this name instead.
    assert shown_url("wss://user:secret@relay.example.com/nostr?auth=tok#x") == (
        "wss://relay.example.com/nostr"
    )
    assert shown_url("ws://u:p@[::1]:7777/?t=1") == "ws://[::1]:7777/"
    assert shown_url("ws://127.0.0.1:6969") == "ws://127.0.0.1:6969"


@pytest.mark.parametrize(
    ("url", "warned"),
    [
        ("ws://127.0.0.1:7777", False),
        ("ws://localhost:7777", False),
        ("ws://[::1]:7777", False),
        ("wss://relay.example.com", False),
        ("ws://relay.example.com", True),
        ("ws://10.0.0.2:7777", True),
        ("ws://relay:7777", True),
    ],
)
def test_plain_ws_to_another_machine_is_warned_about(
    url: str, warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Accepted (a relay on a private network may have no TLS), with one
    warning naming the relay: NIP-44 hides the contents, not who talks when."""
    with caplog.at_level(logging.WARNING, logger="lnplugin.nwc.relay"):
        Relay(url, lambda *a: None, dict, lambda r: None)
    lines = [r.getMessage() for r in caplog.records if "plain ws://" in r.getMessage()]
    assert len(lines) == (1 if warned else 0)


def test_the_test_relay_given_port_0_prints_the_port_it_got(tmp_path: Path) -> None:
    # It printed `listening ws://127.0.0.1:0`: nothing to connect to.
    proc = subprocess.Popen(
        [sys.executable, "-m", "lnplugin_sim.nostr_relay", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("listening ws://127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1])
        assert port != 0
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
