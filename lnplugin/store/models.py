"""The stored invoice as a typed value.

An invoice row reaches the API, the outbox and the follower from three
sources: a `SELECT` (the store's reads), a dict completed before a bulk
insert (`invoices.complete`), and a row merged with its update. All of them
become a `StoredInvoice` through `from_row` alone, so a column added to the
table has one place to be named, and readers get attributes with types
instead of string keys a typo turns into a runtime KeyError.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True, slots=True)
class StoredInvoice:
    """One row of `invoices`; fields in the table's column order (tests check)."""

    id: int
    identifier: str
    type: str
    payment_hash: str
    payment_request: str
    state: str
    amount_msat: int | None
    amount_received_msat: int
    fee_msat: int
    description: str | None
    description_hash: str | None
    comment: str | None
    metadata: str | None  # JSON text, as stored
    payer_name: str | None
    payer_email: str | None
    payer_pubkey: str | None
    created_at: int
    expiry: int
    expires_at: int
    settled_at: int | None
    preimage: str | None
    payment_secret: str | None
    destination: str | None
    is_keysend: int
    custom_records: str | None  # Alby's wire form as JSON text
    boostagram: str | None  # JSON text
    keysend_message: str | None
    webhook_url: str | None
    list_seq: int | None
    source: str

    @classmethod
    def from_row(cls, row: Sequence[Any] | Mapping[str, Any]) -> StoredInvoice:
        """The one way to build a stored invoice.

        A dict (a row completed before insert, or a row merged with its
        update) is read by column name. Anything else (a tuple or
        `sqlite3.Row` selected with `SELECT_COLUMNS`, or `SELECT *`) is read
        by position, which is the table's column order: positional
        construction is what keeps a 100-row list page as cheap as reading
        `sqlite3.Row`s was.
        """
        if isinstance(row, dict):
            return cls(**row)
        return cls(*row)


FIELDS: tuple[str, ...] = tuple(f.name for f in fields(StoredInvoice))
# What the store's invoice reads select, in the order `from_row` expects.
SELECT_COLUMNS = ", ".join(FIELDS)


def invoice_factory(_cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> StoredInvoice:
    """A cursor `row_factory` that builds `StoredInvoice`s straight from the
    values tuple (no intermediate `sqlite3.Row`)."""
    return StoredInvoice.from_row(values)
