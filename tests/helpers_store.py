"""Invoice look-ups for tests that expect the row to be there.

`invoices.by_id` / `by_hash` answer None for a missing row; these fail at the
look-up instead, naming it, so a missing row is not a later AttributeError.
"""

from __future__ import annotations

import sqlite3
import time

from lnplugin.store import Store, invoices
from lnplugin.store.models import StoredInvoice


def invoice_by_id(conn: sqlite3.Connection, invoice_id: int) -> StoredInvoice:
    row = invoices.by_id(conn, invoice_id)
    assert row is not None, f"no invoice with id {invoice_id}"
    return row


def invoice_by_hash(
    conn: sqlite3.Connection, payment_hash: str, type_: str | None = None
) -> StoredInvoice:
    row = invoices.by_hash(conn, payment_hash, type_)
    assert row is not None, f"no invoice with payment hash {payment_hash}"
    return row


def open_invoice(store: Store, payment_hash: str = "ab" * 32, expires_in: int = 3600) -> int:
    """An OPEN incoming invoice written straight into the store; its id."""
    now = int(time.time())
    with store.transaction() as tx:
        return invoices.insert(
            tx,
            {
                "type": "incoming",
                "payment_hash": payment_hash,
                "payment_request": "lnbcrt1...",
                "state": "OPEN",
                "amount_msat": 5000,
                "created_at": now - 10,
                "expiry": expires_in + 10,
                "expires_at": now + expires_in,
            },
        )
