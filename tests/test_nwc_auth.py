"""NIP-42: a relay that requires authentication, end to end. The relay is
rust-nostr's (`lnplugin_sim/nostr_relay.py --auth ...`), which sends a
challenge and refuses a `REQ` (`CLOSED`) or an `EVENT` (`OK false`) with
`auth-required:` until the client answered it with a kind 22242 event.
lnplugin runs as a process; the app is `Listener`, which answers the
challenge with its own key, as an app on such a relay must.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import nostr_sdk as ns
import pytest
from websockets.sync.client import connect

from tests import e2e
from tests.nwc_relay import Relay
from tests.test_nwc_e2e import Listener, authenticate, connect_app


@pytest.fixture
def home() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(dir="/tmp", prefix="nwca-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def info_event(relay: Relay, app: ns.Keys, wallet: str) -> dict[str, object] | None:
    """The wallet key's info event as the relay keeps it, read by an
    authenticated app (the relay may refuse to serve anyone else)."""
    with connect(relay.url) as ws:
        found = authenticate(ws, relay.url, app, {"kinds": [13194], "authors": [wallet]})
    return found[-1] if found else None


@pytest.mark.parametrize("mode", ["read", "write", "both"])
def test_a_relay_that_requires_auth_hears_requests_and_takes_answers_once_answered(
    home: Path, mode: str
) -> None:
    relay = Relay(home / "relay", auth=mode).start()
    try:
        with e2e.Server(home / "data", "--nwc-relay", relay.url) as srv:
            uri = connect_app(srv, relay, "invoices:create", "invoices:read")
            listener = Listener(relay, uri)
            try:
                # The request is heard (the REQ was authenticated) and
                # answered (the response event was taken).
                asked = listener.request("get_info", {})
                listener.send(asked)
                assert listener.answer_to(asked)["body"]["result"]["network"] == "regtest"
                made = listener.request("make_invoice", {"amount": 21000})
                listener.send(made)
                invoice = listener.answer_to(made)["body"]["result"]["invoice"]
                e2e.cli(srv.data_dir, "dev", "pay", invoice)
                paid = listener.next(23197)["body"]["notification"]
            finally:
                listener.close()
            wallet = ns.NostrWalletConnectUri.parse(uri).public_key().to_hex()
            info = info_event(relay, listener.keys, wallet)
            relays = srv.health()["nwc"]["relays"]
    finally:
        relay.kill()
    assert paid["invoice"] == invoice and paid["amount"] == 21000
    assert info is not None and "make_invoice" in str(info["content"])
    assert relays[0]["state"] == "connected" and relays[0]["connects"] == 1


def test_fresh_wallet_keys_and_a_restarted_relay_are_authenticated_too(home: Path) -> None:
    """More connections at once than the server keeps spare keys for: the
    fresh keys come with a new REQ on the authenticated connection, and get
    AUTHs of their own first. Then the relay restarts (it forgets every
    authentication): lnplugin's new connection answers the new challenge."""
    from lnplugin.nwc.connections import connect as make
    from lnplugin.store import Store
    from lnplugin.store import nwc as db

    relay = Relay(home / "relay", auth="both").start()
    try:
        with e2e.Server(home / "data", "--nwc-relay", relay.url) as srv:
            store = Store(srv.data_dir / "lnplugin.sqlite")
            try:
                uris = [
                    make(store, ["invoices:create"], f"burst {i}", [relay.url])[1]
                    for i in range(db.SPARES + 2)
                ]
            finally:
                store.close()
            parsed = [ns.NostrWalletConnectUri.parse(u) for u in uris]
            app, wallet = ns.Keys(parsed[-1].secret()), parsed[-1].public_key().to_hex()
            # Past the spares: a key taken up later, announced with its info event.
            e2e.wait_for(lambda: info_event(relay, app, wallet), "the fresh key's info event")
            fresh = Listener(relay, uris[-1])
            try:
                assert fresh.ask("get_info", {})["result"]["methods"][0] == "get_info"
            finally:
                fresh.close()
            relay.kill()
            relay.start()  # in memory only: it forgot the events and the AUTHs
            # The info events come back only once lnplugin authenticated
            # again, in the same flush as (and after) its REQ.
            e2e.wait_for(lambda: info_event(relay, app, wallet), "the info event, again")
            again = Listener(relay, uris[-1])
            try:
                assert again.ask("get_info", {})["error"] is None
            finally:
                again.close()
            relays = srv.health()["nwc"]["relays"]
    finally:
        relay.kill()
    assert relays[0]["state"] == "connected" and relays[0]["connects"] == 2
