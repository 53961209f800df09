"""The single place where node events become stored state.

A payment travels: node adapter (`Node.settlements`) -> `Follower.apply` ->
store (invoice row + outbox event + cursor, one transaction) -> webhooks/SSE.

Guarantees:
- Exactly one effect per payment: invoices are unique on (type, payment_hash)
  and an update that does not change state writes nothing but the cursor.
- Nothing is lost: the feed cursor is written in the same transaction as the
  updates it covers, and on every (re)connect the feed resumes from it.
- Connection loss is normal: the feed reconnects with exponential backoff and
  jitter, and a periodic sweep re-lists from the cursor and re-checks open
  invoices, so even a feed that silently stalls cannot lose a settlement.
"""

from __future__ import annotations

import collections
import logging
import queue
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from lnplugin.boostagram import records_from_json, records_to_json
from lnplugin.nodes.base import (
    Feature,
    FeedHead,
    HoldInvoices,
    InvoiceNotFound,
    InvoiceNotOpen,
    InvoiceUpdate,
    Node,
    NodeError,
    NodeInvoice,
    NodePermissionDenied,
    NodeUnavailable,
    OutgoingPayment,
)
from lnplugin.store import Store, captured_records, cursors, events, invoices
from lnplugin.store.invoices import record_fields, takes_address_webhook
from lnplugin.store.models import StoredInvoice

log = logging.getLogger(__name__)

_END = object()  # the feed ended cleanly
BATCH_MAX = 1000  # updates applied per transaction when the feed has a backlog
FEED_QUEUE = 10_000  # updates read ahead of the applying thread, at most
_FINAL = {"SETTLED", "CANCELED"}
# Why an invoice was canceled when lnplugin did not cancel it itself.
_NODE_CANCELED = "canceled on the node"
_EVENT_FOR_STATE = {
    "ACCEPTED": events.INCOMING_ACCEPTED,
    "SETTLED": events.INCOMING_SETTLED,
    "CANCELED": events.INCOMING_CANCELED,
    "EXPIRED": events.INCOMING_EXPIRED,
}


PROGRESS_EVERY = 5.0  # seconds between backfill progress lines


class BackfillProgress:
    """Progress lines while the feed works through a backlog (a first start
    on a node with 50,000 settled invoices, or a long outage): how many
    updates so far, the cursor against the node's head, the rate, an ETA.

    At most one line every `every` seconds, and a closing line when the
    backlog is done, so an operator sees that it moves without a line per
    batch. `clock` is given by tests, which step it instead of sleeping.
    """

    def __init__(self, every: float = PROGRESS_EVERY, clock: Any = time.monotonic) -> None:
        self.every = every
        self.clock = clock
        self._started: float | None = None
        self._last_line = 0.0
        self._count = 0
        self._from_cursor = 0
        self._lines = 0

    def batch(self, applied: int, before: int, cursor: int, head: int, more: bool) -> str | None:
        """Note one applied batch (`before`: the cursor before it); `more`: the
        feed had more waiting. Returns the line to log, if one is due."""
        now = self.clock()
        if self._started is None:
            if not more:
                return None  # a live payment, not a backlog
            self._started, self._last_line = now, now
            self._count, self._from_cursor, self._lines = 0, before, 0
        self._count += applied
        elapsed = max(now - self._started, 1e-9)
        if not more:
            line = None
            if self._lines:
                line = (
                    f"backfill done: {self._count} updates in {elapsed:.0f} s "
                    f"({self._count / elapsed:.0f}/s), cursor {cursor}"
                )
            self._started = None
            return line
        if now - self._last_line < self.every:
            return None
        self._last_line = now
        self._lines += 1
        rate = (cursor - self._from_cursor) / elapsed
        line = f"backfill: {self._count} updates applied, cursor {cursor}"
        if head > cursor:
            line += f" of head {head} ({100 * cursor / head:.0f}%)"
        line += f", {self._count / elapsed:.0f} updates/s"
        if head > cursor and rate > 0:
            line += f", about {(head - cursor) / rate:.0f} s left"
        return line


@dataclass
class FollowerStatus:
    """What `GET /info` and `lnplugin status` report."""

    connection: str = "starting"  # starting | connected | reconnecting | stopped
    cursor: int = 0
    # The node's feed position: asked of nodes with `Feature.FEED_HEAD`, else
    # the highest the feed has shown so far (the end of the page being read).
    head: int = 0
    outgoing_cursor: int = 0
    outgoing: str = "ok"  # ok | unavailable (reason in last_error of that part)
    last_event_at: int | None = None
    last_sweep_at: int | None = None
    last_error: str | None = None
    reconnects: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "connection": self.connection,
            "cursor": self.cursor,
            "head": self.head,
            "lag": max(0, self.head - self.cursor),
            "outgoing_cursor": self.outgoing_cursor,
            "outgoing": self.outgoing,
            "last_event_at": self.last_event_at,
            "last_sweep_at": self.last_sweep_at,
            "last_error": self.last_error,
            "reconnects": self.reconnects,
        }


def _merge_records(
    row: StoredInvoice | None, invoice: NodeInvoice, captured: dict[int, bytes]
) -> dict[int, bytes]:
    merged = records_from_json(row.custom_records) if row is not None else {}
    merged.update(captured)
    merged.update(invoice.custom_records)
    return merged


