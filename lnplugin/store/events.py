"""The outbox: one row per invoice state change, written in the same
transaction as the change, so no change exists without its event or the
reverse. Webhook delivery and Server-Sent Events both read from here.

A payload is written when the change happens, from code that does not know
the public URL (the follower, the NWC worker), so its QR code and checkout
links are null in the stored text. Readers that send it (webhooks, SSE) fill
them in with `with_links` from the invoice's `public_id`, which the reads
here return as `page_id`: the payload they send is then the same invoice
object `GET /invoices/<payment_hash>` answers, links and all.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Mapping, Sequence
from typing import Any

from lnplugin import compactjson
from lnplugin.alby import invoice_json, iso, links
from lnplugin.store.models import StoredInvoice

INCOMING_CREATED = "invoice.incoming.created"
INCOMING_SETTLED = "invoice.incoming.settled"
INCOMING_ACCEPTED = "invoice.incoming.accepted"
INCOMING_EXPIRED = "invoice.incoming.expired"
INCOMING_CANCELED = "invoice.incoming.canceled"
OUTGOING_SETTLED = "invoice.outgoing.settled"
# A settled invoice gained something after the fact (an rss::payment boostagram).
INVOICE_UPDATED = "invoice.updated"
# Its hosted checkout page was opened for the first time.
INVOICE_VIEWED = "invoice.viewed"
# Not an event type: what `Store.on_commit` also reports for a commit that
# appended an event of an invoice with its own `webhook_url`, which gets
# every event of that invoice whatever the type. Never stored.
HAS_INVOICE_WEBHOOK = "(an invoice's own webhook_url)"
EVENT_TYPES = (
    INCOMING_CREATED,
    INCOMING_SETTLED,
    INCOMING_EXPIRED,
    INCOMING_CANCELED,
    OUTGOING_SETTLED,
    INCOMING_ACCEPTED,
    INVOICE_UPDATED,
    INVOICE_VIEWED,
)


def new_event_id() -> str:
    """Unique and time-ordered (see `invoices.new_identifier`): appends to the index."""
    return f"evt_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(6)}"


def append(tx: sqlite3.Connection, type_: str, invoice: StoredInvoice | Mapping[str, Any]) -> int:
    """Record that `invoice` (already updated in `tx`) reached a new state."""
    now = int(time.time())
    cur = tx.execute(_INSERT, _values(type_, invoice, now))
    return int(cur.lastrowid or 0)


def append_many(
    tx: sqlite3.Connection, changes: Sequence[tuple[str, StoredInvoice | Mapping[str, Any]]]
) -> None:
    """`append` for many (event type, invoice) pairs in one statement, in order."""
    now = int(time.time())
    tx.executemany(_INSERT, [_values(type_, row, now) for type_, row in changes])


_INSERT = (
    "INSERT INTO events (event_id, type, invoice_id, payment_hash, created_at, payload) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)


def _values(
    type_: str, invoice: StoredInvoice | Mapping[str, Any], now: int
) -> tuple[str, str, int, str, int, str]:
    # A bulk ingest hands over the dict rows it inserted (`invoices.complete`).
    inv = invoice if isinstance(invoice, StoredInvoice) else StoredInvoice.from_row(invoice)
    payload = {"type": type_, "timestamp": iso(now), "data": invoice_json(inv, now)}
    return (new_event_id(), type_, inv.id, inv.payment_hash, now, compactjson.dumps(payload))


# The `public_id` of an event's invoice when that invoice has public links
# (incoming, with a BOLT11; see `alby.public_links`), else NULL, as `page_id`,
# for `with_links`. Needs `events e LEFT JOIN invoices i ON i.id = e.invoice_id`.
PAGE_ID = (
    "CASE WHEN i.type = 'incoming' AND i.payment_request != '' THEN i.public_id END AS page_id"
)
_SELECT = f"SELECT e.*, {PAGE_ID} FROM events e LEFT JOIN invoices i ON i.id = e.invoice_id"


def after(conn: sqlite3.Connection, seq: int, limit: int = 500) -> list[sqlite3.Row]:
    """Events after `seq`, oldest first, each with its `page_id`."""
    query = f"{_SELECT} WHERE e.seq > ? ORDER BY e.seq LIMIT ?"
    return conn.execute(query, (seq, limit)).fetchall()


def of_invoice_after(conn: sqlite3.Connection, invoice_id: int, seq: int) -> list[sqlite3.Row]:
    """One invoice's events after `seq`, oldest first: what an SSE client that
    reconnects with `Last-Event-ID` missed (the stream replays them before
    going live)."""
    return conn.execute(
        f"{_SELECT} WHERE e.invoice_id = ? AND e.seq > ? ORDER BY e.seq", (invoice_id, seq)
    ).fetchall()


def with_links(text: str, page_id: str | None, public_url: str | None) -> str:
    """A stored payload as it is sent: with its invoice's `qr_code_png`,
    `qr_code_svg` and `checkout_url` built from `--public-url`, as
    `GET /invoices/<payment_hash>` has them.

    `text` unchanged when there is nothing to fill in: no public URL, or an
    invoice with no public page (`page_id` None: outgoing, keysend, a test
    event). The links are replaced in the parsed object, never by editing
    the text, which may hold anything a payer wrote.
    """
    if not public_url or not page_id:
        return text
    # json, not orjson: orjson reads an integer beyond 64 bits (a payer's
    # boostagram may hold one) as a float, which would change the number.
    payload = json.loads(text)
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, dict):
        return text
    data["qr_code_png"], data["qr_code_svg"], data["checkout_url"] = links(page_id, public_url)
    return compactjson.dumps(payload)


def last_seq(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT MAX(seq) FROM events").fetchone()
    return row[0] or 0


def by_event_id(conn: sqlite3.Connection, event_id: str) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM events WHERE event_id = ?", (event_id,)).fetchone()


def payload(row: sqlite3.Row) -> dict[str, Any]:
    return json.loads(row["payload"])
