"""The relay connection's reconnect schedule (lnplugin/nwc/relay.py); its
behaviour against a real relay that drops us is in tests/test_nwc_faults.py."""

from __future__ import annotations

from lnplugin.nwc.relay import BACKOFF_MAX, JITTER, backoff, shown_url


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
