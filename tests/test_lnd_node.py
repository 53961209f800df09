"""LndNode against the LND simulator, over real gRPC with TLS and macaroons."""

from __future__ import annotations

import datetime as _dt
import hashlib
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lnplugin.bolt11 import decode
from lnplugin.config import load_settings
from lnplugin.nodes.base import (
    Feature,
    FeedHead,
    InvoiceRequest,
    InvoiceUpdate,
    NetworkMismatch,
    NodeCredentialsRejected,
    NodeNotTrusted,
    NodePermissionDenied,
    NodeUnavailable,
)
from lnplugin.nodes.lnd.macaroon import LND_BAKE
from lnplugin.nodes.lnd.node import LndNode, _Gaps
from lnplugin.nodes.lnd.rpc import lightning_pb2 as ln
from lnplugin_sim.lnd_sim import (
    KEYSEND_PREIMAGE_RECORD,
    LndSim,
    SimError,
    ip_lock,
    mint_macaroon,
    time_before,
)
from tests.helpers_present import present

pytestmark = pytest.mark.timeout(60)

BOOST = 7629169
MESSAGE = 34349334


# lnd's bbolt store replays the settle backlog by settle_index, its native SQL
# store by add_index: tests that resume from a cursor run against both.
BOTH_ORDERS = pytest.mark.parametrize("sim", ["settle", "add"], indirect=True)


@pytest.fixture
def sim(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LndSim]:
    order = getattr(request, "param", "settle")
    with LndSim(tmp_path / "lnd", network="regtest", replay_order=order) as s:
        yield s


def make_node(sim: LndSim, macaroon: Path | str | None = None, **kw: Any) -> LndNode:
    mac = macaroon if macaroon is not None else sim.admin_macaroon_path
    return LndNode(sim.target, cert=sim.cert_path, macaroon=mac, network="regtest", **kw)


@pytest.fixture
def node(sim: LndSim) -> Iterator[LndNode]:
    n = make_node(sim)
    yield n
    n.close()


def wait_until_up(node: LndNode) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            node.get_info()
            return
        except NodeUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class Follow:
    """Runs node.settlements(cursor) in a thread, collecting updates or the error."""

    def __init__(self, node: LndNode, cursor: int, sim: LndSim | None = None) -> None:
        self.updates: queue.Queue[InvoiceUpdate] = queue.Queue()
        self.error: BaseException | None = None
        before = sim.subscriber_count() if sim else 0
        self.thread = threading.Thread(target=self._run, args=(node, cursor), daemon=True)
        self.thread.start()
        if sim is not None:  # live events reach registered streams only, as in lnd
            sim.wait_for_subscribers(before + 1)

    def _run(self, node: LndNode, cursor: int) -> None:
        try:
            for update in node.settlements(cursor):
                self.updates.put(update)
        except BaseException as exc:
            self.error = exc

    def take(self, n: int) -> list[InvoiceUpdate]:
        return [self.updates.get(timeout=10) for _ in range(n)]

    def quiet(self) -> bool:
        try:
            self.updates.get(timeout=0.3)
        except queue.Empty:
            return True
        return False


def test_create_invoice_mints_a_signed_bolt11(sim: LndSim, node: LndNode) -> None:
    inv = node.create_invoice(InvoiceRequest(amount_msat=21_500, description="coffee", expiry=600))
    assert inv.state == "OPEN"
    assert inv.amount_msat == 21_500 and inv.description == "coffee" and inv.expiry == 600
    decoded = decode(inv.payment_request)
    assert decoded.payment_hash == inv.payment_hash
    assert decoded.payee == sim.pubkey and decoded.currency == "bcrt"
    assert decoded.amount_msat == 21_500 and decoded.payment_secret == inv.payment_secret
    assert inv.preimage is None  # only exposed once settled

    dh = hashlib.sha256(b'[["text/plain","lnurl"]]').hexdigest()
    hashed = node.create_invoice(InvoiceRequest(amount_msat=None, description_hash=dh))
    assert hashed.amount_msat is None and hashed.description_hash == dh
    assert decode(hashed.payment_request).description_hash == dh

    # LNURL-pay passes the hashed text too (CLN needs it); LND is sent no memo
    # then, which it would refuse past 1024 bytes (metadata with an image).
    text = '[["text/plain","lnurl"],["image/png;base64","' + "A" * 2000 + '"]]'
    digest = hashlib.sha256(text.encode()).hexdigest()
    long = node.create_invoice(
        InvoiceRequest(amount_msat=1000, description=text, description_hash=digest)
    )
    assert decode(long.payment_request).description_hash == digest


