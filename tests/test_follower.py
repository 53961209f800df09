"""`Follower.apply`: a batch of node updates becomes rows, events and a cursor in
one transaction, the same whichever mix of new, known and repeated invoices it
holds. (Feed, reconnect and crash behaviour are covered end to end in
test_lnd_e2e.py and test_cln_e2e.py.)"""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import cast

import pytest

from lnplugin.follower import Follower, FollowerStatus, apply_in
from lnplugin.nodes.base import InvoiceRequest, InvoiceUpdate, Node, NodeInvoice
from lnplugin.nodes.dev import DevNode
from lnplugin.nodes.lnd import LndNode
from lnplugin.store import Store, captured_records, cursors, events, invoices
from lnplugin_sim.lnd_sim import LndSim
from tests.helpers_store import invoice_by_id
from tests.helpers_webhooks import wait_for


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "lnplugin.sqlite")
    yield store
    store.close()


@pytest.fixture
def follower(store, tmp_path):
    # The node is not contacted: only `apply` is exercised.
    return Follower(DevNode(tmp_path / "dev"), store)


def node_invoice(n: int, state: str = "SETTLED", **kw) -> NodeInvoice:
    now = int(time.time())
    fields = {
        "payment_hash": f"{n:064x}",
        "payment_request": f"lnbcrt{n}...",
        "state": state,
        "amount_msat": 1000 * n,
        "created_at": now - 10,
        "expiry": 3600,
        "description": f"invoice {n}",
        "amount_received_msat": 1000 * n if state == "SETTLED" else 0,
        "settled_at": now if state == "SETTLED" else None,
        "preimage": f"{n:064x}"[::-1] if state == "SETTLED" else None,
        **kw,
    }
    return NodeInvoice(**fields)


def rows(store: Store) -> list[dict]:
    return [dict(r) for r in store.conn.execute("SELECT * FROM invoices ORDER BY id")]


def all_events(store: Store) -> list[tuple[str, str, int]]:
    return [
        (e["type"], e["payment_hash"], e["invoice_id"])
        for e in events.after(store.conn, 0, limit=10_000)
    ]


def test_a_backlog_of_new_settlements_is_stored_once_each_with_its_event(store, follower):
    updates = [InvoiceUpdate(node_invoice(n), n) for n in range(1, 1201)]
    assert follower.apply(updates) == 1200
    stored = rows(store)
    assert [r["id"] for r in stored] == list(range(1, 1201))  # dense, as the "all" list needs
    assert [r["list_seq"] for r in stored] == list(range(1, 1201))
    assert [r["payment_hash"] for r in stored] == [f"{n:064x}" for n in range(1, 1201)]
    assert all(r["source"] == "node" and r["state"] == "SETTLED" for r in stored)
    assert all_events(store) == [
        (events.INCOMING_SETTLED, r["payment_hash"], r["id"]) for r in stored
    ]
    assert cursors.get(store.conn, cursors.INCOMING) == 1200
    assert follower.status.cursor == 1200


def test_rows_written_in_bulk_read_back_as_the_event_described_them(store, follower):
    follower.apply([InvoiceUpdate(node_invoice(7, description="café ☕"), 7)])
    (event,) = events.after(store.conn, 0)
    data = events.payload(event)["data"]
    stored = invoice_by_id(store.conn, event["invoice_id"])
    assert data["identifier"] == stored.identifier
    assert data["description"] == "café ☕"
    assert data["amount"] == 7 and data["amount_msat"] == 7000
    assert data["preimage"] == stored.preimage
    assert data["settled"] is True and data["state"] == "SETTLED"


def test_a_replay_inside_the_batch_counts_once(store, follower):
    first = InvoiceUpdate(node_invoice(1), 1)
    assert follower.apply([first, InvoiceUpdate(node_invoice(2), 2), first]) == 2
    assert [r["payment_hash"] for r in rows(store)] == [f"{1:064x}", f"{2:064x}"]
    assert len(all_events(store)) == 2


def test_a_replay_of_an_earlier_batch_changes_nothing(store, follower):
    batch = [InvoiceUpdate(node_invoice(n), n) for n in range(1, 4)]
    follower.apply(batch)
    before = rows(store)
    assert follower.apply(batch) == 0
    assert rows(store) == before
    assert len(all_events(store)) == 3


