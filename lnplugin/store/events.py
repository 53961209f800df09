"""The outbox: one row per invoice state change, written in the same
transaction as the change, so no change exists without its event or the
reverse. Webhook delivery and Server-Sent Events both read from here.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from typing import Any

from lnplugin.alby import invoice_json, iso

INCOMING_CREATED = "invoice.incoming.created"
INCOMING_SETTLED = "invoice.incoming.settled"
INCOMING_EXPIRED = "invoice.incoming.expired"
INCOMING_CANCELED = "invoice.incoming.canceled"
OUTGOING_SETTLED = "invoice.outgoing.settled"
EVENT_TYPES = (
    INCOMING_CREATED,
    INCOMING_SETTLED,
    INCOMING_EXPIRED,
    INCOMING_CANCELED,
    OUTGOING_SETTLED,
)


def append(tx: sqlite3.Connection, type_: str, invoice: sqlite3.Row) -> int:
    """Record that `invoice` (already updated in `tx`) reached a new state."""
    now = int(time.time())
    event_id = "evt_" + secrets.token_hex(12)
    payload = {"type": type_, "timestamp": iso(now), "data": invoice_json(invoice, now)}
    cur = tx.execute(
        "INSERT INTO events (event_id, type, invoice_id, payment_hash, created_at, payload) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (
            event_id,
            type_,
            invoice["id"],
            invoice["payment_hash"],
            now,
            json.dumps(payload, separators=(",", ":")),
        ),
    )
    return int(cur.lastrowid or 0)


def after(conn: sqlite3.Connection, seq: int, limit: int = 500) -> list[sqlite3.Row]:
    return conn.execute(
        "SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
    ).fetchall()


def last_seq(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT MAX(seq) FROM events").fetchone()
    return row[0] or 0


def by_event_id(conn: sqlite3.Connection, event_id: str) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM events WHERE event_id = ?", (event_id,)).fetchone()


def payload(row: sqlite3.Row) -> dict[str, Any]:
    return json.loads(row["payload"])
