"""Counts read for `/metrics` at scrape time.

Counting from the store rather than from in-process counters means the
numbers survive restarts and agree with what the API returns: a scrape after
a restart shows every settlement ever stored, not those since the start.

None of it groups a whole table per scrape (that was ~0.6 s of CPU a scrape
on a million invoices):

- Events, and settlements (one `invoice.incoming.settled` event each), come
  from the outbox, which is append-only: `Running` carries their counts up
  to an outbox position from one scrape to the next, so a scrape reads only
  the events since the last one. The first scrape of a process counts them
  all once.
- Webhook deliveries, rss::payment fetches and zap receipt deliveries change
  state; their counts are `tallies` rows that triggers keep in the
  transaction that writes the rows (migrations 22 and 28).
- The rest are single lookups in an index.

All run on one snapshot, so the families of one scrape agree with each other.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from dataclasses import dataclass, field

from lnplugin.store import cursors, events, zaps
from lnplugin.store import rss_payments as rss
from lnplugin.store import webhooks as hooks


@dataclass(frozen=True)
class StoreCounts:
    events_by_type: dict[str, int] = field(default_factory=dict)
    settlements_by_kind: dict[str, int] = field(default_factory=dict)  # invoice | keysend
    deliveries_by_status: dict[str, int] = field(default_factory=dict)
    oldest_pending_delivery_at: float | None = None
    outbox_head: int = 0
    outbox_fanned_out: int = 0  # outbox seq the webhook fan-out has reached
    oldest_unfanned_event_at: int | None = None
    rss_payments_by_state: dict[str, int] = field(default_factory=dict)
    outbox_rss_payment: int = 0  # outbox seq the rss::payment worker has read
    zap_receipts_by_state: dict[str, int] = field(default_factory=dict)
    outbox_zaps: int = 0  # outbox seq the zap worker has read


def tallies(conn: sqlite3.Connection, name: str) -> dict[str, int]:
    """One family of the trigger-kept counts; keys whose count fell to 0 are left out."""
    return {
        row[0]: int(row[1])
        for row in conn.execute("SELECT key, n FROM tallies WHERE name = ? AND n != 0", (name,))
    }


class Running:
    """Event and settlement counts up to outbox position `seq`, kept by one
    process from scrape to scrape (the app's collector holds one)."""

    def __init__(self) -> None:
        self.seq = 0
        self.events: Counter[str] = Counter()
        self.settlements: Counter[str] = Counter()
        self._lock = threading.Lock()  # two scrapers at once add each event once

    def catch_up(
        self, conn: sqlite3.Connection, head: int
    ) -> tuple[dict[str, int], dict[str, int]]:
        """Add the events after `seq` up to `head`; the counts by type and by kind."""
        with self._lock:
            if head > self.seq:
                span = (self.seq, head)
                for type_, n in conn.execute(
                    "SELECT type, COUNT(*) FROM events WHERE seq > ? AND seq <= ? GROUP BY type",
                    span,
                ):
                    self.events[type_] += n
                for kind, n in conn.execute(
                    "SELECT CASE WHEN COALESCE(i.is_keysend, 0) != 0 THEN 'keysend'"
                    " ELSE 'invoice' END, COUNT(*) FROM events e JOIN invoices i"
                    " ON i.id = e.invoice_id WHERE e.seq > ? AND e.seq <= ? AND e.type = ?"
                    " GROUP BY 1",
                    (*span, events.INCOMING_SETTLED),
                ):
                    self.settlements[kind] += n
                self.seq = head
            return dict(self.events), dict(self.settlements)


def read(conn: sqlite3.Connection, running: Running | None = None) -> StoreCounts:
    """The counts on `conn`'s snapshot; `running` carries the outbox counts
    between calls (without one, they are counted from the start)."""
    head = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
    events_by_type, settlements = (running or Running()).catch_up(conn, int(head))
    deliveries = tallies(conn, "deliveries")
    oldest = conn.execute(
        "SELECT MIN(created_at) FROM webhook_deliveries WHERE status = 'pending'"
    ).fetchone()[0]
    fanned = cursors.get(conn, hooks.CURSOR)
    unfanned = conn.execute(
        "SELECT created_at FROM events WHERE seq > ? ORDER BY seq LIMIT 1", (fanned,)
    ).fetchone()
    rss_states = tallies(conn, "rss_payments")
    return StoreCounts(
        events_by_type=events_by_type,
        settlements_by_kind=settlements,
        deliveries_by_status=deliveries,
        oldest_pending_delivery_at=oldest,
        outbox_head=int(head),
        outbox_fanned_out=fanned,
        oldest_unfanned_event_at=unfanned[0] if unfanned else None,
        rss_payments_by_state=rss_states,
        outbox_rss_payment=cursors.get(conn, rss.CURSOR),
        zap_receipts_by_state=tallies(conn, "zap_receipts"),
        outbox_zaps=cursors.get(conn, zaps.CURSOR),
    )