def test_known_and_new_invoices_in_one_batch_keep_the_feed_order(store, follower):
    # Invoice 2 was created through the API, so its settlement updates the
    # existing row; the others are new to lnplugin. Events follow the feed order.
    now = int(time.time())
    with store.transaction() as tx:
        created = invoices.insert(
            tx,
            {
                "type": "incoming",
                "payment_hash": f"{2:064x}",
                "payment_request": "lnbcrt2...",
                "state": "OPEN",
                "amount_msat": 2000,
                "created_at": now,
                "expiry": 3600,
                "expires_at": now + 3600,
            },
        )
    updates = [
        InvoiceUpdate(node_invoice(1), 1),
        InvoiceUpdate(node_invoice(2), 2),
        InvoiceUpdate(node_invoice(3, state="CANCELED"), 0),
        InvoiceUpdate(node_invoice(4), 3),
    ]
    assert follower.apply(updates) == 4
    by_hash = {r["payment_hash"]: r for r in rows(store)}
    assert by_hash[f"{2:064x}"]["id"] == created
    assert by_hash[f"{2:064x}"]["state"] == "SETTLED"
    assert by_hash[f"{3:064x}"]["state"] == "CANCELED"
    assert by_hash[f"{3:064x}"]["list_seq"] is None  # canceled invoices are not listed
    assert [by_hash[f"{n:064x}"]["list_seq"] for n in (1, 2, 4)] == [1, 2, 3]
    assert [(t, h) for t, h, _ in all_events(store)] == [
        (events.INCOMING_SETTLED, f"{1:064x}"),
        (events.INCOMING_SETTLED, f"{2:064x}"),
        (events.INCOMING_CANCELED, f"{3:064x}"),
        (events.INCOMING_SETTLED, f"{4:064x}"),
    ]
    assert sorted(r["id"] for r in rows(store)) == [1, 2, 3, 4]
    assert cursors.get(store.conn, cursors.INCOMING) == 3


def test_open_updates_in_a_batch_only_move_the_cursor(store, follower):
    assert follower.apply([InvoiceUpdate(node_invoice(1, state="OPEN"), 5)]) == 0
    assert rows(store) == []
    assert cursors.get(store.conn, cursors.INCOMING) == 5


def test_captured_records_are_joined_in_a_batch(store, follower):
    # CLN plugin mode: the hook stored records before the settlement arrived.
    with store.transaction() as tx:
        captured_records.merge(tx, f"{1:064x}", {34349334: b"hello"})
    follower.apply([InvoiceUpdate(node_invoice(1), 1), InvoiceUpdate(node_invoice(2), 2)])
    by_hash = {r["payment_hash"]: r for r in rows(store)}
    assert by_hash[f"{1:064x}"]["keysend_message"] == "hello"
    assert by_hash[f"{2:064x}"]["keysend_message"] is None


