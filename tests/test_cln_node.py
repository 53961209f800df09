"""ClnNode against the CLN simulator over its real unix socket."""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyln.client import LightningRpc

from lnplugin.config import load_settings
from lnplugin.nodes.base import InvoiceRequest, NodeError, NodeUnavailable, RequestNotSupported
from lnplugin.nodes.cln.node import ClnNode, bolt11_timestamp, msat, to_invoice, version_tuple
from lnplugin_sim.cln_sim import ClnSim
from tests import e2e
from tests.helpers_present import present

JOIN = 15  # seconds: a liveness bound for background threads, not a timing assertion


tmp = e2e.fixture_tmp  # a short directory under /tmp: unix socket paths must be short


@pytest.fixture
def sim(tmp: Path) -> Iterator[ClnSim]:
    with ClnSim(tmp / "data", tmp / "rpc") as s:
        yield s


@pytest.fixture
def node(sim: ClnSim) -> Iterator[ClnNode]:
    n = ClnNode(sim.socket_path, network="regtest", wait_timeout=5)
    yield n
    n.close()


class Feed:
    """Runs `settlements(cursor)` in a thread and hands updates over a queue."""

    def __init__(self, node: ClnNode, cursor: int) -> None:
        self.items: queue.Queue[Any] = queue.Queue()
        self.thread = threading.Thread(target=self._run, args=(node, cursor), daemon=True)
        self.thread.start()

    def _run(self, node: ClnNode, cursor: int) -> None:
        try:
            for update in node.settlements(cursor):
                self.items.put(update)
            self.items.put("ended")
        except Exception as exc:
            self.items.put(exc)

    def next(self) -> Any:
        return self.items.get(timeout=JOIN)


def test_from_settings_and_network_check(sim: ClnSim) -> None:
    settings = load_settings({"node": "cln", "cln_socket": sim.socket_path}, environ={})
    node = ClnNode.from_settings(settings)
    assert node.network == "bitcoin"
    with pytest.raises(NodeError, match="regtest"):
        node.check_network()
    info = ClnNode(sim.socket_path, network="regtest").check_network()
    assert (info.kind, info.pubkey, info.network) == ("cln", sim.node_id, "regtest")
    assert info.version == "v26.06.6" and info.block_height == 108
    with pytest.raises(NodeError, match="cln-socket"):
        ClnNode.from_settings(load_settings({"node": "cln"}, environ={}))


def test_create_invoice_amount_and_any(node: ClnNode, sim: ClnSim) -> None:
    inv = node.create_invoice(InvoiceRequest(amount_msat=50000, description="coffee", expiry=600))
    assert inv.state == "OPEN" and inv.amount_msat == 50000 and inv.description == "coffee"
    assert inv.payment_request.startswith("lnbcrt500n1") and inv.expiry == 600
    decoded = node.decode(inv.payment_request)
    assert decoded["created_at"] == inv.created_at and decoded["payee"] == sim.node_id
    label = next(iter(sim.invoices), "")
    assert label.startswith("lnplugin-")
    anyinv = node.create_invoice(InvoiceRequest(amount_msat=None))
    assert anyinv.amount_msat is None and anyinv.payment_request.startswith("lnbcrt1")


def test_private_route_hints_are_exposed(node: ClnNode) -> None:
    inv = node.create_invoice(InvoiceRequest(amount_msat=1000, private_route_hints=True))
    assert node.decode(inv.payment_request)["routes"]
    plain = node.create_invoice(InvoiceRequest(amount_msat=1000))
    assert "routes" not in node.decode(plain.payment_request)


def test_description_hash_needs_its_description(node: ClnNode) -> None:
    with pytest.raises(NodeError, match="description_hash"):
        node.create_invoice(InvoiceRequest(amount_msat=1000, description_hash="ab" * 32))
    text = "long metadata text"
    digest = hashlib.sha256(text.encode()).hexdigest()
    inv = node.create_invoice(
        InvoiceRequest(amount_msat=1000, description=text, description_hash=digest)
    )
    assert node.decode(inv.payment_request)["description_hash"] == digest
    assert inv.description_hash == digest