class ApplyBatch:
    """State shared by the updates applied in one transaction.

    Ingest speed is mostly SQLite statements per settlement, so what is the
    same for every update of a batch is done once: the cursor is advanced to
    the batch's highest position at the end (same transaction, so still
    atomic with the rows), `list_seq` is read once and counted up, and the
    lookup of records captured out of band is skipped when none ever were
    (the case for every node that lists records itself; nothing else writes
    during `tx`).
    """

    __slots__ = ("_captures", "_list_seq", "cursor")

    def __init__(self) -> None:
        self.cursor = 0
        self._list_seq: int | None = None
        self._captures: bool | None = None

    def next_list_seq(self, tx: sqlite3.Connection) -> int:
        if self._list_seq is None:
            self._list_seq = invoices.next_list_seq(tx, "incoming")
        else:
            self._list_seq += 1
        return self._list_seq

    def captured(self, tx: sqlite3.Connection, payment_hash: str) -> dict[int, bytes]:
        if self._captures is None:
            self._captures = captured_records.any_captured(tx)
        return captured_records.get(tx, payment_hash) if self._captures else {}

    def finish(self, tx: sqlite3.Connection) -> None:
        """Advance the cursor to the highest position the batch carried."""
        if self.cursor > 0:
            cursors.advance(tx, cursors.INCOMING, self.cursor)


def apply_in(
    tx: sqlite3.Connection, update: InvoiceUpdate, cancel_reason: str | None = None
) -> bool:
    """Apply one node update inside `tx`. Returns True when state changed.

    `cancel_reason` is stored with a CANCELED update (lnplugin canceled it,
    and says why), so the canceled event carries it."""
    batch = ApplyBatch()
    changed = _apply_one(tx, update, batch, cancel_reason)
    batch.finish(tx)
    return changed


def apply_many(tx: sqlite3.Connection, updates: Iterable[InvoiceUpdate], batch: ApplyBatch) -> int:
    """Apply a batch of node updates inside `tx`; returns how many changed state.

    A catch-up replays thousands of settlements lnplugin has never seen, and
    per-statement overhead is most of their cost, so those are collected and
    written with one INSERT per table. Everything else (a settlement of an
    invoice lnplugin created, a replay, a hash seen twice in the batch) goes
    through `_apply_one`, after the collected rows are written so that it
    sees them and the order of events is kept.
    """
    updates = list(updates)
    known = invoices.existing_hashes(
        tx, [u.invoice.payment_hash for u in updates if u.invoice.state != "OPEN"], "incoming"
    )
    fresh: list[tuple[str, dict[str, Any]]] = []  # (event type, complete row), in order
    changed = 0
    for update in updates:
        inv = update.invoice
        if inv.state == "OPEN":
            batch.cursor = max(batch.cursor, update.cursor)
            continue
        if inv.payment_hash in known:
            _write_fresh(tx, fresh)
            changed += _apply_one(tx, update, batch)
            continue
        batch.cursor = max(batch.cursor, update.cursor)
        row = _new_row(tx, inv, batch.captured(tx, inv.payment_hash), batch)
        fresh.append((_EVENT_FOR_STATE[inv.state], row))
        known.add(inv.payment_hash)
        changed += 1
    _write_fresh(tx, fresh)
    return changed


def _write_fresh(tx: sqlite3.Connection, fresh: list[tuple[str, dict[str, Any]]]) -> None:
    # Rows first: insert_many assigns the ids their events point at.
    if fresh:
        invoices.insert_many(tx, [row for _, row in fresh])
        events.append_many(tx, fresh)
        fresh.clear()


def _new_row(
    tx: sqlite3.Connection, inv: NodeInvoice, captured: dict[int, bytes], batch: ApplyBatch
) -> dict[str, Any]:
    """The complete row (see `invoices.complete`) for an invoice lnplugin
    first hears of from the node, not yet inserted."""
    fields = {
        "type": "incoming",
        "payment_hash": inv.payment_hash,
        "payment_request": inv.payment_request,
        "state": inv.state,
        "amount_msat": inv.amount_msat,
        # A canceled invoice's held HTLCs were failed back: nothing received.
        "amount_received_msat": 0 if inv.state == "CANCELED" else inv.amount_received_msat,
        "description": inv.description,
        "description_hash": inv.description_hash,
        "created_at": inv.created_at,
        "expiry": inv.expiry,
        "expires_at": inv.expires_at,
        "settled_at": inv.settled_at,
        "preimage": inv.preimage,
        "payment_secret": inv.payment_secret,
        "is_keysend": int(inv.is_keysend),
        "settle_deadline": inv.settle_deadline,
        "cancel_reason": (inv.cancel_reason or _NODE_CANCELED) if inv.state == "CANCELED" else None,
        "source": "node",
        **record_fields(_merge_records(None, inv, captured), tx, address_webhook=inv.is_keysend),
    }
    if inv.state == "SETTLED":
        fields["list_seq"] = batch.next_list_seq(tx)
    return invoices.complete(fields)