def test_a_failed_batch_leaves_nothing_behind(store, follower):
    # A real SQLite failure while the events are written, after the rows were.
    store.conn.execute(
        "CREATE TEMP TRIGGER fail_events BEFORE INSERT ON events "
        "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    )
    batch = [InvoiceUpdate(node_invoice(n), n) for n in range(1, 5)]
    with pytest.raises(sqlite3.IntegrityError, match="disk full"):
        follower.apply(batch)
    assert rows(store) == []
    assert cursors.get(store.conn, cursors.INCOMING) == 0
    store.conn.execute("DROP TRIGGER fail_events")
    assert follower.apply(batch) == 4


def test_the_single_update_path_and_the_batch_path_store_the_same_row(tmp_path):
    # `apply_in` (one update, row by row) and `Follower.apply` (bulk) must agree.
    single, bulk = Store(tmp_path / "a.sqlite"), Store(tmp_path / "b.sqlite")
    invoice = node_invoice(9, is_keysend=True, custom_records={7629169: b'{"action":"boost"}'})
    with single.transaction() as tx:
        apply_in(tx, InvoiceUpdate(invoice, 1))
    Follower(DevNode(tmp_path / "dev"), bulk).apply([InvoiceUpdate(invoice, 1)])

    def comparable(store: Store) -> dict:
        (row,) = rows(store)
        # The two random ids differ by design; every other column must agree.
        return {k: v for k, v in row.items() if k not in ("identifier", "public_id")}

    assert comparable(single) == comparable(bulk)
    assert comparable(bulk)["boostagram"] is not None
    single.close()
    bulk.close()


# -- outgoing payments -------------------------------------------------------------------


def wait_until(predicate, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_an_outgoing_payment_made_while_running_appears_without_waiting_for_the_sweep(
    store, tmp_path
):
    # The feed carries only incoming invoices; outgoing ones are polled from
    # the node's payment index at its poll interval, not only by the sweep.
    with LndSim(tmp_path / "lnd", network="regtest") as sim:
        node = LndNode(
            sim.target,
            cert=sim.cert_path,
            macaroon=sim.admin_macaroon_path,
            network="regtest",
        )
        node.outgoing_poll_interval = 0.1  # lnd's default is 5 s
        follower = Follower(node, store, sweep_interval=3600, expiry_interval=0.05)
        follower.start()
        try:
            wait_until(lambda: follower.status.last_sweep_at, "the startup sweep")
            paid = sim.make_payment(21_000, fee_msat=3)
            row = wait_until(
                lambda: invoices.by_hash(store.conn, paid.payment_hash, "outgoing"),
                "the outgoing payment",
            )
        finally:
            follower.stop()
    assert row.amount_msat == 21_000 and row.fee_msat == 3
    assert row.preimage == paid.payment_preimage
    assert follower.status.outgoing_cursor == paid.payment_index
    (event,) = events.after(store.conn, 0)
    assert event["type"] == events.OUTGOING_SETTLED


def test_the_last_error_is_cleared_once_the_node_answers_again(store, tmp_path):
    """`status` shows a feed error while the node is down, and not after it is
    back (a full sweep succeeds with the feed connected), even with no
    settlement since."""
    with LndSim(tmp_path / "lnd", network="regtest") as sim:
        node = LndNode(
            sim.target, cert=sim.cert_path, macaroon=sim.admin_macaroon_path, network="regtest"
        )
        follower = Follower(node, store, sweep_interval=0.2, expiry_interval=0.05, backoff_max=0.5)
        follower.start()
        try:
            wait_until(lambda: follower.status.connection == "connected", "the feed")
            sim.stop()
            error = wait_until(lambda: follower.status.last_error, "the feed error")
            assert "LND unavailable" in error
            sim.start()
            wait_until(
                lambda: (
                    follower.status.last_error is None and follower.status.connection == "connected"
                ),
                "the error to clear",
            )
        finally:
            follower.stop()


def test_a_node_whose_history_was_reset_is_re_read_from_the_start(tmp_path):
    """A node behind the stored cursor (restored from its seed, replaced, or a
    dev node whose files were not restored with the store) numbers its new
    settlements from 1 again: they are followed, not skipped as already seen,
    and what was stored before is not counted twice."""
    from lnplugin.nodes.base import InvoiceRequest

    store = Store(tmp_path / "lnplugin.sqlite")
    try:
        first = DevNode(tmp_path / "before")
        follower = Follower(first, store, sweep_interval=3600, expiry_interval=0.05)
        follower.start()
        try:
            for n in range(3):
                made = first.create_invoice(InvoiceRequest(amount_msat=1000 + n))
                first.pay(made.payment_request)
            wait_until(lambda: follower.status.cursor == 3, "three settlements stored")
        finally:
            follower.stop()
        first.close()

        again = DevNode(tmp_path / "after")  # a new node: its feed starts over
        follower = Follower(again, store, sweep_interval=3600, expiry_interval=0.05)
        follower.start()
        try:
            made = again.create_invoice(InvoiceRequest(amount_msat=7000))
            again.pay(made.payment_request)
            row = wait_until(
                lambda: invoices.by_hash(store.conn, made.payment_hash, "incoming"),
                "the new node's settlement",
            )
        finally:
            follower.stop()
        again.close()
    finally:
        settled = [e for e in all_events(store) if e[0] == events.INCOMING_SETTLED]
        store.close()
    assert row.state == "SETTLED" and row.amount_received_msat == 7000
    assert len(settled) == 4  # three before, one after: none counted twice


class _Address:
    """What lnplugin reaches at the node's address: one DevNode, then, after
    `replace`, another (the node behind it was replaced or reset). Its feed
    on the second one never delivers (a stream that stalls), so only the
    sweep reads it; and `pause_next_listing` holds the next sweep listing,
    once read, until released, to interleave a rewind with it."""

    def __init__(self, node: DevNode) -> None:
        self.node = self.first = node
        self.stalled = threading.Event()
        self.listed = threading.Event()
        self.release = threading.Event()
        self._pause = False
        self.listing: DevNode | None = None  # the node the sweep lists, when not `node`

    def __getattr__(self, name):
        return getattr(self.node, name)

    def replace(self, node: DevNode) -> None:
        old, self.node = self.node, node
        old.close()  # its feed ends, as a connection does when a node restarts

    def settlements(self, cursor):
        if self.node is self.first:
            yield from self.first.settlements(cursor)  # ends once it is closed
        else:
            self.stalled.wait()  # the other node's feed: connected, silent

    def pause_next_listing(self) -> None:
        self._pause = True

    def settled_since(self, cursor):
        listed = list((self.listing or self.node).settled_since(cursor))
        if self._pause:
            self._pause = False
            self.listed.set()
            self.release.wait(30)
        yield from listed


def test_a_sweep_that_read_from_the_cursor_before_a_rewind_moves_no_cursor(tmp_path):
    """A sweep lists from the stored cursor; before it applies what it read,
    the feed reconnects and finds another node behind the address, and
    rewinds the cursors. The sweep's batch (the new node's settlements past
    the old cursor) is stored, but its positions count from a cursor that is
    gone: had they moved the cursor on, the new node's settlements below it
    would never be read (the feed stalls here, so only the sweep reads).
    Every settlement of both nodes is stored once, with its event."""
    from lnplugin.nodes.base import InvoiceRequest

    def paid(node: DevNode, amounts) -> list[str]:
        hashes = []
        for amount in amounts:
            made = node.create_invoice(InvoiceRequest(amount_msat=amount))
            node.pay(made.payment_request)
            hashes.append(made.payment_hash)
        return hashes

    store = Store(tmp_path / "lnplugin.sqlite")
    old, new = DevNode(tmp_path / "old"), DevNode(tmp_path / "new")
    address = _Address(old)
    # A duck-typed stand-in for the node (it forwards the rest to a DevNode).
    follower = Follower(
        cast(Node, address), store, sweep_interval=0.1, expiry_interval=0.05, backoff_max=0.2
    )
    try:
        before = paid(old, [1000 + n for n in range(5)])
        after = paid(new, [7000 + n for n in range(8)])  # positions 1..8
        follower.start()
        wait_until(lambda: follower.status.cursor == 5, "the old node's settlements")
        address.pause_next_listing()
        address.listing = new  # the next sweep lists the new node, from cursor 5
        assert address.listed.wait(30)
        address.replace(new)  # ... and then the feed's connection to the old one ends
        wait_until(lambda: follower.status.cursor == 0, "the rewind at the reconnect")
        address.release.set()  # now the sweep applies what it read from cursor 5
        wait_until(
            lambda: all(invoices.by_hash(store.conn, h, "incoming") for h in after),
            "every settlement of the new node",
        )
        wait_until(lambda: follower.status.cursor == 8, "the cursor at the new node's head")
    finally:
        address.stalled.set()
        follower.stop()
        new.close()
        settled = [e[1] for e in all_events(store) if e[0] == events.INCOMING_SETTLED]
        store.close()
    assert sorted(settled) == sorted(before + after)  # each once


class _WatchedStatus(FollowerStatus):
    """Notes each write of a cursor made without the follower's `_apply_lock`."""

    def __setattr__(self, name, value):
        owner = self.__dict__.get("owner")
        watched = name in ("cursor", "outgoing_cursor")
        if watched and owner is not None and not owner._apply_lock.locked():
            owner.unlocked.append(name)
        super().__setattr__(name, value)


class _WatchedFollower(Follower):
    """Notes the cursors `status` shows at each rewind of `_epoch`."""

    bumps: list[tuple[int, int]]
    unlocked: list[str]

    @property
    def _epoch(self) -> int:
        return self.__dict__.get("_epoch_value", 0)

    @_epoch.setter
    def _epoch(self, value: int) -> None:
        if value != self.__dict__.get("_epoch_value", 0):
            self.bumps.append((self.status.cursor, self.status.outgoing_cursor))
        self.__dict__["_epoch_value"] = value


def test_a_rewind_is_seen_only_with_the_rewound_cursors(tmp_path):
    """The feed and the sweeps read `_epoch`, then a cursor from `status`,
    without a lock. A rewind that bumped the epoch before `status` showed
    the rewound cursors (it set them after the commit, outside the lock), or
    an `apply` that wrote the cursor it read after releasing the lock (over
    a rewind made meanwhile), let a reader pair the new epoch with the old
    cursor: it read the new node from there, its positions moved the stored
    cursor on, and the new node's first settlements were never read."""
    from lnplugin.nodes.base import InvoiceRequest

    store = Store(tmp_path / "lnplugin.sqlite")
    old, new = DevNode(tmp_path / "old"), DevNode(tmp_path / "new")
    follower = _WatchedFollower(old, store, sweep_interval=3600)
    follower.bumps, follower.unlocked = [], []
    status = _WatchedStatus(**vars(follower.status))
    status.owner = follower
    follower.status = status
    try:
        for node, count in ((old, 3), (new, 2)):
            for n in range(count):
                made = node.create_invoice(InvoiceRequest(amount_msat=1000 + n))
                node.pay(made.payment_request)
        follower.sweep()
        assert follower.status.cursor == 3
        follower.node = new  # another node behind the address, found at the reconnect
        follower._recheck_node()
        follower.sweep()
        assert follower.status.cursor == 2
    finally:
        follower.stop()
        old.close()
        new.close()
        store.close()
    assert follower.bumps == [(0, 0)]  # rewound before the epoch said so
    assert follower.unlocked == []


class _Backlog:
    """A DevNode whose feed hands out one settlement, then, once `go` is set,
    a backlog of `more` (the same one again: what counts is that they come)."""

    def __init__(self, node: DevNode, more: int) -> None:
        self.node, self.more = node, more
        self.go = threading.Event()
        self.handed = 0

    def __getattr__(self, name):
        return getattr(self.node, name)

    def settlements(self, cursor):
        [first] = list(self.node.settled_since(cursor))
        self.handed += 1
        yield first
        self.go.wait(30)
        for _ in range(self.more):
            self.handed += 1
            yield first


class _Batches(Follower):
    """Notes the size of each batch the feed applies, before it waits for the lock."""

    sizes: list[int]

    def apply(self, updates, epoch=None):
        updates = list(updates)
        self.sizes.append(len(updates))
        return super().apply(updates, epoch)


def test_a_feed_given_up_for_a_rewind_does_not_leave_its_reader_stuck(tmp_path, monkeypatch):
    """When a sweep rewinds the cursor under a connected feed, the feed starts
    again from the rewound cursor and nobody reads the old connection's
    queue any more. Its reader, blocked on that full queue while replaying a
    backlog, must leave, not wait on it for good with its stream."""
    import lnplugin.follower as follower_module

    queued = 5
    monkeypatch.setattr(follower_module, "FEED_QUEUE", queued)
    dev = DevNode(tmp_path / "dev")
    paid = dev.create_invoice(InvoiceRequest(amount_msat=1000))
    dev.pay(paid.payment_hash)
    node = _Backlog(dev, more=50)
    store = Store(tmp_path / "store.sqlite")
    follower = _Batches(cast(Node, node), store)  # a stand-in forwarding to a DevNode
    follower.sizes = []
    done = threading.Event()

    def follow() -> None:
        follower._follow_once()
        done.set()

    others = set(threading.enumerate())
    threading.Thread(target=follow, daemon=True).start()
    wait_for(lambda: follower.status.cursor == 1, timeout=30)
    with follower._apply_lock:  # the applying thread stops at its next batch...
        node.go.set()
        # ...and the reader fills the queue behind it and waits on a put: it
        # has handed out the first, that batch, the queue's worth, and one more.
        wait_for(
            lambda: len(follower.sizes) == 2 and node.handed == 1 + follower.sizes[1] + queued + 1,
            timeout=30,
        )
        follower._epoch += 1  # what a sweep's rewind does meanwhile
    assert done.wait(30), "the feed did not give the connection up"
    wait_for(  # a liveness bound, not a timing assertion
        lambda: (
            not [
                t
                for t in threading.enumerate()
                if t.name == "lnplugin-feed-reader" and t not in others
            ]
        ),
        timeout=30,
    )
    store.close()
    dev.close()
