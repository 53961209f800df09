"""Counts read for `/metrics` at scrape time.

Counting from the store rather than from in-process counters means the
numbers survive restarts and agree with what the API returns: a scrape after
a restart shows every settlement ever stored, not those since the start.
The counts by type, kind, status and state are the `tallies` rows that
triggers keep in the same transaction as the rows they count (migration
22), so a scrape costs the same on a million invoices as on ten; the rest
are single lookups in an index. All run on one snapshot, so the families of
one scrape agree with each other.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from lnplugin.store import cursors
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


def tallies(conn: sqlite3.Connection, name: str) -> dict[str, int]:
    """One family of the trigger-kept counts; keys whose count fell to 0 are left out."""
    return {
        row[0]: int(row[1])
        for row in conn.execute("SELECT key, n FROM tallies WHERE name = ? AND n != 0", (name,))
    }


def read(conn: sqlite3.Connection) -> StoreCounts:
    events_by_type = tallies(conn, "events")
    settlements = tallies(conn, "settlements")
    deliveries = tallies(conn, "deliveries")
    oldest = conn.execute(
        "SELECT MIN(created_at) FROM webhook_deliveries WHERE status = 'pending'"
    ).fetchone()[0]
    head = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
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
    )