def _apply_one(
    tx: sqlite3.Connection,
    update: InvoiceUpdate,
    batch: ApplyBatch,
    cancel_reason: str | None = None,
) -> bool:
    inv = update.invoice
    batch.cursor = max(batch.cursor, update.cursor)
    if inv.state == "OPEN":
        return False  # nothing to record; lnplugin stores its own invoices at creation
    row = invoices.by_hash(tx, inv.payment_hash, "incoming")
    # Records captured out of band (CLN plugin mode: `htlc_accepted`), if any.
    captured = batch.captured(tx, inv.payment_hash)
    stored: StoredInvoice | dict[str, Any]  # what the event reports: a new or an updated row
    if row is None:
        stored = _new_row(tx, inv, captured, batch)
        if cancel_reason is not None and inv.state == "CANCELED":
            stored["cancel_reason"] = cancel_reason
        invoices.insert_many(tx, [stored])
    else:
        invoice_id = row.id
        new_records = _merge_records(row, inv, captured)
        records_changed = records_to_json(new_records) != row.custom_records
        if row.state in _FINAL or row.state == inv.state:
            # A replay or duplicate. Records may still arrive late (captured
            # out of band, e.g. by CLN plugin mode), so merge those without an event.
            if records_changed:
                invoices.update(
                    tx,
                    invoice_id,
                    record_fields(new_records, tx, address_webhook=takes_address_webhook(row)),
                )
            return False
        fields: dict[str, Any] = {"state": inv.state}
        if inv.state == "SETTLED":
            fields.update(
                amount_received_msat=inv.amount_received_msat,
                settled_at=inv.settled_at or int(time.time()),
                preimage=inv.preimage,
                list_seq=batch.next_list_seq(tx),
                is_keysend=int(inv.is_keysend or row.is_keysend),
            )
            if row.cancel_reason is not None:  # a cancel noted, and the node settled
                fields["cancel_reason"] = None
        elif inv.state == "ACCEPTED":
            fields.update(
                amount_received_msat=inv.amount_received_msat,
                settle_deadline=inv.settle_deadline,
            )
        elif inv.state == "CANCELED":
            # Held HTLCs are failed back: the payer keeps the money (LND's
            # amt_paid goes back to 0 too).
            fields.update(
                # `row.cancel_reason`: noted before lnplugin asked the node to
                # cancel (`Follower.cancel`), by this process or one that died.
                cancel_reason=cancel_reason
                or inv.cancel_reason
                or row.cancel_reason
                or _NODE_CANCELED,
                amount_received_msat=0,
            )
        if records_changed:
            fields.update(
                record_fields(new_records, tx, address_webhook=takes_address_webhook(row))
            )
        invoices.update(tx, invoice_id, fields)
        stored = replace(row, **fields)  # the row as updated, without reading it back
    events.append(tx, _EVENT_FOR_STATE[inv.state], stored)
    return True


def apply_outgoing_in(tx: sqlite3.Connection, payment: OutgoingPayment) -> bool:
    if payment.cursor > 0:
        cursors.advance(tx, cursors.OUTGOING, payment.cursor)
    if invoices.by_hash(tx, payment.payment_hash, "outgoing") is not None:
        return False
    records = dict(payment.custom_records)
    invoice_id = invoices.insert(
        tx,
        {
            "type": "outgoing",
            "payment_hash": payment.payment_hash,
            "payment_request": payment.payment_request,
            "state": "SETTLED",
            "amount_msat": payment.amount_msat,
            "amount_received_msat": 0,
            "fee_msat": payment.fee_msat,
            "description": payment.description,
            "created_at": payment.created_at,
            "expiry": 0,
            "expires_at": payment.created_at,
            "settled_at": payment.settled_at or payment.created_at,
            "preimage": payment.preimage,
            "destination": payment.destination,
            "is_keysend": int(not payment.payment_request),
            "list_seq": invoices.next_list_seq(tx, "outgoing"),
            "source": "node",
            **record_fields(records),
        },
    )
    stored = invoices.by_id(tx, invoice_id)
    assert stored is not None
    events.append(tx, events.OUTGOING_SETTLED, stored)
    return True


EXPIRE_BATCH = 500  # due invoices read, asked about and marked at a time


def expire_due(
    store: Store,
    now: int | None = None,
    *,
    ask: Callable[[list[StoredInvoice]], set[str]] | None = None,
) -> int:
    """Mark open invoices past their expiry EXPIRED, with an event each.

    `ask` (the follower's `_lapsed`, which asks the node) is handed each
    batch of due invoices first and returns the payment hashes of those
    that lapsed unpaid; it stores what the node says of the others (paid or
    held while lnplugin did not hear of it), so that none of them gets an
    `expired` event. Without it every due invoice is marked. Each batch is
    read again in the transaction that marks it: one the feed settled
    meanwhile is no longer OPEN, and stays as the feed left it.

    Batches follow one another by (`expires_at`, `id`): a due invoice the
    node leaves open (it said nothing that changes it) is asked about once
    a sweep, and neither holds the sweep in a loop nor keeps the invoices
    after it from being asked about."""
    now = int(time.time()) if now is None else now
    count = 0
    after = invoices.BEFORE_ANY
    while True:
        with store.snapshot() as conn:
            due = invoices.open_expired(conn, now, EXPIRE_BATCH, after)
        if not due:
            return count
        lapsed = {row.payment_hash for row in due} if ask is None else ask(due)
        if lapsed:
            with store.transaction() as tx:
                rows = [
                    row
                    for row in invoices.open_expired(tx, now, EXPIRE_BATCH, after)
                    if row.payment_hash in lapsed
                ]
                _expire_in(tx, rows)
            count += len(rows)
        if len(due) < EXPIRE_BATCH:
            return count
        after = (due[-1].expires_at, due[-1].id)


def _expire_in(tx: sqlite3.Connection, rows: list[StoredInvoice]) -> None:
    for row in rows:
        invoices.update(tx, row.id, {"state": "EXPIRED"})
    events.append_many(
        tx, [(events.INCOMING_EXPIRED, replace(row, state="EXPIRED")) for row in rows]
    )


