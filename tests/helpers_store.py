"""Invoice look-ups for tests that expect the row to be there.

`invoices.by_id` / `by_hash` answer None for a missing row; these fail at the
look-up instead, naming it, so a missing row is not a later AttributeError.
"""

from __future__ import annotations

import sqlite3

from lnplugin.store import invoices
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