def test_description_outside_ascii_reaches_the_node(node: ClnNode, sim: ClnSim) -> None:
    """lightningd refuses a `\\u` escape in `invoice`'s description (its
    param_escaped_string): the text goes as UTF-8, as pyln sends it."""
    text = "Café ☕ 日本 😀\ttab"
    inv = node.create_invoice(InvoiceRequest(amount_msat=1000, description=text))
    assert inv.description == text
    assert node.decode(inv.payment_request)["description"] == text
    assert sim.invoices[next(reversed(sim.invoices))]["description"] == text


def test_description_lightningd_cannot_take_is_the_requests_fault(
    node: ClnNode, sim: ClnSim
) -> None:
    for text, why in (("bell\x07", "control character"), ("half \ud83d", "UTF-8")):
        with pytest.raises(RequestNotSupported, match=why) as err:
            node.create_invoice(InvoiceRequest(amount_msat=1000, description=text))
        assert err.value.field == "description"
    assert sim.calls["invoice"] == 0


def test_rpc_error_becomes_node_error(node: ClnNode) -> None:
    with pytest.raises(NodeError, match="639") as err:
        node.create_invoice(InvoiceRequest(amount_msat=1000, description="x" * 700))
    # lightningd answered: a refusal (with its code), not an unreachable node
    assert not isinstance(err.value, NodeUnavailable) and err.value.code == -32602


def test_a_refused_parameter_is_an_older_node(node: ClnNode) -> None:
    with pytest.raises(NodeError, match="unknown parameter") as err:
        node._call("listinvoices", frobnicate=1)  # how older nodes refuse index paging
    assert type(err.value).__name__ == "_OldNode"


def test_pay_then_settlement_feed_and_resume(node: ClnNode, sim: ClnSim) -> None:
    invs = [node.create_invoice(InvoiceRequest(amount_msat=1000 + i)) for i in range(3)]
    for inv in invs:
        sim.pay(inv.payment_hash)
    feed = Feed(node, 0)
    updates = [feed.next() for _ in range(3)]
    assert [u.invoice.payment_hash for u in updates] == [i.payment_hash for i in invs]
    assert [u.cursor for u in updates] == [1, 2, 3]
    first = updates[0].invoice
    assert first.state == "SETTLED" and first.amount_received_msat == 1000
    assert first.preimage and hashlib.sha256(bytes.fromhex(first.preimage)).hexdigest() == (
        first.payment_hash
    )
    assert first.settled_at is not None
    # live: a payment made while the feed is blocked in `wait`
    live = node.create_invoice(InvoiceRequest(amount_msat=7))
    sim.pay(live.payment_hash)
    got = feed.next()
    assert got.invoice.payment_hash == live.payment_hash and got.cursor == 4
    node.close()
    assert feed.next() == "ended"
    # resume from a persisted cursor: only what came after it
    again = ClnNode(sim.socket_path)
    assert [u.cursor for u in again.settled_since(2)] == [3, 4]
    resumed = Feed(again, 3)
    assert resumed.next().invoice.payment_hash == live.payment_hash
    again.close()


def test_expired_invoice_in_feed(node: ClnNode, sim: ClnSim) -> None:
    inv = node.create_invoice(InvoiceRequest(amount_msat=1000))
    sim.expire(inv.payment_hash)
    feed = Feed(node, 0)
    update = feed.next()
    assert update.invoice.state == "EXPIRED" and update.cursor == 1
    assert list(node.settled_since(0)) == []  # the sweep lists settled only
    assert present(node.lookup_invoice(inv.payment_hash)).state == "EXPIRED"


