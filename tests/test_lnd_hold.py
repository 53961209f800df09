"""Hold invoices on LND, against the LND simulator over real gRPC.

The adapter (AddHoldInvoice, SettleInvoice, CancelInvoice, one
SubscribeSingleInvoice stream per held invoice) and then `lnplugin serve
--node lnd` as a process: accept (multi-part), settle after a SIGKILL,
re-discovery of held invoices after a restart, and the safety cancel.
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bolt11 as reference
import pytest
import requests

from lnplugin.follower import Follower
from lnplugin.nodes.base import (
    InvoiceNotFound,
    InvoiceNotOpen,
    InvoiceRequest,
    InvoiceUpdate,
    NodeError,
)
from lnplugin.nodes.lnd import LndNode
from lnplugin.nodes.lnd.rpc import invoices_pb2
from lnplugin.store import Store
from lnplugin_sim.lnd_sim import DEFAULT_CLTV, HOLD_EXPIRY_DELTA, Invoice, LndSim, lightning_pb2
from tests import e2e
from tests.e2e import Server, cltv_delta_of_new_invoice, wait_for
from tests.helpers_present import present
from tests.test_lnd_e2e import serve_args
from tests.test_lnd_node import Follow, make_node

tmp = e2e.fixture_tmp


def _pair() -> tuple[str, str]:
    preimage = secrets.token_bytes(32)
    return preimage.hex(), hashlib.sha256(preimage).hexdigest()


@pytest.fixture
def sim(tmp: Path) -> Iterator[LndSim]:
    with LndSim(tmp / "lnd", network="regtest", port=0) as s:
        yield s


@pytest.fixture
def node(sim: LndSim) -> Iterator[LndNode]:
    n = make_node(sim)
    yield n
    n.close()


class HoldFeed:
    """Runs node.hold_updates() in a thread, collecting updates."""

    def __init__(self, node: LndNode) -> None:
        self.updates: queue.Queue[InvoiceUpdate] = queue.Queue()
        threading.Thread(target=self._run, args=(node,), daemon=True).start()

    def _run(self, node: LndNode) -> None:
        for update in node.hold_updates():
            self.updates.put(update)

    def next(self) -> InvoiceUpdate:
        return self.updates.get(timeout=10)


def test_accepted_comes_on_the_hold_feed_not_on_subscribe_invoices(
    sim: LndSim, node: LndNode
) -> None:
    preimage, payment_hash = _pair()
    minted = node.create_hold_invoice(
        InvoiceRequest(amount_msat=90_000, description="escrow"), payment_hash
    )
    assert (minted.state, minted.payment_hash, minted.preimage) == ("OPEN", payment_hash, None)
    settlements = Follow(node, 0, sim)
    holds = HoldFeed(node)
    sim.pay_invoice(payment_hash, parts=3)  # multi-part: three HTLCs, held
    accepted = holds.next()
    assert accepted.cursor == 0 and accepted.invoice.state == "ACCEPTED"
    assert accepted.invoice.amount_received_msat == 90_000
    # The earliest of the three HTLCs' expiries.
    assert accepted.invoice.settle_deadline == sim.block_height + DEFAULT_CLTV
    assert settlements.quiet()  # lnd leaves ACCEPTED off SubscribeInvoices

    settled = node.settle_invoice(preimage)
    assert settled.state == "SETTLED" and settled.preimage == preimage
    (update,) = settlements.take(1)  # a settlement takes a settle_index as usual
    assert update.invoice.payment_hash == payment_hash and update.cursor > 0
    assert node.settle_invoice(preimage).state == "SETTLED"  # lnd: settling again succeeds
    with pytest.raises(InvoiceNotOpen):
        node.cancel_invoice(payment_hash)


def test_settle_before_payment_and_after_cancel_are_refused(sim: LndSim, node: LndNode) -> None:
    preimage, payment_hash = _pair()
    node.create_hold_invoice(InvoiceRequest(amount_msat=1000), payment_hash)
    with pytest.raises(InvoiceNotOpen, match="still open"):
        node.settle_invoice(preimage)
    holds = HoldFeed(node)
    sim.pay_invoice(payment_hash)
    assert holds.next().invoice.state == "ACCEPTED"
    canceled = node.cancel_invoice(payment_hash)
    assert canceled.state == "CANCELED"
    assert holds.next().invoice.state == "CANCELED"
    assert node.cancel_invoice(payment_hash).state == "CANCELED"  # idempotent, as lnd
    with pytest.raises(InvoiceNotOpen, match="canceled"):
        node.settle_invoice(preimage)


def test_settle_and_cancel_of_an_unknown_hash_are_not_found(sim: LndSim, node: LndNode) -> None:
    """lnd's SettleInvoice and CancelInvoice answer an unknown hash with status
    UNKNOWN ("there are no existing invoices" on a node without invoices,
    "unable to locate invoice" after); both mean the invoice is not there."""
    for _ in range(2):
        preimage, payment_hash = _pair()
        with pytest.raises(InvoiceNotFound):
            node.settle_invoice(preimage)
        with pytest.raises(InvoiceNotFound):
            node.cancel_invoice(payment_hash)
        assert node.lookup_invoice(payment_hash) is None
        sim.create_invoice(1000)


def test_cancel_of_a_regular_invoice_refuses_payment(sim: LndSim, node: LndNode) -> None:
    minted = node.create_invoice(InvoiceRequest(amount_msat=5000))
    assert node.cancel_invoice(minted.payment_hash).state == "CANCELED"
    with pytest.raises(Exception, match="not open"):
        sim.pay_invoice(minted.payment_hash)


def test_the_hold_feed_rediscovers_held_invoices(sim: LndSim, node: LndNode) -> None:
    """A new adapter (a restarted lnplugin) follows hold invoices it did not create."""
    _, payment_hash = _pair()
    node.create_hold_invoice(InvoiceRequest(amount_msat=1000), payment_hash)
    sim.pay_invoice(payment_hash)
    fresh = make_node(sim)
    try:
        holds = HoldFeed(fresh)
        first = holds.next()  # the stream opens with the invoice's current state
        assert (first.invoice.payment_hash, first.invoice.state) == (payment_hash, "ACCEPTED")
        sim.cancel_invoice(payment_hash)
        assert holds.next().invoice.state == "CANCELED"
    finally:
        fresh.close()


def test_an_amp_invoice_another_app_made_is_not_taken_for_a_hold_invoice(
    sim: LndSim, node: LndNode
) -> None:
    """lnd keeps no preimage for an AMP invoice and lists it as pending even
    after a payment set settled, when it shows the invoice SETTLED with no
    preimage: the hold feed's discovery (which follows what it finds) must
    not take it for a hold invoice, or it would report that as a settlement."""
    amp = sim.add_invoice(Invoice(value_msat=5000, is_amp=True))
    _, held = _pair()
    node.create_hold_invoice(InvoiceRequest(amount_msat=1000), held)
    sim.settle_amp_set(amp.r_hash, 5000)
    shown = present(sim.ledger.get(amp.r_hash))
    assert (shown.state, shown.settle_index, shown.r_preimage) == (Invoice.SETTLED, 0, b"")
    listed = sim.list_invoices(lightning_pb2.ListInvoiceRequest(pending_only=True))
    assert amp.r_hash in [i.r_hash for i in listed]
    found = [i.r_hash.hex() for i in node._pending_holds()]  # what hold_updates follows
    assert found == [held]


def test_hold_invoices_are_followed_again_after_lnd_restarts(sim: LndSim, node: LndNode) -> None:
    """lnd shutting down ends every SubscribeSingleInvoice stream cleanly (status
    OK, not an error) while the invoice is still open: that is no final state,
    so the feed must re-discover the invoice once lnd is back."""
    _, payment_hash = _pair()
    node.create_hold_invoice(InvoiceRequest(amount_msat=1000), payment_hash)
    updates: queue.Queue[InvoiceUpdate] = queue.Queue()

    def follow() -> None:  # as the follower's hold feed: again after an error
        while True:
            try:
                for update in node.hold_updates():
                    updates.put(update)
                return
            except NodeError:
                time.sleep(0.1)

    threading.Thread(target=follow, daemon=True).start()
    _, other = _pair()  # once its ACCEPTED is out, the feed's discovery is done
    node.create_hold_invoice(InvoiceRequest(amount_msat=1000), other)
    sim.pay_invoice(other)
    assert updates.get(timeout=10).invoice.payment_hash == other
    sim.restart()
    sim.pay_invoice(payment_hash)
    while (update := updates.get(timeout=10)).invoice.payment_hash != payment_hash:
        pass
    assert update.invoice.state == "ACCEPTED"


def test_an_invoice_lnd_cancels_at_its_expiry_is_expired(sim: LndSim, node: LndNode) -> None:
    """lnd's expiry watcher cancels every unpaid invoice, hold or not, when its
    expiry passes: that is an expiry, not a cancel, and the hold feed (which
    sees the CANCELED) says nothing of it; lnplugin marks it EXPIRED itself."""
    _, payment_hash = _pair()
    node.create_hold_invoice(InvoiceRequest(amount_msat=1000, expiry=1), payment_hash)
    regular = node.create_invoice(InvoiceRequest(amount_msat=1000, expiry=1))
    _, other = _pair()
    node.create_hold_invoice(InvoiceRequest(amount_msat=1000), other)
    holds = HoldFeed(node)
    for r_hash in (payment_hash, regular.payment_hash):
        wait_for(
            lambda h=r_hash: present(sim.ledger.get(bytes.fromhex(h))).state == Invoice.CANCELED,
            "lnd's cancel",
        )
    for r_hash in (payment_hash, regular.payment_hash):
        assert present(node.lookup_invoice(r_hash)).state == "EXPIRED"
    sim.cancel_invoice(other)  # canceled before its expiry: a cancel
    update = holds.next()
    assert (update.invoice.payment_hash, update.invoice.state) == (other, "CANCELED")
    assert present(node.lookup_invoice(other)).state == "CANCELED"


def test_an_expired_invoice_that_a_partial_payment_tried_is_expired(
    sim: LndSim, node: LndNode
) -> None:
    """An invoice lnd's expiry watcher canceled after a multi-part payment
    failed on it (its part timed out, the HTLC CANCELED) has HTLCs but was
    never paid: lnd never counted them (amt_paid 0), so it is EXPIRED. A hold
    invoice canceled once ACCEPTED, after its expiry, keeps what it held in
    amt_paid and stays CANCELED."""
    tried = node.create_invoice(InvoiceRequest(amount_msat=4000, expiry=1))
    sim.pay_partially(tried.payment_hash, 1000)
    _, held = _pair()
    with sim.ledger.lock:  # paid before lnd's expiry watcher can cancel it
        sim.add_hold_invoice(
            invoices_pb2.AddHoldInvoiceRequest(hash=bytes.fromhex(held), value_msat=4000, expiry=1)
        )
        sim.pay_invoice(held)
    wait_for(
        lambda: (
            present(sim.ledger.get(bytes.fromhex(tried.payment_hash))).state == Invoice.CANCELED
        ),
        "lnd's cancel",
    )
    created_at = present(node.lookup_invoice(held)).created_at
    wait_for(lambda: time.time() > created_at + 1, "its expiry")
    node.cancel_invoice(held)
    expired = node.lookup_invoice(tried.payment_hash)
    assert (
        expired is not None
        and len(present(sim.ledger.get(bytes.fromhex(tried.payment_hash))).htlcs) == 1
    )
    assert (expired.state, expired.amount_received_msat) == ("EXPIRED", 0)
    assert present(node.lookup_invoice(held)).state == "CANCELED"


def test_lnd_cancels_a_held_invoice_near_its_expiry(sim: LndSim, node: LndNode) -> None:
    _, payment_hash = _pair()
    node.create_hold_invoice(InvoiceRequest(amount_msat=1000), payment_hash)
    sim.pay_invoice(payment_hash)
    sim.mine(DEFAULT_CLTV - HOLD_EXPIRY_DELTA - 1)
    assert present(node.lookup_invoice(payment_hash)).state == "ACCEPTED"
    sim.mine(1)
    assert present(node.lookup_invoice(payment_hash)).state == "CANCELED"


# -- lnplugin serve --node lnd --------------------------------------------------------


def _state(server: Server, payment_hash: str, token: str | None = None) -> dict:
    return server.request("GET", f"/invoices/{payment_hash}", token=token).json()


def test_held_on_lnd_survives_sigkill_and_is_followed_after_restart(tmp: Path, sim: LndSim) -> None:
    data = tmp / "data"
    first, second = _pair(), _pair()
    server = Server(data, *serve_args(sim)).start()
    token = server.token
    try:
        for _, payment_hash in (first, second):
            r = server.request(
                "POST", "/invoices", json={"amount": 30, "payment_hash": payment_hash}
            )
            assert r.status_code == 201, r.text
        sim.pay_invoice(first[1], parts=2)
        held = wait_for(
            lambda: (got := _state(server, first[1]))["state"] == "ACCEPTED" and got,
            "ACCEPTED from lnd",
        )
        assert held["settle_deadline"] == sim.block_height + DEFAULT_CLTV
    finally:
        assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    sim.pay_invoice(second[1])  # accepted while lnplugin is down

    with Server(data, *serve_args(sim)) as again:
        got = wait_for(
            lambda: (inv := _state(again, second[1], token))["state"] == "ACCEPTED" and inv,
            "the payment made while lnplugin was down",
        )
        assert got["amount_received_msat"] == 30_000
        assert _state(again, first[1], token)["state"] == "ACCEPTED"
        r = again.request(
            "POST", f"/invoices/{first[1]}/settle", token=token, json={"preimage": first[0]}
        )
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "SETTLED"
        # Canceled on the node by another app: the re-discovered stream brings it.
        sim.cancel_invoice(second[1])
        got = wait_for(
            lambda: (inv := _state(again, second[1], token))["state"] == "CANCELED" and inv,
            "the cancel made on the node",
        )
        assert got["cancel_reason"] == "canceled on the node"


def test_a_cancel_lnd_made_before_lnplugin_died_keeps_its_reason(tmp: Path, sim: LndSim) -> None:
    """The reason was kept in memory between CancelInvoice and the store
    write: lnplugin killed in between left the restart only lnd's CANCELED,
    stored as "canceled on the node" instead of why lnplugin canceled it."""
    data = tmp / "data"
    _, payment_hash = _pair()
    server = Server(data, *serve_args(sim)).start()
    token = server.token
    try:
        r = server.request("POST", "/invoices", json={"amount": 30, "payment_hash": payment_hash})
        assert r.status_code == 201, r.text
        sim.pay_invoice(payment_hash)
        wait_for(lambda: _state(server, payment_hash)["state"] == "ACCEPTED", "ACCEPTED")

        def cancel_through_the_api() -> None:
            with contextlib.suppress(requests.RequestException):  # it dies meanwhile
                server.request("POST", f"/invoices/{payment_hash}/cancel")

        with sim.faults.stall("CancelInvoice"):
            cancel = threading.Thread(target=cancel_through_the_api, daemon=True)
            cancel.start()
            wait_for(lambda: sim.faults.stalled == 1, "lnplugin's CancelInvoice at lnd")
            # The reason is in the store now, and not shown before the cancel is done.
            got = _state(server, payment_hash)
            assert got["state"] == "ACCEPTED" and got["cancel_reason"] is None
            # lnplugin dies with the call under way; lnd carries it out.
            assert server.stop(signal.SIGKILL) == -signal.SIGKILL
        wait_for(
            lambda: present(sim.ledger.get(bytes.fromhex(payment_hash))).state == 2,
            "CANCELED on lnd",
        )
        cancel.join(timeout=30)
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.stop(signal.SIGKILL)
    with Server(data, *serve_args(sim)) as again:
        got = wait_for(
            lambda: (inv := _state(again, payment_hash, token))["state"] == "CANCELED" and inv,
            "lnd's CANCELED, after the restart",
        )
        assert got["cancel_reason"] == "canceled through the API"
        assert got["amount_received_msat"] == 0


def test_lnplugin_cancels_before_lnd_would(tmp: Path, sim: LndSim) -> None:
    _, payment_hash = _pair()
    with Server(tmp / "data", *serve_args(sim), "--hold-cancel-margin", "30") as server:
        r = server.request("POST", "/invoices", json={"amount": 30, "payment_hash": payment_hash})
        assert r.status_code == 201, r.text
        sim.pay_invoice(payment_hash)
        wait_for(lambda: _state(server, payment_hash)["state"] == "ACCEPTED", "ACCEPTED")
        sim.mine(DEFAULT_CLTV - 30)  # 30 blocks left: lnplugin's margin, above lnd's 18
        got = wait_for(
            lambda: (inv := _state(server, payment_hash))["state"] == "CANCELED" and inv,
            "lnplugin's safety cancel",
        )
        assert "30 blocks before its settle deadline" in got["cancel_reason"]
        assert present(sim.ledger.get(bytes.fromhex(payment_hash))).state == 2  # CANCELED on lnd


def _stored(store: Store, payment_hash: str, minted: Any) -> None:
    """The hold invoice lnd minted, as lnplugin stores one it made (OPEN)."""
    with store.transaction() as tx:
        tx.execute(
            "INSERT INTO invoices (identifier, type, payment_hash, payment_request, state,"
            " amount_msat, created_at, expiry, expires_at, hold, source) VALUES"
            " ('h1', 'incoming', ?, ?, 'OPEN', 1000, ?, ?, ?, 1, 'api')",
            (payment_hash, minted.payment_request, minted.created_at, minted.expiry,
             minted.expires_at),
        )  # fmt: skip


def test_a_cancel_lnd_refuses_leaves_no_reason_behind(tmp: Path, sim: LndSim) -> None:
    """The reason is stored before lnd is asked; a cancel lnd refuses (the
    invoice was settled meanwhile) must not leave it on the settled invoice."""
    node = make_node(sim)
    store = Store(tmp / "store.sqlite")
    follower = Follower(node, store)
    preimage, payment_hash = _pair()
    minted = node.create_hold_invoice(InvoiceRequest(amount_msat=1000), payment_hash)
    _stored(store, payment_hash, minted)
    sim.pay_invoice(payment_hash)
    follower.sweep()  # finds it ACCEPTED
    node.settle_invoice(preimage)  # on lnd, not yet in the store
    with pytest.raises(InvoiceNotOpen):
        follower.cancel(payment_hash, "canceled through the API")
    row = store.conn.execute(
        "SELECT state, cancel_reason FROM invoices WHERE payment_hash = ?", (payment_hash,)
    ).fetchone()
    assert tuple(row) == ("ACCEPTED", None)
    follower.sweep()
    row = store.conn.execute(
        "SELECT state, cancel_reason FROM invoices WHERE payment_hash = ?", (payment_hash,)
    ).fetchone()
    assert tuple(row) == ("SETTLED", None)
    node.close()
    store.close()


def test_without_info_read_the_safety_cancel_steps_aside(tmp: Path, sim: LndSim) -> None:
    """The stock invoice.macaroon cannot ask GetInfo for the block height: the
    follower says so once and leaves the cancel to lnd, instead of failing sweeps."""
    node = make_node(sim, sim.invoice_macaroon_path)
    store = Store(tmp / "store.sqlite")
    follower = Follower(node, store)
    _, payment_hash = _pair()
    minted = node.create_hold_invoice(InvoiceRequest(amount_msat=1000), payment_hash)
    _stored(store, payment_hash, minted)
    sim.pay_invoice(payment_hash)
    follower.sweep()  # finds it ACCEPTED
    assert follower.cancel_near_deadline() == 0
    assert present(node.lookup_invoice(payment_hash)).state == "ACCEPTED"
    node.close()
    store.close()


def test_a_hold_invoice_asks_for_the_cltv_delta_it_is_given(sim: LndSim, node: LndNode) -> None:
    """NWC's `min_cltv_expiry_delta` reaches AddHoldInvoice's `cltv_expiry`."""
    _, payment_hash = _pair()
    minted = node.create_hold_invoice(
        InvoiceRequest(amount_msat=1000, min_final_cltv_expiry_delta=144), payment_hash
    )
    assert reference.decode(minted.payment_request).min_final_cltv_expiry == 144
    holds = HoldFeed(node)
    sim.pay_invoice(payment_hash)
    assert holds.next().invoice.settle_deadline == sim.block_height + 144


def test_post_invoices_min_cltv_expiry_delta_reaches_lnd(tmp: Path, sim: LndSim) -> None:
    """Over HTTP: AddHoldInvoice's and AddInvoice's `cltv_expiry`, and the deadline."""
    _, payment_hash = _pair()
    with Server(tmp / "data", *serve_args(sim)) as server:
        delta = cltv_delta_of_new_invoice(
            server, amount=30, payment_hash=payment_hash, min_cltv_expiry_delta=144
        )
        assert delta == 144
        sim.pay_invoice(payment_hash)
        held = wait_for(
            lambda: (got := _state(server, payment_hash))["state"] == "ACCEPTED" and got,
            "ACCEPTED from lnd",
        )
        assert held["settle_deadline"] == sim.block_height + 144
        assert cltv_delta_of_new_invoice(server, amount=30, min_cltv_expiry_delta=40) == 40


# What lnplugin needs for invoices and their settlements, each method by itself.
REQUIRED_METHODS = [
    "uri:/lnrpc.Lightning/AddInvoice",
    "uri:/lnrpc.Lightning/LookupInvoice",
    "uri:/lnrpc.Lightning/ListInvoices",
    "uri:/lnrpc.Lightning/SubscribeInvoices",
]


def test_a_macaroon_without_the_hold_methods_gets_a_501_naming_them(tmp: Path, sim: LndSim) -> None:
    """A per-method macaroon without AddHoldInvoice, SettleInvoice and
    CancelInvoice: creating a hold invoice, settling and canceling are
    refused with a 501 that names the method and what grants it (not a 502
    a client would retry, nor a 500), and nothing is stored or changed."""
    no_hold = sim.bake(REQUIRED_METHODS, "no-hold.macaroon")
    _, payment_hash = _pair()
    with Server(tmp / "data", *serve_args(sim, no_hold)) as server:
        r = server.request("POST", "/invoices", json={"amount": 30, "payment_hash": payment_hash})
        assert r.status_code == 501, r.text
        needs = "AddHoldInvoice needs invoices:write or uri:/invoicesrpc.Invoices/AddHoldInvoice"
        assert needs in r.json()["message"]
        assert server.request("GET", f"/invoices/{payment_hash}").status_code == 404
        regular = server.request("POST", "/invoices", json={"amount": 30}).json()
        r = server.request("POST", f"/invoices/{regular['payment_hash']}/cancel")
        assert r.status_code == 501, r.text
        assert "uri:/invoicesrpc.Invoices/CancelInvoice" in r.json()["message"]
        assert _state(server, regular["payment_hash"])["state"] == "CREATED"

    # Hold invoices allowed, settle and cancel not: none is made, as it could
    # never be settled or canceled (the payer's funds would stay held until
    # lnd gave them back). One made before, under a macaroon that allowed
    # them, is refused settle and cancel after the swap, and stays ACCEPTED.
    preimage, payment_hash = _pair()
    no_settle = sim.bake(
        [
            *REQUIRED_METHODS,
            "uri:/invoicesrpc.Invoices/AddHoldInvoice",
            "uri:/invoicesrpc.Invoices/SubscribeSingleInvoice",
        ],
        "no-settle.macaroon",
    )
    with Server(tmp / "data2", *serve_args(sim)) as server:
        token = server.token
        r = server.request("POST", "/invoices", json={"amount": 30, "payment_hash": payment_hash})
        assert r.status_code == 201, r.text
        sim.pay_invoice(payment_hash)
        wait_for(lambda: _state(server, payment_hash)["state"] == "ACCEPTED", "ACCEPTED")
    with Server(tmp / "data2", *serve_args(sim, no_settle)) as server:
        _, other = _pair()
        r = server.request(
            "POST", "/invoices", token=token, json={"amount": 30, "payment_hash": other}
        )
        assert r.status_code == 501, r.text
        assert "uri:/invoicesrpc.Invoices/SettleInvoice" in r.json()["message"]
        assert "uri:/invoicesrpc.Invoices/AddHoldInvoice" not in r.json()["message"]
        assert sim.ledger.get(bytes.fromhex(other)) is None
        r = server.request(
            "POST", f"/invoices/{payment_hash}/settle", token=token, json={"preimage": preimage}
        )
        assert r.status_code == 501, r.text
        assert "uri:/invoicesrpc.Invoices/SettleInvoice" in r.json()["message"]
        r = server.request("POST", f"/invoices/{payment_hash}/cancel", token=token)
        assert r.status_code == 501, r.text
        assert "uri:/invoicesrpc.Invoices/CancelInvoice" in r.json()["message"]
        assert _state(server, payment_hash, token)["state"] == "ACCEPTED"
    assert (
        present(sim.ledger.get(bytes.fromhex(payment_hash))).state == lightning_pb2.Invoice.ACCEPTED
    )


def _without_cancel(
    tmp: Path, sim: LndSim, name: str, *more: str
) -> tuple[LndNode, Store, Follower]:
    """A node and follower whose macaroon may hold (and `more`) but not
    cancel, with a cancel margin of 30 blocks."""
    mac = sim.bake(
        [
            *REQUIRED_METHODS,
            "uri:/lnrpc.Lightning/GetInfo",
            "uri:/invoicesrpc.Invoices/AddHoldInvoice",
            *more,
        ],
        name,
    )
    node = make_node(sim, mac)
    store = Store(tmp / "store.sqlite")
    return node, store, Follower(node, store, hold_cancel_margin=30)


def test_without_cancel_invoice_the_safety_cancel_steps_aside(
    tmp: Path, sim: LndSim, caplog: pytest.LogCaptureFixture
) -> None:
    """A macaroon that may hold but not cancel: a held invoice within the
    margin is left to lnd (one warning), instead of an error each tick that
    kept the sweep after it from ever running."""
    node, store, follower = _without_cancel(tmp, sim, "no-cancel.macaroon")
    _, payment_hash = _pair()
    minted = node.create_hold_invoice(InvoiceRequest(amount_msat=1000), payment_hash)
    _stored(store, payment_hash, minted)
    sim.pay_invoice(payment_hash)
    follower.sweep()  # finds it ACCEPTED
    sim.mine(DEFAULT_CLTV - 30)
    with caplog.at_level("WARNING", logger="lnplugin.follower"):
        assert follower.cancel_near_deadline() == 0
        assert follower.cancel_near_deadline() == 0
    warned = [r.getMessage() for r in caplog.records if "cannot cancel held" in r.getMessage()]
    assert len(warned) == 1 and "uri:/invoicesrpc.Invoices/CancelInvoice" in warned[0]
    assert present(node.lookup_invoice(payment_hash)).state == "ACCEPTED"
    node.close()
    store.close()


def test_without_cancel_invoice_a_settle_within_the_margin_is_still_refused(
    tmp: Path, sim: LndSim
) -> None:
    """A macaroon that may hold and settle but not cancel: a settle within
    the margin must not go through because the cancel it is refused for
    could not be made (the safety cancel stepping aside made the refused
    cancel read as "settled meanwhile", and the preimage was handed over
    for HTLCs the payer's peer may be taking back on chain). It is refused
    (409), naming the permission, and the payment stays held."""
    from lnplugin import invoicing

    node, store, follower = _without_cancel(
        tmp, sim, "no-cancel-settle.macaroon", "uri:/invoicesrpc.Invoices/SettleInvoice"
    )
    try:
        preimage, payment_hash = _pair()
        # Read from the macaroon, it rules hold invoices out from the start.
        with pytest.raises(invoicing.Unsupported) as off:
            invoicing.mint(follower, InvoiceRequest(amount_msat=1000), payment_hash)
        assert "uri:/invoicesrpc.Invoices/CancelInvoice" in off.value.message
        assert sim.ledger.get(bytes.fromhex(payment_hash)) is None
        # lnd decides when lnplugin cannot read the macaroon's permissions (not
        # one lnd baked); its refusal of the cancel must still stop the settle.
        node.features, node.unavailable = LndNode.features, {}
        minted = invoicing.mint(follower, InvoiceRequest(amount_msat=1000), payment_hash)
        with store.transaction() as tx:
            invoicing.insert(tx, invoicing.node_fields(minted, hold=True, source="api"))
        sim.pay_invoice(payment_hash)
        follower.sweep()  # finds it ACCEPTED
        sim.mine(DEFAULT_CLTV - 30)
        found = invoicing.own_incoming(follower, payment_hash)
        assert found.state == "ACCEPTED"
        with pytest.raises(invoicing.WrongState) as refused:
            invoicing.settle(follower, found, preimage)
        assert refused.value.message.startswith("Too late to settle")
        assert "uri:/invoicesrpc.Invoices/CancelInvoice" in refused.value.message
        assert invoicing.fresh(follower, payment_hash).state == "ACCEPTED"
        assert present(node.lookup_invoice(payment_hash)).state == "ACCEPTED"
    finally:
        node.close()
        store.close()