def test_lookup_follows_state(sim: LndSim, node: LndNode) -> None:
    assert node.lookup_invoice("00" * 32) is None
    assert node.lookup_invoice("not hex") is None
    inv = node.create_invoice(InvoiceRequest(amount_msat=5000, description="x"))
    sim.pay_invoice(inv.payment_hash, amount_msat=6000)  # overpaying is allowed
    got = node.lookup_invoice(inv.payment_hash)
    assert got is not None and got.state == "SETTLED"
    assert got.amount_received_msat == 6000 and got.settled_at
    assert got.preimage and hashlib.sha256(bytes.fromhex(got.preimage)).hexdigest() == (
        inv.payment_hash
    )


def test_fresh_follow_backfills_then_goes_live(sim: LndSim, node: LndNode) -> None:
    a = sim.create_invoice(1000, memo="a")
    b = sim.create_invoice(2000, memo="b")
    sim.pay_invoice(b.r_hash)  # settle_index 1, add_index 2
    sim.pay_invoice(a.r_hash)  # settle_index 2, add_index 1
    sim.create_invoice(3000)  # open: never a settlement
    follow = Follow(node, 0, sim)
    first = follow.take(2)
    assert [u.cursor for u in first] == [1, 2]  # sorted by settle_index, not add_index
    assert [u.invoice.description for u in first] == ["b", "a"]
    sim.keysend(4000, {BOOST: b"{}"})
    (live,) = follow.take(1)
    assert live.cursor == 3 and live.invoice.is_keysend
    assert follow.quiet()
    node.close()
    follow.thread.join(5)
    assert not follow.thread.is_alive() and follow.error is None


@BOTH_ORDERS
def test_resume_from_cursor_and_dedupe_duplicates(sim: LndSim, node: LndNode) -> None:
    for i in range(5):
        sim.keysend(1000 + i)
    sim.faults.duplicate_every = 1  # every message sent twice
    follow = Follow(node, 2, sim)
    updates = follow.take(3)
    assert [u.cursor for u in updates] == [3, 4, 5]
    sim.keysend(9000)
    assert [u.cursor for u in follow.take(1)] == [6]
    assert follow.quiet()


@BOTH_ORDERS
def test_stream_dropped_mid_replay_resumes(sim: LndSim, node: LndNode) -> None:
    for i in range(6):
        sim.keysend(1000 + i)
    sim.faults.drop_stream_after = 2
    sim.faults.drop_stream_times = 1
    resumed: list[int] = []
    with pytest.raises(NodeUnavailable):
        for update in node.settlements(1):
            resumed.append(update.cursor)
    assert resumed == [2, 3]
    rest = Follow(node, resumed[-1])
    assert [u.cursor for u in rest.take(3)] == [4, 5, 6]


@BOTH_ORDERS
def test_node_down_then_restarted_on_same_port(sim: LndSim, node: LndNode) -> None:
    sim.keysend(1000)
    follow = Follow(node, 0)
    assert [u.cursor for u in follow.take(1)] == [1]
    sim.stop()  # lnd shutting down ends the stream cleanly, with no error
    follow.thread.join(10)
    assert not follow.thread.is_alive() and follow.error is None
    with pytest.raises(NodeUnavailable):
        node.create_invoice(InvoiceRequest(amount_msat=1000, description="down"))
    sim.start()
    sim.keysend(2000)
    wait_until_up(node)  # grpc reconnects in the background; the follower retries
    again = Follow(node, 1)
    assert [u.cursor for u in again.take(1)] == [2]
    sim.faults.unavailable_for(30)
    with pytest.raises(NodeUnavailable):
        node.get_info()
    sim.faults.unavailable_until = 0
    sim.faults.delay = 0.05  # slow replies still work
    assert node.get_info().network == "regtest"


