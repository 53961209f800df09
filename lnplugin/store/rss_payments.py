"""rss::payment fetches: which settled payments point at a boost record, and
how fetching it went.

The worker (`lnplugin.rss_payment`) reads the outbox past its own cursor and
schedules a row here in the same transaction as the cursor advance, so a
settlement is looked at exactly once and a scheduled fetch survives a
restart. Filling the boostagram, the row's outcome and the `invoice.updated`
event are likewise one transaction.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from typing import Any

from lnplugin.store import events, invoices

CURSOR = "rss_payment"
PENDING, FETCHED, REFUSED, FAILED = "pending", "fetched", "refused", "failed"


def schedule(
    tx: sqlite3.Connection,
    invoice_id: int,
    url: str,
    action: str,
    *,
    state: str = PENDING,
    error: str | None = None,
) -> None:
    """Record a fetch to make (or, with `state=REFUSED`, one that will not be
    made, and why); a replayed event finds the row there and changes nothing."""
    now = int(time.time())
    tx.execute(
        "INSERT OR IGNORE INTO rss_payments (invoice_id, url, action, state, attempts, "
        "next_attempt_at, last_error, created_at, updated_at) VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?)",
        (invoice_id, url, action, state, now if state == PENDING else None, error, now, now),
    )


def _not_in(skip: list[int]) -> str:
    """The clause leaving out the invoice ids in `skip` (one `?` each), or nothing."""
    return f" AND invoice_id NOT IN ({', '.join('?' * len(skip))})" if skip else ""


def due(
    conn: sqlite3.Connection, now: float, limit: int = 20, exclude: Iterable[int] = ()
) -> list[sqlite3.Row]:
    """Pending fetches whose time has come, earliest first, minus `exclude` (in flight)."""
    skip = list(exclude)
    not_in = _not_in(skip)
    return conn.execute(
        "SELECT * FROM rss_payments WHERE state = 'pending' AND next_attempt_at <= ?"
        f"{not_in} ORDER BY next_attempt_at LIMIT ?",
        (now, *skip, limit),
    ).fetchall()


def next_due_at(conn: sqlite3.Connection, exclude: Iterable[int] = ()) -> float | None:
    """When the earliest pending fetch not in `exclude` (in flight) is due."""
    skip = list(exclude)
    not_in = _not_in(skip)
    row = conn.execute(
        "SELECT MIN(next_attempt_at) FROM rss_payments WHERE state = 'pending'" + not_in, skip
    ).fetchone()
    return None if row[0] is None else float(row[0])


def by_invoice(conn: sqlite3.Connection, invoice_id: int) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM rss_payments WHERE invoice_id = ?", (invoice_id,)).fetchone()


def record_failure(
    tx: sqlite3.Connection,
    invoice_id: int,
    error: str,
    next_at: float | None,
    *,
    final: str,
    header: str | None = None,
) -> None:
    """One more failed attempt: pending again at `next_at`, or `final` (failed
    or refused) when there is none. `header`: one that came but was unusable."""
    tx.execute(
        "UPDATE rss_payments SET attempts = attempts + 1, last_error = ?, state = ?, "
        "next_attempt_at = ?, header = ?, updated_at = ? WHERE invoice_id = ?",
        (
            error[:300],
            PENDING if next_at is not None else final,
            None if next_at is None else int(next_at),
            header,
            int(time.time()),
            invoice_id,
        ),
    )


def fill(tx: sqlite3.Connection, invoice_id: int, header: str, boostagram: dict[str, Any]) -> bool:
    """Keep the raw header; give the invoice the boostagram and append
    `invoice.updated`. A boostagram the payment already carried (TLV 7629169)
    is kept. Returns whether the invoice changed."""
    tx.execute(
        "UPDATE rss_payments SET attempts = attempts + 1, state = ?, header = ?, "
        "last_error = NULL, next_attempt_at = NULL, updated_at = ? WHERE invoice_id = ?",
        (FETCHED, header, int(time.time()), invoice_id),
    )
    invoice = invoices.by_id(tx, invoice_id)
    if invoice is None or invoice.boostagram is not None:
        return False
    invoices.update(tx, invoice_id, {"boostagram": json.dumps(boostagram)})
    updated = invoices.by_id(tx, invoice_id)
    if updated is not None:
        events.append(tx, events.INVOICE_UPDATED, updated)
    return True


def not_fetched(conn: sqlite3.Connection, *, failed: bool) -> list[sqlite3.Row]:
    """Fetches that will not be made as things stand: refused without a
    request (the domain was not listed when the payment settled), and with
    `failed`, those that failed (at once, or after their retries)."""
    clause = "(state = 'refused' AND attempts = 0)"
    if failed:
        clause += " OR state = 'failed'"
    return conn.execute(
        f"SELECT invoice_id, url, state FROM rss_payments WHERE {clause} ORDER BY invoice_id"
    ).fetchall()


def requeue(tx: sqlite3.Connection, invoice_ids: Iterable[int]) -> int:
    """Make these fetches pending and due now, with a fresh retry schedule;
    a running worker picks them up within a second. Returns how many."""
    now = int(time.time())
    count = 0
    for invoice_id in invoice_ids:
        cur = tx.execute(
            "UPDATE rss_payments SET state = 'pending', attempts = 0, next_attempt_at = ?, "
            "last_error = NULL, updated_at = ? WHERE invoice_id = ? AND state != 'pending'",
            (now, now, invoice_id),
        )
        count += cur.rowcount
    return count