def test_keysend_is_flagged(node: ClnNode, sim: ClnSim) -> None:
    row = sim.keysend(21000, {7629169: b'{"message":"hi"}', 696969: b"acct"})
    update = Feed(node, 0).next()
    inv = update.invoice
    assert inv.is_keysend and inv.payment_request == "" and inv.state == "SETTLED"
    assert inv.payment_hash == row["payment_hash"] and inv.amount_received_msat == 21000
    # What was sent, as LND reports it; not None, which reads as "any amount".
    assert inv.amount_msat == 21000
    assert inv.description == 'keysend: {"message":"hi"}'
    assert inv.custom_records == {}  # CLN's listing has none; plugin mode adds them


def test_lookup_invoice(node: ClnNode) -> None:
    assert node.lookup_invoice("00" * 32) is None
    inv = node.create_invoice(InvoiceRequest(amount_msat=3000, description="look"))
    assert node.lookup_invoice(inv.payment_hash.upper()) == inv


def test_outgoing_payments(node: ClnNode, sim: ClnSim, tmp: Path) -> None:
    with ClnSim(tmp / "p", tmp / "p.sock") as payee:
        bolt11 = LightningRpc(payee.socket_path).invoice(50000, "x", "pay")["bolt11"]
        preimage = payee.invoices["x"]["preimage"]
    sim.send_payment(bolt11=bolt11, fee_msat=12, preimage=preimage)
    sim.send_payment(21000, destination=payee.node_id)
    sim.send_payment(999, status="failed")
    out = list(node.outgoing_payments(0))
    assert [(p.amount_msat, p.fee_msat, p.cursor) for p in out] == [(50000, 12, 1), (21000, 0, 2)]
    assert out[0].payment_request == bolt11 and out[0].destination == payee.node_id
    assert out[0].preimage == preimage
    assert [p.cursor for p in node.outgoing_payments(1)] == [2]


def test_a_history_with_no_completed_payment_costs_one_call_per_poll(
    node: ClnNode, sim: ClnSim
) -> None:
    """The outgoing cursor stays 0 until a payment completes; each poll is
    one `listsendpays status=complete`, which lists complete parts only
    (lightningd filters `status` with `index` too: lightningd/pay.c, wallet.c
    `payments_by_status`), not every failed or pending attempt. A payment
    that completed costs one look-up of its parts, once."""
    sim.calls.clear()
    assert list(node.outgoing_payments(0)) == []
    assert sim.calls["listsendpays"] == 1
    for n in range(250):  # three pages of failed payments
        sim.send_payment(1000 + n, status="failed")
    sim.send_payment(7000, status="pending")
    sim.calls.clear()
    assert list(node.outgoing_payments(0)) == []
    assert sim.calls["listsendpays"] == 1
    done = sim.send_payment(8000)
    sim.calls.clear()
    (paid,) = node.outgoing_payments(0)
    assert paid.payment_hash == done["payment_hash"] and paid.cursor == 251
    assert sim.calls["listsendpays"] == 2  # the listing, then its parts
    sim.calls.clear()
    assert list(node.outgoing_payments(paid.cursor)) == []
    assert sim.calls["listsendpays"] == 1
    assert sim.calls["listpays"] == 0


def test_outgoing_payments_before_listpays_paging(tmp: Path) -> None:
    with ClnSim(tmp / "d", tmp / "s", version="v24.05") as sim:
        sim.send_payment(5000, fee_msat=5)
        sim.send_payment(6000)
        node = ClnNode(sim.socket_path)
        out = list(node.outgoing_payments(0))
        assert [(p.amount_msat, p.fee_msat, p.cursor) for p in out] == [(5000, 5, 1), (6000, 0, 2)]
        assert [p.cursor for p in node.outgoing_payments(1)] == [2]


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("v26.06.6", (26, 6)),
        ("v24.08rc2", (24, 8)),  # a release candidate
        ("v24.08-12-gabcdef0", (24, 8)),  # built from git (`git describe`)
        ("v23.05-7-g1234567-modded", (23, 5)),
        ("basedon-v24.08", (99, 0)),  # unknown: counts as recent
    ],
)
def test_version_tuple_reads_only_the_release(version: str, expected: tuple[int, int]) -> None:
    assert version_tuple(version) == expected