def test_keysend_records_across_htlcs(sim: LndSim, node: LndNode) -> None:
    follow = Follow(node, 0, sim)
    boost = b'{"action":"boost","value_msat_total":7000,"message":"hi"}'
    sim.keysend(7000, htlc_records=[{BOOST: boost}, {MESSAGE: b"hello"}, {696969: b"\x01"}])
    (update,) = follow.take(1)
    inv = update.invoice
    assert inv.is_keysend and inv.payment_request == "" and inv.state == "SETTLED"
    assert inv.amount_received_msat == 7000 and inv.description is None
    # lnd gives a keysend the blank payment address (32 zero bytes): no secret.
    assert inv.payment_secret is None
    assert inv.custom_records[BOOST] == boost
    assert inv.custom_records[MESSAGE] == b"hello"
    assert inv.custom_records[696969] == b"\x01"
    # The preimage record is the payment's secret, not payer data: it is the
    # invoice's preimage, and not among the records (as on Core Lightning).
    assert KEYSEND_PREIMAGE_RECORD not in inv.custom_records
    assert inv.preimage is not None
    assert hashlib.sha256(bytes.fromhex(inv.preimage)).hexdigest() == inv.payment_hash
    # A BOLT11 invoice paid in parts with records on one part keeps them too.
    bolt = sim.create_invoice(3000, memo="parts")
    sim.pay_invoice(bolt.payment_request, htlc_records=[{}, {MESSAGE: b"second part"}])
    (paid,) = follow.take(1)
    assert paid.invoice.custom_records == {MESSAGE: b"second part"}
    assert not paid.invoice.is_keysend


def test_invoice_made_by_another_app_is_followed(sim: LndSim, node: LndNode) -> None:
    follow = Follow(node, 0, sim)
    other = sim.create_invoice(12_000, memo="made with lncli")
    sim.pay_invoice(other.payment_request)
    (update,) = follow.take(1)
    assert update.invoice.payment_hash == other.r_hash.hex()
    assert update.invoice.description == "made with lncli"


def test_settled_since_is_a_finite_sweep(sim: LndSim, node: LndNode) -> None:
    invs = [sim.create_invoice(1000 * (i + 1)) for i in range(4)]
    for inv in reversed(invs):
        sim.pay_invoice(inv.r_hash)
    sim.cancel_invoice(sim.create_invoice(1).r_hash)
    swept = list(make_node(sim, page_size=2).settled_since(1))
    assert [u.cursor for u in swept] == [2, 3, 4]
    assert [u.invoice.amount_msat for u in swept] == [3000, 2000, 1000]
    canceled = next(i for i in sim.ledger.invoices if i.state == ln.Invoice.CANCELED)
    got = node.lookup_invoice(canceled.r_hash.hex())
    assert got is not None and got.state == "CANCELED"


def test_a_sweep_rereads_only_from_the_oldest_open_invoice(sim: LndSim, node: LndNode) -> None:
    # lnd lists by add_index only; re-reading the whole history every minute
    # would cost a big node seconds of CPU. Below the oldest invoice that was
    # still open (or settled past the cursor), nothing can change any more.
    sim.bulk_settle(50)
    still_open = sim.create_invoice(7000)
    sim.bulk_settle(50)
    first = list(node.settled_since(0))
    assert len(first) == 100 and sim.invoices_listed == 101
    cursor = first[-1].cursor  # everything settled so far is stored

    # With cursor 0 every settlement was new, so nothing could be skipped yet.
    sim.invoices_listed = 0
    assert list(node.settled_since(cursor)) == []
    assert sim.invoices_listed == 101
    sim.invoices_listed = 0
    assert list(node.settled_since(cursor)) == []
    assert sim.invoices_listed == 51  # from the open invoice on, not all 101

    sim.pay_invoice(still_open.r_hash)  # the old invoice settles late
    sim.bulk_settle(3)
    sim.invoices_listed = 0
    late = list(node.settled_since(cursor))
    assert [u.invoice.amount_msat for u in late] == [7000, 1000, 1000, 1000]
    assert [u.cursor for u in late] == [cursor + 1, cursor + 2, cursor + 3, cursor + 4]
    assert sim.invoices_listed == 54

    # Not yet stored (the cursor did not move): the next sweep finds them again.
    sim.invoices_listed = 0
    assert len(list(node.settled_since(cursor))) == 4
    # Stored: this sweep finds every invoice final, so the next one starts past them.
    assert list(node.settled_since(cursor + 4)) == []
    sim.invoices_listed = 0
    assert list(node.settled_since(cursor + 4)) == []
    assert sim.invoices_listed == 0
    sim.bulk_settle(2)
    assert [u.cursor for u in node.settled_since(cursor + 4)] == [cursor + 5, cursor + 6]
    assert sim.invoices_listed == 2


