"""The stored invoice as a typed value.

An invoice row reaches the API, the outbox and the follower from two
sources: a `SELECT` (the store's reads) and a dict completed before a bulk
insert (`invoices.complete`); an update is `dataclasses.replace`. All of them
become a `StoredInvoice` through `from_row` alone, so a column added to the
table has one place to be named, and readers get attributes with types
instead of string keys a typo turns into a runtime KeyError.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class StoredInvoice:
    """One row of `invoices`; fields in the table's column order (tests check).

    Frozen, and built by `from_row` without the generated `__init__`: a
    frozen dataclass's `__init__` sets each of the 43 fields through
    `object.__setattr__`, ~3 us a row, which a bulk catch-up of thousands
    of settlements (one event payload each) and every list page would pay.
    Filling the instance dict in one `update` costs a fifth of that. (Not
    `slots=True`: slots have no dict to fill.)
    """

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
    settle_deadline: int | None  # block height; ACCEPTED hold invoices
    cancel_reason: str | None
    hold: int  # 1 for a hold invoice
    lightning_address: str | None  # the LUD-16 username it was minted for or attributed to
    public_id: str  # 128 random bits: the id in its public QR and checkout URLs
    price_currency: str | None  # ISO 4217 code a fiat-priced invoice was priced in
    price_amount: int | None  # in that currency's minor units
    price_rate: str | None  # Decimal text: units of price_currency per BTC
    price_rate_source: str | None  # the providers whose median it was
    price_rate_at: int | None  # when the rate was fetched (unix seconds)
    fiat_currency: str | None  # Alby's display pair, set at creation
    fiat_in_cents: int | None
    items: str | None  # line items, JSON text
    viewed_at: int | None  # when its checkout page was first opened (unix seconds)

    @classmethod
    def from_row(cls, row: Sequence[Any] | Mapping[str, Any]) -> StoredInvoice:
        """The one way to build a stored invoice.

        A dict (a row completed before a bulk insert, see
        `invoices.complete`) is read by column name. Anything else (a tuple or
        `sqlite3.Row` selected with `SELECT_COLUMNS`, or `SELECT *`) is read
        by position, which is the table's column order. Either must carry
        every column, no more: a missing one raises rather than defaulting.
        """
        if isinstance(row, dict):
            if row.keys() != _FIELD_SET:
                raise TypeError(f"not an invoice row: {sorted(row.keys() ^ _FIELD_SET)} differ")
            values: Any = row
        else:
            values = zip(FIELDS, row, strict=True)  # a column too many or few raises
        inv = _new(cls)
        inv.__dict__.update(values)
        return inv


FIELDS: tuple[str, ...] = tuple(f.name for f in fields(StoredInvoice))
_FIELD_SET = frozenset(FIELDS)
_new = object.__new__
# What the store's invoice reads select, in the order `from_row` expects.
SELECT_COLUMNS = ", ".join(FIELDS)


def invoice_factory(_cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> StoredInvoice:
    """A cursor `row_factory` that builds `StoredInvoice`s straight from the
    values tuple (no intermediate `sqlite3.Row`)."""
    return StoredInvoice.from_row(values)