def test_a_git_build_of_an_old_release_is_that_release(tmp: Path) -> None:
    # A 23.08 built from git has no listsendpays paging: lnplugin must not poll
    # it as a 23.11+ node (every listsendpays index=updated would be refused).
    with ClnSim(tmp / "d", tmp / "s", version="v23.08-12-gabcdef0") as sim:
        sim.send_payment(5000, fee_msat=5)
        node = ClnNode(sim.socket_path)
        assert node.outgoing_poll_interval == 60.0
        assert [(p.amount_msat, p.fee_msat) for p in node.outgoing_payments(0)] == [(5000, 5)]
        node.close()


def test_node_alias_cached(node: ClnNode, sim: ClnSim) -> None:
    peer = "02" + "11" * 32
    assert node.node_alias(peer) is None
    sim.add_node("03" + "22" * 32, "bob")
    assert node.node_alias("03" + "22" * 32) == "bob"
    sim.add_node("03" + "22" * 32, "renamed")
    assert node.node_alias("03" + "22" * 32) == "bob"


def test_close_wakes_a_blocked_feed(sim: ClnSim) -> None:
    node = ClnNode(sim.socket_path, wait_timeout=None)  # only close() can end the wait
    feed = Feed(node, 0)
    node.close()
    assert feed.next() == "ended"
    feed.thread.join(JOIN)
    assert not feed.thread.is_alive()


def test_wait_timeout_relists_and_keeps_following(sim: ClnSim) -> None:
    node = ClnNode(sim.socket_path, wait_timeout=0.3)
    feed = Feed(node, 0)
    inv = node.create_invoice(InvoiceRequest(amount_msat=1))
    sim.pay(inv.payment_hash)
    assert feed.next().invoice.payment_hash == inv.payment_hash
    node.close()


def test_deleted_invoices_are_neither_lost_nor_counted_twice(node: ClnNode, sim: ClnSim) -> None:
    """autoclean or `delinvoice` deleting paid invoices: one lnplugin has
    read stays read; the ones at the top of the updated index leave a value
    `wait` has passed, which must not make the feed list and wait in a loop."""
    paid = []
    for n in range(4):
        inv = node.create_invoice(InvoiceRequest(amount_msat=1000 + n))
        sim.pay(inv.payment_hash)
        paid.append(inv.payment_hash)
    labels = {r["payment_hash"]: label for label, r in sim.invoices.items()}
    sim.dispatch("delinvoice", {"label": labels[paid[0]], "status": "paid"})
    sim.dispatch("delinvoice", {"label": labels[paid[3]], "status": "paid"})
    feed = Feed(node, 1)  # the first was read before it was deleted
    got = [feed.next(), feed.next()]
    assert [(u.invoice.payment_hash, u.cursor) for u in got] == [(paid[1], 2), (paid[2], 3)]
    # It comes to wait in the node for what is next (index 5), rather than
    # list nothing and wait for 4, answered at once, again and again.
    e2e.wait_for(lambda: sim.blocked == 1, "the feed to wait for the next change")
    assert sim.calls["wait"] == 2
    last = node.create_invoice(InvoiceRequest(amount_msat=5000))
    sim.pay(last.payment_hash)
    after = feed.next()
    assert (after.invoice.payment_hash, after.cursor) == (last.payment_hash, 5)
    assert node.feed_head() == 5  # the head does not go back for deleted invoices
    node.close()
    assert feed.next() == "ended"


def test_socket_gone_is_node_unavailable(sim: ClnSim, node: ClnNode) -> None:
    feed = Feed(node, 0)
    sim.stop()
    assert isinstance(feed.next(), NodeUnavailable)
    with pytest.raises(NodeUnavailable):
        node.get_info()
    with pytest.raises(NodeUnavailable):
        list(node.settlements(0))