def test_feed_head_is_the_highest_settle_index_and_rereads_only_the_open_tail(
    sim: LndSim, node: LndNode
) -> None:
    # /info's head and lag, and the backfill ETA, need lnd's real head before
    # the backlog is read; lnd has no call for it, so the node lists for it.
    node.head_interval = 0
    assert node.has_feature(Feature.FEED_HEAD) and isinstance(node, FeedHead)
    assert node.feed_head() == 0
    sim.bulk_settle(20)
    still_open = sim.create_invoice(5000)
    sim.bulk_settle(10)
    sim.invoices_listed = 0
    assert node.feed_head() == 30
    assert sim.invoices_listed == 31
    sim.invoices_listed = 0
    assert node.feed_head() == 30
    assert sim.invoices_listed == 11  # from the open invoice on
    sim.pay_invoice(still_open.r_hash)  # an old invoice settles late
    assert node.feed_head() == 31
    # Between asks the cached value is answered without a listing.
    node.head_interval = 3600
    sim.bulk_settle(1)
    sim.invoices_listed = 0
    assert node.feed_head() == 31 and sim.invoices_listed == 0


def test_outgoing_payments_with_hop_records(sim: LndSim, node: LndNode) -> None:
    dest = "02" + "ab" * 32
    boost = b'{"action":"boost","message":"sent"}'
    sim.make_payment(10_000, fee_msat=15, destination=dest, custom_records={BOOST: boost})
    sim.make_payment(5_000, status="FAILED")
    bolt = sim.create_invoice(2000, memo="paid by us")
    sim.make_payment(2000, fee_msat=1, payment_request=bolt.payment_request)
    paged = make_node(sim, page_size=1)
    pays = list(paged.outgoing_payments(0))
    assert [p.cursor for p in pays] == [1, 3]
    keysend = pays[0]
    assert keysend.amount_msat == 10_000 and keysend.fee_msat == 15
    assert keysend.destination == dest and keysend.settled_at
    assert keysend.custom_records[BOOST] == boost
    assert keysend.preimage and hashlib.sha256(bytes.fromhex(keysend.preimage)).hexdigest() == (
        keysend.payment_hash
    )
    assert pays[1].description == "paid by us" and pays[1].payment_request
    assert list(paged.outgoing_payments(3)) == []
    paged.close()


def test_outgoing_stops_at_a_payment_in_flight(sim: LndSim, node: LndNode) -> None:
    sim.make_payment(1000)
    flying = sim.make_payment(2000, status="IN_FLIGHT")
    sim.make_payment(3000)
    assert [p.cursor for p in node.outgoing_payments(0)] == [1]
    sim.resolve_payment(flying.payment_index)
    assert [p.cursor for p in node.outgoing_payments(1)] == [2, 3]


@pytest.mark.parametrize("style", ["grpc", "lnd"])
def test_invoice_macaroon_least_privilege(sim: LndSim, style: str) -> None:
    sim.faults.error_style = style
    node = make_node(sim, macaroon=sim.invoice_macaroon_path.read_bytes().hex())
    try:
        inv = node.create_invoice(InvoiceRequest(amount_msat=1000, description="least"))
        follow = Follow(node, 0, sim)
        sim.pay_invoice(inv.payment_hash)
        assert [u.invoice.payment_hash for u in follow.take(1)] == [inv.payment_hash]
        assert [u.cursor for u in node.settled_since(0)] == [1]
        with pytest.raises(NodePermissionDenied):
            node.get_info()
        with pytest.raises(NodePermissionDenied):
            list(node.outgoing_payments(0))
    finally:
        node.close()


