"""NIP-57 zaps: the zapper key, the zap request beside each zapped invoice,
and the deliveries of its receipt.

The callback stores the zap request in the transaction that stores its
invoice. The zap worker (`lnplugin.zapper`) reads settlements from the
outbox past its own cursor and, in the same transaction as the cursor
advance, stores the invoice's one receipt and a delivery row per relay, so
a restart neither loses nor rebuilds one; a delivery is retried until a
relay took it or its retries ran out.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Iterable, Sequence

from lnplugin.store import cursors, events

CURSOR = "zaps"
PENDING, SENT, REFUSED, FAILED = "pending", "sent", "refused", "failed"
STATES = (PENDING, SENT, REFUSED, FAILED)


def zapper_secret(tx: sqlite3.Connection) -> str:
    """The zapper key's secret (hex), made on first use."""
    row = tx.execute("SELECT secret_hex FROM zapper_key WHERE id = 1").fetchone()
    if row is not None:
        return str(row[0])
    secret = secrets.token_hex(32)
    tx.execute(
        "INSERT INTO zapper_key (id, secret_hex, created_at) VALUES (1, ?, ?)",
        (secret, int(time.time())),
    )
    return secret


def record_request(
    tx: sqlite3.Connection, invoice_id: int, request: str, relays: Sequence[str]
) -> None:
    tx.execute(
        "INSERT INTO zap_requests (invoice_id, request, relays, created_at) VALUES (?, ?, ?, ?)",
        (invoice_id, request, json.dumps(list(relays)), int(time.time())),
    )


def without_receipt(tx: sqlite3.Connection, invoice_ids: Sequence[int]) -> list[sqlite3.Row]:
    """The zap requests of these invoices that have no receipt yet."""
    if not invoice_ids:
        return []
    marks = ", ".join("?" * len(invoice_ids))
    return tx.execute(
        f"SELECT * FROM zap_requests WHERE receipt IS NULL AND invoice_id IN ({marks})",
        list(invoice_ids),
    ).fetchall()


def set_receipt(
    tx: sqlite3.Connection, invoice_id: int, receipt: str, relays: Sequence[str]
) -> bool:
    """Store the invoice's receipt and a pending delivery to each of its
    request's `relays`; False (and nothing changed) when it has one already."""
    cur = tx.execute(
        "UPDATE zap_requests SET receipt = ? WHERE invoice_id = ? AND receipt IS NULL",
        (receipt, invoice_id),
    )
    if cur.rowcount == 0:
        return False
    now = int(time.time())
    tx.executemany(
        "INSERT OR IGNORE INTO zap_receipts (invoice_id, relay, state, attempts,"
        " next_attempt_at, created_at, updated_at) VALUES (?, ?, 'pending', 0, ?, ?, ?)",
        [(invoice_id, relay, now, now, now) for relay in relays],
    )
    return True


def _not_in(skip: list[int]) -> str:
    return f" AND d.id NOT IN ({', '.join('?' * len(skip))})" if skip else ""


def due(
    conn: sqlite3.Connection, now: float, limit: int, exclude: Iterable[int] = ()
) -> list[sqlite3.Row]:
    """Pending deliveries whose time has come, with their receipt, minus `exclude`."""
    skip = list(exclude)
    return conn.execute(
        "SELECT d.*, z.receipt FROM zap_receipts d JOIN zap_requests z"
        " ON z.invoice_id = d.invoice_id WHERE d.state = 'pending' AND d.next_attempt_at <= ?"
        f"{_not_in(skip)} ORDER BY d.next_attempt_at LIMIT ?",
        (now, *skip, limit),
    ).fetchall()


def next_due_at(conn: sqlite3.Connection, exclude: Iterable[int] = ()) -> float | None:
    skip = list(exclude)
    row = conn.execute(
        "SELECT MIN(d.next_attempt_at) FROM zap_receipts d WHERE d.state = 'pending'"
        + _not_in(skip),
        skip,
    ).fetchone()
    return None if row[0] is None else float(row[0])


def record_attempt(
    tx: sqlite3.Connection,
    delivery_id: int,
    *,
    state: str,
    error: str | None = None,
    next_at: float | None = None,
) -> None:
    """One attempt's outcome: `state` SENT, REFUSED or FAILED, or PENDING
    again at `next_at`."""
    tx.execute(
        "UPDATE zap_receipts SET attempts = attempts + 1, state = ?, last_error = ?,"
        " next_attempt_at = ?, updated_at = ? WHERE id = ?",
        (
            state,
            None if error is None else error[:300],
            None if next_at is None else int(next_at),
            int(time.time()),
            delivery_id,
        ),
    )


def by_state(conn: sqlite3.Connection) -> dict[str, int]:
    """Deliveries (one per receipt and relay) by state, every state present:
    the trigger-kept tallies (migration 28), not a count of the table."""
    counted = dict(
        conn.execute("SELECT key, n FROM tallies WHERE name = 'zap_receipts'").fetchall()
    )
    return {state: int(counted.get(state, 0)) for state in STATES}


def not_built(conn: sqlite3.Connection) -> int:
    """Zapped invoices settled past the worker's cursor: receipts it has yet
    to build (and deliver). At most the outbox events it has not read."""
    row = conn.execute(
        "SELECT COUNT(*) FROM events e JOIN zap_requests z ON z.invoice_id = e.invoice_id"
        " WHERE e.seq > ? AND e.type = ? AND z.receipt IS NULL",
        (cursors.get(conn, CURSOR), events.INCOMING_SETTLED),
    ).fetchone()
    return int(row[0])