def test_restart_with_same_data(sim: ClnSim, node: ClnNode) -> None:
    first = node.create_invoice(InvoiceRequest(amount_msat=10))
    sim.pay(first.payment_hash)
    cursor = next(iter(node.settled_since(0))).cursor
    second = node.create_invoice(InvoiceRequest(amount_msat=20))
    sim.restart()
    sim.pay(second.payment_hash)
    assert node.get_info().pubkey == sim.node_id
    update = Feed(node, cursor).next()
    assert update.invoice.payment_hash == second.payment_hash and update.cursor == cursor + 1


def test_slow_replies(sim: ClnSim, node: ClnNode) -> None:
    sim.reply_delay = 0.3
    inv = node.create_invoice(InvoiceRequest(amount_msat=5))
    assert node.lookup_invoice(inv.payment_hash) == inv


def test_old_node_falls_back_to_pay_index(tmp: Path) -> None:
    with ClnSim(tmp / "d", tmp / "s", version="v23.05.2") as sim:
        node = ClnNode(sim.socket_path, wait_timeout=2)
        assert node.cursor_kind == "pay_index"
        a = node.create_invoice(InvoiceRequest(amount_msat=1000))
        b = node.create_invoice(InvoiceRequest(amount_msat=2000))
        sim.expire(a.payment_hash)  # expiries are not in a pay_index feed
        sim.pay(b.payment_hash)
        feed = Feed(node, 0)
        update = feed.next()
        assert update.invoice.payment_hash == b.payment_hash and update.cursor == 1
        assert [u.cursor for u in node.settled_since(0)] == [1]
        assert list(node.settled_since(1)) == []
        node.close()
        assert feed.next() == "ended"


def test_idle_waitanyinvoice_does_not_pile_up_in_the_node(tmp: Path) -> None:
    # lightningd keeps a command whose caller hung up pending until it
    # completes, so every wait the feed gives up on must end in the node too.
    with ClnSim(tmp / "d", tmp / "s", version="v23.05.2") as sim:
        node = ClnNode(sim.socket_path, wait_timeout=0.3)
        feed = Feed(node, 0)
        e2e.wait_for(lambda: sim.calls["waitanyinvoice"] >= 3, "three idle waits")
        assert sim.blocked <= 1
        inv = node.create_invoice(InvoiceRequest(amount_msat=1000))
        sim.pay(inv.payment_hash)
        assert feed.next().invoice.payment_hash == inv.payment_hash
        node.close()
        assert feed.next() == "ended"


def test_legacy_msat_strings() -> None:
    assert msat("123msat") == 123 and msat(5) == 5 and msat("any") is None and msat(None) is None
    with pytest.raises(NodeError):
        msat("12sat")
    row: dict[str, Any] = {
        "label": "l",
        "bolt11": "lnbcrt1p4szrt4sp5",
        "payment_hash": "aa" * 32,
        "amount_msat": "1000msat",
        "status": "paid",
        "pay_index": 1,
        "amount_received_msat": "1200msat",
        "paid_at": 1795231093,
        "payment_preimage": "bb" * 32,
        "expires_at": 1795231093 + 3600,
    }
    inv = to_invoice(row)
    assert (inv.amount_msat, inv.amount_received_msat) == (1000, 1200)
    assert inv.created_at == bolt11_timestamp(row["bolt11"])


@pytest.mark.parametrize("version", ["v23.05", "v24.05"])
def test_a_payment_started_first_and_completed_last_is_not_skipped(tmp: Path, version: str) -> None:
    """Before v24.11 payments are read from `listsendpays`; its `id` counts
    them as they start, so a cursor of ids skipped one that completed after
    a later one (before v23.11 rows have no `updated_index` at all)."""
    with ClnSim(tmp / "d", tmp / "s", version=version) as sim:
        slow = sim.send_payment(5000, status="pending")
        sim.send_payment(6000)
        node = ClnNode(sim.socket_path)
        first = list(node.outgoing_payments(0))
        assert [p.amount_msat for p in first] == [6000]
        sim.complete_payment(slow["payment_hash"])
        cursor = max(p.cursor for p in first)
        later = {p.payment_hash: p for p in node.outgoing_payments(cursor)}
        assert slow["payment_hash"] in later and later[slow["payment_hash"]].amount_msat == 5000