@pytest.mark.parametrize("style", ["grpc", "lnd"])
def test_a_macaroon_lnd_rejects_is_a_wrong_setting_not_a_permission(
    sim: LndSim, tmp_path: Path, style: str
) -> None:
    """None sent, not lnd's, a root key lnd lacks, expired, locked to another
    address: nothing works with it, so it is `NodeCredentialsRejected` (an
    "unavailable" node that `serve` refuses to start on) naming the setting,
    never `NodePermissionDenied`, which a valid macaroon lacking one
    permission is (test_invoice_macaroon_least_privilege)."""
    sim.faults.error_style = style
    bogus = tmp_path / "bogus.macaroon"
    bogus.write_bytes(b"\x02not-a-real-macaroon")
    lost = tmp_path / "lost.macaroon"
    lost.write_bytes(mint_macaroon(frozenset({"invoices:write"}), root_key_id=b"9"))
    yesterday = _dt.datetime.now(_dt.UTC) - _dt.timedelta(days=1)
    expired = sim.bake(["invoices:write"], "expired.macaroon", [time_before(yesterday)])
    elsewhere = sim.bake(["invoices:write"], "ip.macaroon", [ip_lock("192.0.2.1")])
    cases = {
        "": "none is given",
        str(bogus): "is it from this node?",
        str(lost): "is it from this node?",
        str(expired): "it has expired",
        str(elsewhere): "locked to another address",
    }
    for mac, says in cases.items():
        node = make_node(sim, macaroon=mac)
        try:
            with pytest.raises(NodeCredentialsRejected) as refused:
                node.create_invoice(InvoiceRequest(amount_msat=1, description="x"))
        finally:
            node.close()
        message = str(refused.value)
        assert message.startswith(
            "invalid setting lnd_macaroon (--lnd-macaroon / LNPLUGIN_LND_MACAROON): "
        )
        assert says in message and message.endswith(LND_BAKE) and "\n" not in message


def test_network_check(tmp_path: Path) -> None:
    with LndSim(tmp_path / "main", network="bitcoin") as sim:
        node = LndNode(sim.target, cert=sim.cert_path, macaroon=sim.admin_macaroon_path)
        info = node.check_network("bitcoin")  # lnd says "mainnet"
        assert info.network == "bitcoin" and info.kind == "lnd" and info.pubkey == sim.pubkey
        with pytest.raises(NetworkMismatch, match="on bitcoin"):
            node.check_network("testnet")
        node.close()
    with LndSim(tmp_path / "t4", network="testnet4") as sim:
        node = LndNode(sim.target, cert=sim.cert_path, macaroon=sim.admin_macaroon_path)
        with pytest.raises(NetworkMismatch):
            node.check_network()  # configured network defaults to bitcoin
        node.close()


def test_a_certificate_that_does_not_verify_is_not_trusted(sim: LndSim, tmp_path: Path) -> None:
    """Another node's tls.cert, or lnd's own reached by a name it does not
    carry: one line naming --lnd-cert and the reason, as an unavailable node
    (503 to API clients) that `serve` refuses to start on (NodeNotTrusted)."""
    with LndSim(tmp_path / "other", network="regtest") as other:
        node = LndNode(sim.target, cert=other.cert_path, macaroon=sim.admin_macaroon_path)
        with pytest.raises(NodeNotTrusted) as refused:
            node.create_invoice(InvoiceRequest(amount_msat=1, description="x"))
        node.close()
    message = str(refused.value)
    assert message.startswith("invalid setting lnd_cert (--lnd-cert / LNPLUGIN_LND_CERT): ")
    assert f"lnd at {sim.target} does not match {other.cert_path}: self signed" in message
    assert isinstance(refused.value, NodeUnavailable) and "\n" not in message

    with LndSim(tmp_path / "wide", network="regtest", host="0.0.0.0") as wide:
        elsewhere = "127.0.0.2:" + wide.target.rsplit(":", 1)[1]  # not in the certificate
        node = LndNode(elsewhere, cert=wide.cert_path, macaroon=wide.admin_macaroon_path)
        with pytest.raises(NodeNotTrusted, match=r"its certificate does not name 127\.0\.0\.2;"):
            node.get_info()
        node.close()


