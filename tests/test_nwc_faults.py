"""NWC notifications under faults, end to end: a real relay process, lnplugin
as a process reaching that relay through a `Gate` (a TCP proxy the test
opens, closes or makes swallow lnplugin's writes), and the app subscribed to
the relay directly, so it is listening before lnplugin can send anything.

What each test shows is that a `payment_received` is not lost: queued while
no relay took it (the backlog in `/health` proves it is queued, not sent),
and sent once lnplugin reaches the relay again.
"""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nostr_sdk as ns
import pytest
from websockets.sync.client import connect

from lnplugin.config import load_settings
from lnplugin.nodes.base import InvoiceRequest
from lnplugin.nodes.dev import DevNode
from lnplugin.nwc import connections
from lnplugin.nwc import worker as nwc_worker
from lnplugin.service import Service
from tests import e2e
from tests.nwc_relay import Gate, Relay
from tests.test_nwc_e2e import Listener, connect_app, make_invoice


@pytest.fixture
def home() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(dir="/tmp", prefix="nwcf-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def relay(home: Path) -> Iterator[Relay]:
    relay = Relay(home / "relay").start()
    yield relay
    relay.kill()


@pytest.fixture
def gate(relay: Relay) -> Iterator[Gate]:
    gate = Gate(relay.port)
    yield gate
    gate.stop()


def nwc(server: e2e.Server) -> dict[str, Any]:
    return dict(server.health()["nwc"])


def connected(server: e2e.Server) -> bool:
    return nwc(server)["relays"][0]["state"] == "connected"


def backlog(server: e2e.Server, n: int) -> bool:
    return bool(nwc(server)["notification_backlog"] == n)


def paid_hashes(listener: Listener, count: int) -> set[str]:
    return {listener.next(23197)["body"]["notification"]["payment_hash"] for _ in range(count)}


def kind_and_amount(listener: Listener) -> tuple[int, int]:
    event = listener.next_any((23196, 23197))
    return event["kind"], event["body"]["notification"]["amount"]


def test_payments_while_the_relay_is_down_are_all_notified_once_it_is_back(
    home: Path, relay: Relay, gate: Gate
) -> None:
    with e2e.Server(home / "data", "--nwc-relay", gate.url) as srv:
        e2e.wait_for(lambda: connected(srv), "the relay connection")
        uri = connect_app(srv, relay, "invoices:create", "invoices:read", label="outage")
        made = [make_invoice(uri, 1000 * (i + 1), f"outage {i}") for i in range(3)]
        relay.kill()
        gate.close()
        e2e.wait_for(lambda: not connected(srv), "the drop to be noticed")
        for invoice in made:
            e2e.cli(srv.data_dir, "dev", "pay", invoice.payment_hash)
        e2e.wait_for(lambda: backlog(srv, 3), "three queued notifications")
        relay.start()
        listener = Listener(relay, uri)
        try:
            gate.open()
            received = paid_hashes(listener, 3)
            e2e.wait_for(lambda: backlog(srv, 0), "the backlog to drain")
        finally:
            listener.close()
    assert received == {invoice.payment_hash for invoice in made}


def test_lnplugin_killed_between_a_payment_and_its_notification_sends_it_after_restart(
    home: Path, relay: Relay, gate: Gate
) -> None:
    data = home / "data"
    srv = e2e.Server(data, "--nwc-relay", gate.url).start()
    try:
        e2e.wait_for(lambda: connected(srv), "the relay connection")
        uri = connect_app(srv, relay, "invoices:create", "invoices:read", label="crash")
        made = make_invoice(uri, 8000, "paid, then a crash")
        gate.close()  # lnplugin cannot send the notification...
        e2e.wait_for(lambda: not connected(srv), "the drop to be noticed")
        e2e.cli(data, "dev", "pay", made.payment_hash)
        e2e.wait_for(lambda: backlog(srv, 1), "the settlement stored, its notification queued")
    finally:
        srv.stop(signal.SIGKILL)  # ...and dies before it could
    listener = Listener(relay, uri)
    try:
        gate.open()
        with e2e.Server(data, "--nwc-relay", gate.url) as again:
            paid = listener.next(23197)["body"]["notification"]
            e2e.wait_for(lambda: backlog(again, 0), "the backlog to drain")
    finally:
        listener.close()
    assert (paid["payment_hash"], paid["amount"], paid["state"]) == (
        made.payment_hash,
        8000,
        "settled",
    )


def test_a_notification_the_relay_never_acknowledged_is_sent_again_on_a_new_connection(
    home: Path, relay: Relay, gate: Gate
) -> None:
    with e2e.Server(home / "data", "--nwc-relay", gate.url) as srv:
        e2e.wait_for(lambda: connected(srv), "the relay connection")
        uri = connect_app(srv, relay, "invoices:create", "invoices:read", label="unacked")
        made = make_invoice(uri, 9000, "sent into the void")
        listener = Listener(relay, uri)
        try:
            gate.hold()  # the connection stays up; what lnplugin sends is lost
            e2e.cli(srv.data_dir, "dev", "pay", made.payment_hash)
            # A notification event is several hundred bytes; pings are a few.
            e2e.wait_for(lambda: gate.swallowed > 300, "the notification to be sent")
            assert backlog(srv, 1)  # sent, but not acknowledged: still queued
            connects = nwc(srv)["relays"][0]["connects"]
            gate.close()  # the connection drops
            gate.open()
            e2e.wait_for(lambda: nwc(srv)["relays"][0]["connects"] > connects, "a reconnect")
            paid = listener.next(23197)["body"]["notification"]
            e2e.wait_for(lambda: backlog(srv, 0), "the backlog to drain")
        finally:
            listener.close()
    assert paid["payment_hash"] == made.payment_hash


def test_a_notification_lost_with_a_dropped_connection_goes_out_when_the_relay_takes_us_back(
    home: Path, relay: Relay, gate: Gate, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not at the notification thread's next poll, which could be a second
    later: here the service runs in this process with that poll set to an
    hour, so only the reconnection itself can send it within the wait."""
    monkeypatch.setattr(nwc_worker, "KEY_POLL", 3600.0)
    settings = load_settings({"data_dir": str(home / "data"), "nwc_relay": [gate.url]}, {})
    service = Service.build(settings)
    service.start()
    try:
        assert service.nwc is not None
        link = service.nwc.relays[0]
        e2e.wait_for(lambda: link.state == "connected", "the relay connection")
        _, uri = connections.connect(service.store, ["invoices:read"], "drop", [relay.url])
        listener = Listener(relay, uri)
        try:
            made = service.node.create_invoice(InvoiceRequest(amount_msat=7000, description="x"))
            gate.hold()  # the notification goes out on a connection that is about to drop
            assert isinstance(service.node, DevNode)
            service.node.pay(made.payment_request)
            e2e.wait_for(lambda: gate.swallowed > 300, "the notification to be sent")
            connects = link.connects
            gate.close()
            gate.open()
            e2e.wait_for(lambda: link.connects > connects, "a reconnect")
            paid = listener.next(23197)["body"]["notification"]
        finally:
            listener.close()
    finally:
        service.stop()
    assert paid["payment_hash"] == made.payment_hash and paid["amount"] == 7000


def test_every_notification_goes_out_in_both_schemes_whatever_the_app_spoke(
    home: Path, relay: Relay
) -> None:
    """NIP-47: "If a wallet service supports both nip04 and nip44, it should
    publish two notification events for each notification - kind 23196
    encrypted with NIP-04, and kind 23197 encrypted with NIP-44", and the
    client picks which to listen to from the info event, not from what it
    sent. Two apps on one connection string (an old one on NIP-04, a new one
    on NIP-44) both hear every payment, whichever asked last."""
    with e2e.Server(home / "data", "--nwc-relay", relay.url) as srv:
        e2e.wait_for(lambda: connected(srv), "the relay connection")
        quiet = connect_app(srv, relay, "invoices:read", label="never asked")
        shared = connect_app(srv, relay, "invoices:read", label="two apps, one URI")
        to_quiet = Listener(relay, quiet, kinds=(23195, 23196, 23197))
        to_shared = Listener(relay, shared, kinds=(23195, 23196, 23197))
        try:
            # The old app asks with NIP-04 (no encryption tag), then the new
            # one with NIP-44: the latest request's scheme is NIP-44.
            to_shared.send(to_shared.request_nip04("get_info", {}))
            assert to_shared.next(23195)["body"]["result_type"] == "get_info"
            to_shared.send(to_shared.request("get_info", {}))
            assert to_shared.next(23195)["body"]["result_type"] == "get_info"
            for amount in (1000, 2000):
                e2e.cli(srv.data_dir, "dev", "keysend", "--amount-msat", str(amount))
            shared_kinds = [kind_and_amount(to_shared) for _ in range(4)]
            quiet_kinds = [kind_and_amount(to_quiet) for _ in range(4)]
        finally:
            to_quiet.close()
            to_shared.close()
    both = [(23196, 1000), (23196, 2000), (23197, 1000), (23197, 2000)]
    assert sorted(shared_kinds) == both
    assert sorted(quiet_kinds) == both


# rust-nostr's relay lets one connection send about 6,000 messages, refilled
# only across pauses of a second or more, and past that drops the connection
# without a close frame ("too many client messages" in its log). 100 apps
# get two events per payment each (NIP-44 and NIP-04): 35 payments are 7,000
# events from lnplugin, so its connection is dropped once mid-stream.
APPS, PAYMENTS = 100, 35


def pay_and_hear(srv: e2e.Server, relay: Relay, apps: int, payments: int) -> bool:
    """Make `apps` connections (two events each per payment), pay `payments`
    invoices, and listen on the relay as all of the apps: True when each
    heard of every payment (NIP-44)."""
    keys: dict[str, ns.Keys] = {}
    wallet: dict[str, ns.PublicKey] = {}  # each connection's own wallet key
    for i in range(apps):
        made = srv.request(
            "POST", "/nwc/connections", json={"scopes": ["invoices:read"], "label": f"a{i}"}
        )
        assert made.status_code == 201, made.text
        uri = ns.NostrWalletConnectUri.parse(made.json()["uri"])
        app = ns.Keys(uri.secret())
        keys[app.public_key().to_hex()] = app
        wallet[app.public_key().to_hex()] = uri.public_key()
    with connect(relay.url, max_size=2**24) as ws:
        ws.send(json.dumps(["REQ", "apps", {"kinds": [23197], "#p": list(keys)}]))
        while json.loads(ws.recv(timeout=e2e.WAIT))[0] != "EOSE":
            pass
        paid = set()
        for i in range(payments):
            invoice = srv.request("POST", "/invoices", json={"amount": 1000 + i}).json()
            hash_ = invoice["payment_hash"]
            assert srv.request("POST", "/dev/pay", json={"payment_hash": hash_}).ok
            paid.add(hash_)
        heard: dict[str, set[str]] = {app: set() for app in keys}
        deadline = time.monotonic() + 3 * e2e.WAIT  # a liveness bound
        while any(h != paid for h in heard.values()) and time.monotonic() < deadline:
            msg = json.loads(ws.recv(timeout=e2e.WAIT))
            if msg[0] != "EVENT":
                continue
            app = next(t[1] for t in msg[2]["tags"] if t[0] == "p")
            assert msg[2]["pubkey"] == wallet[app].to_hex()
            body = keys[app].nip44_decrypt(wallet[app], msg[2]["content"])
            heard[app].add(json.loads(body)["notification"]["payment_hash"])
    e2e.wait_for(lambda: backlog(srv, 0), "the backlog to drain")
    return all(h == paid for h in heard.values())


def test_a_relay_that_drops_us_for_sending_too_much_loses_no_notification(
    home: Path, relay: Relay
) -> None:
    with e2e.Server(home / "data", "--nwc-relay", relay.url) as srv:
        e2e.wait_for(lambda: connected(srv), "the relay connection")
        assert pay_and_hear(srv, relay, APPS, PAYMENTS), "a payment_received was lost"
        connects = nwc(srv)["relays"][0]["connects"]
    # The fault was reproduced: the relay threw lnplugin out at least once.
    assert connects >= 2
    assert "too many client messages" in (home / "relay" / "relay.log").read_text()


def test_a_relay_that_answers_rate_limited_gets_the_refused_notifications_again(
    home: Path,
) -> None:
    # 600 events a minute, refilled only across pauses: 10 apps x 2 events x
    # 35 payments is 700, so the last ~100 are refused ("rate-limited: slow
    # down"), held back, and sent again after the pause.
    relay = Relay(home / "relay", notes_per_minute=600).start()
    try:
        with e2e.Server(home / "data", "--nwc-relay", relay.url) as srv:
            e2e.wait_for(lambda: connected(srv), "the relay connection")
            assert pay_and_hear(srv, relay, 10, 35), "a payment_received was lost"
            state = nwc(srv)["relays"][0]
    finally:
        relay.kill()
    assert state["rate_limited"] > 0  # the relay did refuse some
    assert state["connects"] == 1  # and kept the connection: no reconnect needed