def _watched(row: StoredInvoice) -> bool:
    """A held invoice the safety cancel watches: one lnplugin made (over HTTP
    or Nostr Wallet Connect) with a known deadline. A hold invoice another
    app made on the node is that app's to settle or cancel."""
    return row.settle_deadline is not None and row.source in ("api", "nwc")


def cancel_reason(height: int, deadline: int, margin: int) -> str:
    """Why lnplugin canceled a held invoice, in words that stay true when it
    comes late (lnplugin was down while the margin passed)."""
    left = deadline - height
    if left > 0:
        where = f"{left} blocks before its settle deadline {deadline}"
    elif left == 0:
        where = f"at its settle deadline {deadline}"
    else:
        where = f"{-left} blocks past its settle deadline {deadline}"
    return (
        f"canceled by lnplugin at block {height}, {where}: not settled or canceled "
        f"within hold_cancel_margin ({margin} blocks) of it"
    )


class Follower:
    """Runs the feed and the sweeps in background threads."""

    def __init__(
        self,
        node: Node,
        store: Store,
        *,
        sweep_interval: float = 60.0,
        expiry_interval: float = 5.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        hold_cancel_margin: int = 24,
    ) -> None:
        self.node = node
        self.hold_cancel_margin = hold_cancel_margin
        self.store = store
        self.sweep_interval = sweep_interval
        self.expiry_interval = expiry_interval
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.status = FollowerStatus()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._apply_lock = threading.Lock()
        self._cursor_kind: str | None = None
        self._outgoing_kind: str | None = None
        # Cancels lnplugin has asked the node for, by payment hash, with the
        # reason: the node's own report of one (its hold feed) can be applied
        # before `cancel` returns, and must carry the reason all the same.
        # The row's noted `cancel_reason` cannot stand in for it: a report
        # from Core Lightning's hold code carries a reason of its own (a
        # timer's cancel), which `_apply_one` puts before the noted one, as
        # is right after a crash, but not over a cancel in flight
        # (tests/test_cln_hold.py, the API cancel after the timer's).
        self._cancel_reasons: dict[str, str] = {}
        self._logged_error: str | None = None  # the last error logged (see `_note_error`)
        # The checks before the cursors are used (`_check_node`): done once
        # per process, by whichever of the feed and the sweep comes first.
        self._check_lock = threading.Lock()
        self._identity_checked = False
        self._head_checked = False  # see `_start_over`
        # Counts the rewinds of the cursors (changed under `_apply_lock`). A
        # reader notes it before it reads from a cursor; what it read after a
        # rewind since is applied without its positions (see `apply`).
        self._epoch = 0
        # Failed node calls by operation, for `/metrics`; the API adds its own
        # (create_invoice, get_info). Increments are single dict updates under the GIL.
        self.node_errors: collections.Counter[str] = collections.Counter()
        # Refusals that would repeat every tick or reconnect (credentials that
        # may not ask the node something): logged once each, by name.
        self._warned: set[str] = set()
        with store.snapshot() as conn:
            self.status.cursor = cursors.get(conn, cursors.INCOMING)
            self.status.outgoing_cursor = cursors.get(conn, cursors.OUTGOING)
        self.status.head = self.status.cursor

    # -- applying -------------------------------------------------------------

    def apply(self, updates: Iterable[InvoiceUpdate], epoch: int | None = None) -> int:
        """Apply updates in one transaction; returns how many changed state.

        `epoch`: the reader's `_epoch` when it read its cursor. When the
        cursors were rewound since (a reset node), its updates are real
        payments and are stored, but their positions count from a cursor that
        is no longer there: advancing to them would skip what the re-read from
        the start has not reached yet, so they move no cursor."""
        with self._apply_lock:
            with self.store.transaction() as tx:
                if epoch is not None and epoch != self._epoch:
                    updates = [replace(u, cursor=0) for u in updates]
                batch = ApplyBatch()
                if self._cancel_reasons:
                    changed = self._apply_with_reasons(tx, updates, batch)
                else:  # the usual case: one pass, as before hold invoices
                    changed = apply_many(tx, updates, batch)
                batch.finish(tx)
                cursor = cursors.get(tx, cursors.INCOMING)
            # Under the lock: written after it, this could land over a rewind
            # made meanwhile and show a reader the new epoch with this cursor.
            self.status.cursor = cursor
            self.status.head = max(self.status.head, cursor)
        if changed:
            self.status.last_event_at = int(time.time())
        return changed

    def _apply_with_reasons(
        self, tx: sqlite3.Connection, updates: Iterable[InvoiceUpdate], batch: ApplyBatch
    ) -> int:
        """`apply_many`, except that a CANCELED update of an invoice lnplugin is
        canceling right now is stored with the reason `cancel` gave."""
        changed = 0
        plain: list[InvoiceUpdate] = []
        for update in updates:
            inv = update.invoice
            reason = self._cancel_reasons.get(inv.payment_hash)
            if reason is None or inv.state != "CANCELED":
                plain.append(update)
                continue
            changed += apply_many(tx, plain, batch)
            plain = []
            changed += _apply_one(tx, update, batch, reason)
        return changed + apply_many(tx, plain, batch)

    def apply_outgoing(self, payments: Iterable[OutgoingPayment], epoch: int | None = None) -> int:
        """Store outgoing payments in one transaction; `epoch` as in `apply`."""
        changed = 0
        with self._apply_lock, self.store.transaction() as tx:
            if epoch is not None and epoch != self._epoch:
                payments = [replace(p, cursor=0) for p in payments]
            for payment in payments:
                changed += apply_outgoing_in(tx, payment)
            self.status.outgoing_cursor = cursors.get(tx, cursors.OUTGOING)
        return changed

    # -- hold invoices ----------------------------------------------------------

    def _holder(self) -> HoldInvoices | None:
        node = self.node
        if node.has_feature(Feature.HOLD_INVOICES) and isinstance(node, HoldInvoices):
            return node
        return None

    def settle(self, preimage: str) -> None:
        """Settle a held invoice on the node and store the result at once, so
        the caller's next read sees it (the feed's later copy is a duplicate)."""
        holder = self._holder()
        if holder is None:
            raise NodeError(f"the {self.node.kind} node has no hold invoices")
        self.apply([InvoiceUpdate(holder.settle_invoice(preimage), 0)])

    def cancel(self, payment_hash: str, reason: str) -> None:
        """Cancel an open or held invoice on the node, and store CANCELED with `reason`.

        The node's own CANCELED (feed or sweep) may arrive before or after;
        whichever is applied second changes nothing, so there is one event.
        """
        holder = self._holder()
        if holder is None:
            raise NodeError(f"the {self.node.kind} node cannot cancel invoices")
        # In the store before the node is asked: the node's CANCELED outlives
        # a crash before it is stored here, and the next process stores it
        # with this reason, not as "canceled on the node". Kept when the call
        # fails otherwise: the node may have canceled all the same.
        with self.store.transaction() as tx:
            invoices.note_cancel_reason(tx, payment_hash, reason)
        self._cancel_reasons[payment_hash] = reason
        try:
            try:
                canceled = holder.cancel_invoice(payment_hash, reason)
            except (InvoiceNotFound, InvoiceNotOpen):
                with self.store.transaction() as tx:
                    invoices.drop_cancel_reason(tx, payment_hash)
                raise
            self.apply([InvoiceUpdate(canceled, 0)])
        finally:
            self._cancel_reasons.pop(payment_hash, None)

    def cancel_near_deadline(self) -> int:
        """Cancel held invoices within `hold_cancel_margin` blocks of their deadline.

        A hold invoice left ACCEPTED until its HTLC expires makes the paying
        peer force-close the channel to get the HTLC back on chain. Canceling
        a margin earlier fails the HTLCs back off chain instead; the canceled
        event says so. Returns how many were canceled.

        Only the invoices `_watched` names.
        """
        off = self.node.unavailable.get(Feature.HOLD_INVOICES)
        if self._holder() is None and off is None:
            return 0
        with self.store.snapshot() as conn:
            held = [r for r in invoices.accepted(conn) if _watched(r)]
        if not held:
            return 0
        if self._holder() is None:
            # Held before lnplugin was restarted with credentials that rule
            # hold invoices out (an LND macaroon without CancelInvoice): said
            # once, as a refused cancel is below, rather than nothing at all.
            self._warn_once(
                "cancel",
                "cannot cancel held invoices (%s): they are canceled before their "
                "deadline only by the node itself",
                off,
            )
            return 0
        height = self._height()
        if height is None:
            return 0
        count = 0
        for row in held:
            assert row.settle_deadline is not None
            if row.settle_deadline - height > self.hold_cancel_margin:
                break  # nearest deadline first
            count += self._cancel_late(row, height) is not None
        return count

    def cancel_if_due(self, row: StoredInvoice) -> str | None:
        """The safety cancel's rule for one held invoice, asked before it is
        settled: within `hold_cancel_margin` of its deadline it is canceled
        now, as the next look of `cancel_near_deadline` would, and the reason
        is returned (the settle is refused); None when it may be settled.

        A settle that came after the deadline would release the preimage for
        HTLCs the payer's peer may already be claiming back on chain (Core
        Lightning and the dev node do not cancel these themselves). So
        credentials that may not cancel raise `NodePermissionDenied` here:
        the settle is refused all the same (the sweep's look steps aside)."""
        if not _watched(row):
            return None
        height = self._height()
        assert row.settle_deadline is not None
        if height is None or row.settle_deadline - height > self.hold_cancel_margin:
            return None
        return self._cancel_late(row, height, settling=True)

    def _cancel_late(
        self, row: StoredInvoice, height: int, *, settling: bool = False
    ) -> str | None:
        """Cancel a held invoice past the margin; its reason, or None when it
        was settled meanwhile (the feed brings that). `settling`: asked
        before a settle, which a refused cancel must not let through."""
        assert row.settle_deadline is not None
        reason = cancel_reason(height, row.settle_deadline, self.hold_cancel_margin)
        try:
            self.cancel(row.payment_hash, reason)
        except InvoiceNotOpen:
            return None
        except NodePermissionDenied as exc:
            if settling:
                raise
            # Credentials that may not cancel (an LND macaroon without
            # CancelInvoice): raised, this stopped every sweep after it in
            # `_run_sweeps`, each tick, until the node canceled by itself.
            self._warn_once(
                "cancel",
                "cannot cancel held invoices (%s): they are canceled before their "
                "deadline only by the node itself",
                exc,
            )
            return None
        log.warning("hold invoice %s %s", row.payment_hash, reason)
        return reason

    def _height(self) -> int | None:
        """The node's block height; None when unknown or the credentials may
        not ask (said once: lnplugin then leaves held invoices to the node)."""
        try:
            return self.node.get_info().block_height
        except NodePermissionDenied as exc:
            self._warn_once(
                "height",
                "cannot read the block height (%s): held invoices are not canceled "
                "before their deadline by lnplugin, only by the node itself",
                exc,
            )
            return None

    def expire(self, now: int | None = None) -> int:
        """Mark open invoices past their expiry EXPIRED (`expire_due`), asking
        the node about each first (`_lapsed`)."""
        return expire_due(self.store, now, ask=self._lapsed)

    def _lapsed(self, due: list[StoredInvoice]) -> set[str]:
        """Which of the `due` invoices lapsed unpaid, by the node's word; what
        it says of the others is stored. One paid before its expiry while
        lnplugin did not hear of it (down, its feed away or behind, as at
        every start after an outage) is SETTLED there, or held ACCEPTED (a
        hold invoice, to be settled or canceled), and an `expired` event
        would tell an app to give up on an order that was paid. The node
        takes no payment after the expiry, so what it answers stays true
        until the invoice is marked. A node that cannot answer (down) leaves
        them all OPEN until a later tick (`NodeUnavailable` is raised)."""
        heard: list[InvoiceUpdate] = []
        lapsed: set[str] = set()
        for row in due:
            found = self.node.lookup_invoice(row.payment_hash)
            if found is not None and found.state in ("ACCEPTED", *_FINAL):
                heard.append(InvoiceUpdate(found, 0))
            else:
                lapsed.add(row.payment_hash)
        if heard:
            self.apply(heard)
        return lapsed

    def sync_cursor_kind(self) -> None:
        """Reset the incoming cursor if the node now counts it differently.

        Only nodes whose `cursor_kind` is not None (CLN) take part; asking may
        need the node, so this runs at the start of each feed connection and sweep.
        """
        kind = self.node.cursor_kind
        if kind is None or kind == self._cursor_kind:
            return
        with self._apply_lock:
            with self.store.transaction() as tx:
                reset = cursors.sync_kind(tx, cursors.INCOMING, kind)
                cursor = cursors.get(tx, cursors.INCOMING)
            if reset:  # as in `_rewound`: the cursor first, then the epoch
                self.status.cursor = self.status.head = cursor
                self._epoch += 1
        if reset:
            log.warning(
                "the node's feed position now counts its %s: re-reading from the start", kind
            )
        self._cursor_kind = kind

    def sync_outgoing_cursor_kind(self) -> None:
        """`sync_cursor_kind` for the outgoing cursor: reset it when what it
        counts changed, or was never recorded (a cursor an older lnplugin
        kept, which may count something else: CLN's `listsendpays` `id`)."""
        kind = self.node.outgoing_cursor_kind
        if kind is None or kind == self._outgoing_kind:
            return
        with self._apply_lock:
            with self.store.transaction() as tx:
                reset = cursors.sync_kind(tx, cursors.OUTGOING, kind)
                self.status.outgoing_cursor = cursors.get(tx, cursors.OUTGOING)
            if reset:
                self._epoch += 1  # a read from the old cursor moves it no more
        if reset:
            log.warning(
                "the outgoing payment position now counts its %s: "
                "re-reading payments from the start",
                kind,
            )
        self._outgoing_kind = kind

    def refresh_head(self) -> int | None:
        """Ask the node for its feed head, on nodes that can tell (`FeedHead`);
        returns it as the node gave it (None: unknown)."""
        if not self.node.has_feature(Feature.FEED_HEAD) or not isinstance(self.node, FeedHead):
            return None
        try:
            head = self.node.feed_head()
        except NodeError:
            self.node_errors["feed_head"] += 1
            return None
        if head is not None:
            self.status.head = max(head, self.status.cursor)
        return head

    def _check_node(self) -> bool:
        """What must hold before the feed or a sweep reads from the cursors:
        they count this node's positions (`cursors.sync_node`), and the node's
        history is the one they count (`_start_over`). Done under a lock by
        whichever of the feed and the sweep comes first, at the start and
        again after each end of the feed's connection (`_recheck_node`): a
        node restarted meanwhile may be another, or have lost its invoices.
        A check the node could not answer (down) is tried again at the next
        connection. True when it asked the node for its head just now (the
        feed need not ask again)."""
        self.sync_cursor_kind()
        if self._identity_checked and self._head_checked:
            return False
        with self._check_lock:
            rewound = False
            if not self._identity_checked:
                rewound = self._check_identity()
                self._identity_checked = True
            if self._head_checked:
                return False
            # Read before the head is asked: every position in it was handed
            # out before, so the node's head, if it still has that history,
            # is not below it, even with a sweep applying meanwhile.
            cursor = self.status.cursor
            head = self.refresh_head()
            replaced = (
                self.node.has_feature(Feature.FEED_HEAD)
                and isinstance(self.node, FeedHead)
                and self.node.history_replaced()
            )
            if rewound:
                pass  # another node: already re-read from the start
            elif replaced:
                self._start_over(
                    "the node's invoice history is not the one lnplugin followed (a restored "
                    "or replaced node)"
                )
            elif head is not None and head < cursor:
                self._start_over(
                    f"the node's settlement feed is at {head}, behind the {cursor} lnplugin "
                    "had stored: its invoice history was reset (a restored or replaced node)"
                )
            # Marked after `_start_over`, never before: a sweep that finds it
            # marked (without the lock) reads the rewound cursor. The head
            # must be fresh here, on every kind of node: lnd's is listed
            # afresh after a connection ended, and never below the positions
            # it handed out (`LndNode.feed_head`).
            if head is not None or not self.node.has_feature(Feature.FEED_HEAD):
                self._head_checked = True
            return True

    def _recheck_node(self) -> None:
        """The feed's connection ended: the node may have restarted as another
        node or with another history (restored from its seed, a new database
        with the same key), so `_check_node` runs again before the feed or a
        sweep next reads from the cursors. A restart always ends the feed's
        connection, cleanly or not; this is how a reset while lnplugin runs
        is found at the reconnect rather than at lnplugin's next start."""
        with self._check_lock:
            self._identity_checked = self._head_checked = False

    def _check_identity(self) -> bool:
        """Rewind the cursors when the node is not the one they count for (its
        data dir was wiped, or lnplugin was pointed at another node): that
        node's positions start at 1, and however many it has, those up to
        the stored cursors would otherwise be skipped. True when it rewound."""
        try:
            pubkey = self.node.get_info().pubkey
        except NodeUnavailable:
            raise  # down: asked again at the next connection
        except NodeError as exc:  # e.g. lnd's invoice.macaroon, without info:read
            self._warn_once(
                "identity",
                "cannot read the node's identity (%s): a replaced node is noticed only when "
                "its feed is behind the stored cursor",
                exc,
            )
            return False
        if not pubkey:
            return False
        with self._apply_lock:
            with self.store.transaction() as tx:
                before = cursors.sync_node(tx, pubkey)
            if before is not None:
                self._rewound()
        if before is None:
            return False
        log.warning(
            "the node is %s, not %s whose settlements lnplugin followed until now (a new or "
            "replaced node): re-reading its settlements and payments from the start",
            pubkey,
            before,
        )
        return True

    def _rewound(self) -> None:
        """Show the cursors just rewound (committed), then count the rewind;
        under `_apply_lock`, in this order. The feed and the sweeps note
        `_epoch` and then read a cursor from `status`, without a lock: had the
        epoch moved first (or an `apply` written its cursor after the lock,
        over the rewind), a reader could pair the new epoch with the old
        cursor, read the new history from there, and move the stored cursor
        past the settlements the re-read had not reached yet."""
        self.status.cursor = self.status.head = self.status.outgoing_cursor = 0
        self._epoch += 1

    def _start_over(self, why: str) -> None:
        """The node's invoice history was reset (lnd restored from its seed, a
        replaced Core Lightning database, a dev node whose files were not
        restored with the store): the node numbers its settlements and
        payments afresh, and every position it hands out from now on would be
        at or below the cursors and skipped, payments included. So re-read it
        from the start: the store deduplicates, so nothing already stored is
        counted twice. What a reader had read from the old cursors is applied
        without its positions (`apply`'s `epoch`). Checked by `_check_node`
        at the start and at each reconnect of the feed, before it or a sweep
        reads the cursors again."""
        with self._apply_lock:
            with self.store.transaction() as tx:
                cursors.rewind_followed(tx)  # its payments are numbered afresh too
            self._rewound()
        log.warning("%s; re-reading its settlements and payments from the start", why)

    # -- sweeps -----------------------------------------------------------------

    def sweep(self) -> None:
        """Re-list from the cursor, re-check open invoices, fetch outgoing."""
        self._check_node()
        epoch = self._epoch  # before the cursor is read: see `apply`
        batch: list[InvoiceUpdate] = []
        for update in self.node.settled_since(self.status.cursor):
            self.status.head = max(self.status.head, update.cursor)
            batch.append(update)
            if len(batch) >= BATCH_MAX:
                self.apply(batch, epoch)
                batch = []
        if batch:
            self.apply(batch, epoch)
        now = int(time.time())
        with self.store.snapshot() as conn:
            open_rows = invoices.open_unexpired(conn, now)
            # Held invoices too: a feed that does not carry every hold-state
            # change (or a restart) must not leave one ACCEPTED here forever.
            open_rows += invoices.accepted(conn)
        rechecked = []
        for row in open_rows:
            found = self.node.lookup_invoice(row.payment_hash)
            if found is not None and found.state not in ("OPEN", row.state):
                rechecked.append(InvoiceUpdate(found, 0))
        if rechecked:
            self.apply(rechecked)
        self.sweep_outgoing()
        self.status.last_sweep_at = int(time.time())

    def sweep_outgoing(self) -> None:
        if not self.node.has_feature(Feature.OUTGOING_HISTORY):
            return
        self._check_node()  # between two sweeps too: the cursor must count this node's
        self.sync_outgoing_cursor_kind()
        epoch = self._epoch
        try:
            payments = list(self.node.outgoing_payments(self.status.outgoing_cursor))
        except NodePermissionDenied as exc:
            self._warn_once("outgoing", "outgoing payment history unavailable: %s", exc)
            self.status.outgoing = "unavailable"
            return
        self.status.outgoing = "ok"
        if payments:
            self.apply_outgoing(payments, epoch)

    # -- threads ------------------------------------------------------------------

    def start(self) -> None:
        runs = [(self._run_feed, "lnplugin-feed"), (self._run_sweeps, "lnplugin-sweeps")]
        if self._holder() is not None:
            runs.append((self._run_hold_feed, "lnplugin-hold-feed"))
        for target, name in runs:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.node.close()
        for thread in self._threads:
            thread.join(timeout)
        self.status.connection = "stopped"

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.backoff_max, self.backoff_initial * (2**attempt))
        return random.uniform(ceiling / 2, ceiling)  # "equal jitter"

    def _run_feed(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                self._follow_once()
                attempt = 0  # the feed ended cleanly (node closed it); reconnect now
            except NodeError as exc:  # NodeUnavailable is one
                self.node_errors["feed"] += 1
                self._note_error(exc)
            except Exception as exc:  # a bug must not silently stop following
                log.exception("settlement feed failed")
                self._note_error(exc)
            if self._stop.is_set():
                break
            self._recheck_node()  # lnd shutting down ends the stream cleanly, too
            self.status.connection = "reconnecting"
            self.status.reconnects += 1
            delay = self._backoff(attempt)
            attempt += 1
            self._stop.wait(delay)

    def _run_hold_feed(self) -> None:
        """Apply the node's live ACCEPTED/CANCELED changes as they come, with
        the same reconnect backoff as the settlement feed."""
        holder = self._holder()
        assert holder is not None
        attempt = 0
        while not self._stop.is_set():
            try:
                for update in holder.hold_updates():
                    if self._stop.is_set():
                        break
                    self.apply([update])
                    attempt = 0
            except NodeError as exc:
                self._note_error(exc)
            except Exception as exc:
                log.exception("hold invoice feed failed")
                self._note_error(exc)
            if self._stop.is_set():
                break
            self._stop.wait(self._backoff(attempt))
            attempt += 1

    def _warn_once(self, key: str, message: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)

    def _note_error(self, exc: Exception) -> None:
        message = str(exc) or exc.__class__.__name__
        if message != self._logged_error:  # once per distinct error, not per retry
            log.warning("node feed interrupted: %s (reconnecting with backoff)", message)
            self._logged_error = message
        self.status.last_error = message

    def _node_answers(self) -> None:
        """A full sweep succeeded while the feed is connected: the node answers
        again, so the error `status` shows is over (it used to stay until the
        next settlement, however long after the reconnect that came)."""
        if self.status.connection == "connected":
            self.status.last_error = None
            self._logged_error = None

    def _follow_once(self) -> None:
        """Read the feed in one thread, apply batches in this one.

        Batching is what lets a backlog of thousands of settlements commit in a
        handful of transactions, while a single live payment still commits
        within milliseconds.
        """
        if not self._check_node():
            self.refresh_head()
        progress = BackfillProgress()
        pending: queue.Queue[Any] = queue.Queue(maxsize=FEED_QUEUE)
        epoch = self._epoch  # before the cursor is read: see `apply`
        stream = self.node.settlements(self.status.cursor)
        left = threading.Event()  # this connection was given up (the cursor was rewound)

        def offer(item: Any) -> bool:
            """Queue `item` for the applying thread; False once that thread has
            given this connection up, or lnplugin stops. Nobody drains the
            queue then, and a blocking `put` on a full one (a backlog being
            replayed) would hold this thread, its stream and all it queued
            for good."""
            while True:
                try:
                    pending.put(item, timeout=0.5)
                    return True
                except queue.Full:
                    if self._stop.is_set() or left.is_set():
                        return False

        def read() -> None:
            try:
                for update in stream:
                    if not offer(update) or self._stop.is_set() or left.is_set():
                        return
                offer(_END)
            except BaseException as exc:  # handed to the applying thread
                offer(exc)

        reader = threading.Thread(target=read, name="lnplugin-feed-reader", daemon=True)
        reader.start()
        self.status.connection = "connected"
        while not self._stop.is_set():
            if self._epoch != epoch:
                # A sweep's check rewound the cursor this stream reads from (the
                # feed's own check could not ask the node for its head): start
                # again from the rewound one. The reader leaves at its next update.
                left.set()
                return
            try:
                item = pending.get(timeout=0.5)
            except queue.Empty:
                continue
            batch: list[InvoiceUpdate] = []
            while isinstance(item, InvoiceUpdate):
                batch.append(item)
                self.status.head = max(self.status.head, item.cursor)
                if len(batch) >= BATCH_MAX:
                    item = None
                    break
                try:
                    item = pending.get_nowait()
                except queue.Empty:
                    item = None
            if batch:
                before = self.status.cursor
                self.apply(batch, epoch)
                self.status.last_error = None
                more = len(batch) >= BATCH_MAX or not pending.empty()
                line = progress.batch(
                    len(batch), before, self.status.cursor, self.status.head, more
                )
                if line:
                    log.info(line, extra={"backfill": {"cursor": self.status.cursor}})
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item

    def _run_sweeps(self) -> None:
        """Expiry every tick, new outgoing payments at the node's poll interval
        (the feed carries only incoming ones), the full sweep every `sweep_interval`."""
        next_sweep = next_outgoing = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            try:
                self.expire()
                self.refresh_head()
                self.cancel_near_deadline()
                if now >= next_sweep:
                    self.sweep()
                    self._node_answers()
                    next_sweep = now + self.sweep_interval
                    next_outgoing = now + self.node.outgoing_poll_interval
                elif now >= next_outgoing and self.status.outgoing == "ok":
                    self.sweep_outgoing()  # when denied, only the full sweep asks again
                    next_outgoing = now + self.node.outgoing_poll_interval
            except NodeError as exc:
                self.node_errors["sweep"] += 1
                self._note_error(exc)
                next_sweep = now + min(self.sweep_interval, 5.0)
            except Exception:
                log.exception("sweep failed")
                next_sweep = now + self.sweep_interval
            self._stop.wait(self.expiry_interval)