def test_from_settings(sim: LndSim) -> None:
    settings = load_settings(
        {
            "node": "lnd",
            "network": "regtest",
            "lnd_host": sim.target,
            "lnd_cert": str(sim.cert_path),
            "lnd_macaroon": str(sim.admin_macaroon_path),
        },
        environ={},
    )
    node = LndNode.from_settings(settings)
    assert node.network == "regtest"
    assert node.get_info().alias == "lnd-sim"
    node.close()


def test_close_wakes_a_blocked_follow(sim: LndSim) -> None:
    node = make_node(sim)
    follow = Follow(node, 0)
    assert follow.quiet()
    node.close()
    follow.thread.join(5)
    assert not follow.thread.is_alive() and follow.error is None


def _inv(settle_index: int, state: ln.Invoice.InvoiceState = ln.Invoice.SETTLED) -> ln.Invoice:
    return ln.Invoice(
        r_hash=settle_index.to_bytes(32, "big"), state=state, settle_index=settle_index
    )


def test_gaps_never_hand_out_a_cursor_past_a_missing_index() -> None:
    gaps = _Gaps(0)
    # 1, 2 and 4 seen; 3 still missing (a later backlog item, or live).
    cursors = [gaps.accept(_inv(i)) for i in (1, 2, 4)]
    assert [u.cursor for u in cursors if u] == [1, 2, 0]
    assert gaps.stuck_for() > 0
    assert gaps.accept(_inv(4)) is None  # duplicate
    assert present(gaps.accept(_inv(3))).cursor == 4
    assert gaps.stuck_for() == 0
    assert present(gaps.accept(_inv(5))).cursor == 5
    assert gaps.accept(_inv(5)) is None
    assert gaps.accept(_inv(6, ln.Invoice.OPEN)) is None
    # Resuming from 10 in add order: 13, 11 arrive before 12; nothing is dropped.
    resumed = _Gaps(10)
    assert resumed.accept(_inv(9)) is None  # at or below the cursor: stored already
    got = [resumed.accept(_inv(i)) for i in (13, 11, 12, 14)]
    assert [u.cursor for u in got if u] == [0, 11, 13, 14]
    # An index no invoice reports (an AMP set) is passed over by a fill.
    holed = _Gaps(0)
    assert [u.cursor for u in (holed.accept(_inv(1)), holed.accept(_inv(3))) if u] == [1, 0]
    assert holed.pass_over(3) == [2]
    assert holed.floor == 3 and holed.stuck_for() == 0
    assert present(holed.accept(_inv(4))).cursor == 4


def _take_until(follow: Follow, hashes: set[str]) -> list[InvoiceUpdate]:
    got: list[InvoiceUpdate] = []
    while not hashes <= {u.invoice.payment_hash for u in got}:
        got.append(follow.updates.get(timeout=10))
    return got


def _assert_cursors_cover(updates: list[InvoiceUpdate], index: dict[str, int], start: int) -> None:
    """Each cursor an update carries covers only settle indexes handed out by then."""
    handed: set[int] = set()
    for update in updates:
        handed.add(index[update.invoice.payment_hash])
        if update.cursor:
            assert set(range(start + 1, update.cursor + 1)) <= handed, (update.cursor, handed)


@BOTH_ORDERS
def test_backlog_out_of_settle_order_loses_nothing(sim: LndSim, node: LndNode) -> None:
    # lnd's SQL store replays by add_index: an invoice made early but paid late
    # comes before ones paid earlier. None of these were made by lnplugin.
    sim.keysend(1000)  # settle_index 1: stored; the follower's cursor is 1
    early = sim.create_invoice(2000, memo="made early, paid last")
    middle = sim.create_invoice(3000, memo="made second, paid third")
    sim.keysend(4000)  # settle_index 2
    sim.pay_invoice(middle.r_hash)  # 3
    sim.keysend(5000)  # 4
    sim.pay_invoice(early.r_hash)  # 5
    index = {i.r_hash.hex(): i.settle_index for i in sim.ledger.invoices}
    assert len(index) == 5
    follow = Follow(node, 1, sim)
    got = _take_until(follow, set(index) - {sim.ledger.invoices[0].r_hash.hex()})
    assert sorted(index[u.invoice.payment_hash] for u in got) == [2, 3, 4, 5]
    _assert_cursors_cover(got, index, 1)
    assert max(u.cursor for u in got) == 5
    sim.keysend(6000)  # live, and it carries the cursor
    assert [u.cursor for u in follow.take(1)] == [6]
    assert follow.quiet()


def test_a_hole_in_settle_indexes_is_filled_from_listinvoices(sim: LndSim) -> None:
    # An AMP set takes settle_index 2 but no invoice reports it: after
    # gap_grace the feed lists invoices, finds none with 2, and passes it over.
    node = make_node(sim, gap_grace=0.2)
    try:
        follow = Follow(node, 0, sim)
        sim.keysend(1000)
        sim.settle_amp_set()
        sim.keysend(3000)
        assert [u.cursor for u in follow.take(2)] == [1, 0]
        # The stream is cut, re-opened from the floor (1) and the fill lists
        # the invoices; the next settlement carries the cursor past the hole.
        deadline = time.monotonic() + 10
        while sim.invoices_listed == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sim.invoices_listed > 0
        sim.keysend(4000)
        (live,) = follow.take(1)
        assert live.cursor == 4 and live.invoice.amount_received_msat == 4000
        assert follow.quiet() and follow.error is None
    finally:
        node.close()


def _amp_sets(sim: LndSim) -> dict[str, tuple[int, int]]:
    """Every settled AMP payment set the simulated node has: set id -> (settle_index, msat)."""
    return {
        set_id: (state.settle_index, state.amt_paid_msat)
        for inv in sim.ledger.invoices
        for set_id, state in inv.amp_invoice_state.items()
    }


@BOTH_ORDERS
def test_each_amp_payment_set_is_a_settlement_of_its_own(sim: LndSim) -> None:
    """lnd sends an AMP invoice on SubscribeInvoices when one of its payment
    sets settles, live and in the settle backlog, with that set only: its
    settle_index in `amp_invoice_state`, its HTLCs marked with its set id.
    Each set is handed out once, keyed by its set id, with its own amount and
    records, at its own settle_index: live, from the backlog in either
    store's order (the SQL store sends the sets after every plain invoice),
    and from a sweep's listing (which shows every set of the invoice)."""
    node = make_node(sim, gap_grace=600)
    try:
        amp = sim.add_invoice(ln.Invoice(value_msat=5000, is_amp=True, memo="reusable"))
        follow = Follow(node, 0, sim)
        sim.keysend(1000)  # s1
        # From cursor 0 the follower first lists the node (lnd replays nothing
        # for 0). s1 reaches it only once that listing has ended, so the sets
        # below arrive live, not in a listing taken meanwhile.
        assert [u.cursor for u in follow.take(1)] == [1]
        first = sim.settle_amp_set(amp.r_hash, 2000, htlc_records=[{BOOST: b'{"a":1}'}, {}])
        sim.keysend(3000)  # s3
        second = sim.settle_amp_set(amp.r_hash, 3000, htlc_records=[{MESSAGE: b"two"}])
        spont = sim.amp_payment(4000, {BOOST: b'{"b":2}'})  # s5: lnd makes its invoice
        assert (first, second) == (2, 4)
        sets = _amp_sets(sim)
        by_index = {index: set_id for set_id, (index, _) in sets.items()}
        live = follow.take(4)
        assert [u.cursor for u in live] == [2, 3, 4, 5]
        assert [u.invoice.payment_hash for u in live if u.cursor != 3] == [
            by_index[2],
            by_index[4],
            by_index[5],
        ]
        two, _, four, five = (u.invoice for u in live)
        assert (two.state, two.amount_received_msat, two.preimage) == ("SETTLED", 2000, None)
        assert two.custom_records == {BOOST: b'{"a":1}'} and two.description == "reusable"
        assert two.payment_request == amp.payment_request and not two.is_keysend
        assert four.custom_records == {MESSAGE: b"two"} and four.amount_received_msat == 3000
        assert five.custom_records == {BOOST: b'{"b":2}'} and five.amount_received_msat == 4000
        assert five.is_keysend and five.payment_request == ""
        assert next(iter(spont.amp_invoice_state)) == by_index[5]
        assert all(u.invoice.settled_at for u in live)
        assert follow.quiet() and follow.error is None

        index = {u.invoice.payment_hash: u.cursor for u in live}
        again = Follow(node, 1, sim)  # the backlog past 1, in this store's order
        got = _take_until(again, set(index))
        assert sorted(index[u.invoice.payment_hash] for u in got) == [2, 3, 4, 5]
        _assert_cursors_cover(got, index, 1)
        assert max(u.cursor for u in got) == 5
        assert {u.invoice.payment_hash: u.invoice.amount_received_msat for u in got} == {
            u.invoice.payment_hash: u.invoice.amount_received_msat for u in live
        }
        assert again.quiet() and again.error is None

        swept = list(node.settled_since(1))  # ListInvoices: every set of the invoice
        assert [(u.cursor, u.invoice.payment_hash) for u in swept] == [
            (u.cursor, u.invoice.payment_hash) for u in live
        ]
        assert [u.invoice.custom_records for u in swept] == [u.invoice.custom_records for u in live]
        assert node.feed_head() == 5
    finally:
        node.close()


def test_a_sweep_keeps_rereading_an_amp_invoice_that_settled(sim: LndSim, node: LndNode) -> None:
    """An AMP invoice stays open for more payment sets after one settled (lnd
    shows it SETTLED meanwhile), so the sweep's window never passes it: a set
    settling on it later is found by the next sweep."""
    amp = sim.add_invoice(ln.Invoice(value_msat=5000, is_amp=True))
    sim.settle_amp_set(amp.r_hash, 1000)  # s1
    sim.keysend(2000)  # s2
    assert [u.cursor for u in node.settled_since(0)] == [1, 2]
    assert list(node.settled_since(2)) == []
    sim.settle_amp_set(amp.r_hash, 3000)  # s3, on the invoice swept past
    (later,) = node.settled_since(2)
    assert later.cursor == 3 and later.invoice.amount_received_msat == 3000


def test_a_first_start_lists_amp_sets_with_the_rest(sim: LndSim, node: LndNode) -> None:
    """From cursor 0 lnd replays nothing and the listing is the backlog: the
    AMP sets it shows are handed out with the plain invoices, in settle order,
    each carrying its settle_index as the cursor."""
    amp = sim.add_invoice(ln.Invoice(value_msat=5000, is_amp=True))
    sim.settle_amp_set(amp.r_hash, 1000, htlc_records=[{BOOST: b"{}"}])  # s1
    sim.keysend(2000)  # s2
    sim.amp_payment(3000)  # s3
    sim.settle_amp_set(amp.r_hash, 4000)  # s4
    follow = Follow(node, 0, sim)
    got = follow.take(4)
    assert [(u.cursor, u.invoice.amount_received_msat) for u in got] == [
        (1, 1000),
        (2, 2000),
        (3, 3000),
        (4, 4000),
    ]
    assert got[0].invoice.custom_records == {BOOST: b"{}"}
    assert follow.quiet() and follow.error is None


def test_the_sweep_window_passes_an_amp_invoice_once_lnd_canceled_it(
    sim: LndSim, node: LndNode
) -> None:
    """An AMP invoice holds the sweep's window while lnd keeps it open for
    more sets; once lnd canceled it (its expiry watcher does), it takes no
    more, and the window passes it after reading it once more."""
    amp = sim.amp_payment(1000)  # s1, add 1
    sim.bulk_settle(5)  # s2..s6, add 2..6
    assert [u.cursor for u in node.settled_since(0)] == [1, 2, 3, 4, 5, 6]
    sim.invoices_listed = 0
    assert list(node.settled_since(6)) == []
    assert sim.invoices_listed == 6 + 1  # from the AMP invoice on, and the pending probe
    sim.invoices_listed = 0
    assert list(node.settled_since(6)) == []
    assert sim.invoices_listed == 7  # still open in lnd: it holds the window
    sim.cancel_invoice(amp.r_hash)  # lnd's expiry watcher
    with pytest.raises(SimError, match="canceled"):
        sim.settle_amp_set(amp.r_hash, 500)
    assert list(node.settled_since(6)) == []  # reads it again, then passes it
    sim.invoices_listed = 0
    assert list(node.settled_since(6)) == []
    assert sim.invoices_listed == 0
    assert node.feed_head() == 6
