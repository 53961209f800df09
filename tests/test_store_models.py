"""StoredInvoice: the one typed form of an invoice row, whichever way it was built."""

from __future__ import annotations

import dataclasses
import time

import pytest

from lnplugin.alby import invoice_json
from lnplugin.store import Store, invoices
from lnplugin.store.models import FIELDS, StoredInvoice


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "lnplugin.sqlite")
    yield store
    store.close()


FIELDS_IN = {
    "type": "incoming",
    "payment_hash": "ab" * 32,
    "payment_request": "lnbcrt1...",
    "state": "OPEN",
    "amount_msat": 5000,
    "description": "tea",
    "metadata": '{"order": 7}',
    "created_at": 1_700_000_000,
    "expiry": 3600,
    "expires_at": 1_700_003_600,
}


def test_its_fields_are_the_tables_columns_in_table_order(store):
    # from_row reads selected tuples by position, so the order must match.
    columns = [r["name"] for r in store.conn.execute("PRAGMA table_info(invoices)")]
    assert list(FIELDS) == columns
    assert list(invoices.COLUMNS) == columns


def test_a_row_read_back_equals_the_dict_it_was_completed_from(store):
    row = invoices.complete(FIELDS_IN)
    with store.transaction() as tx:
        invoices.insert_many(tx, [row])
    read = invoices.by_id(store.conn, row["id"])
    assert isinstance(read, StoredInvoice)
    assert read == StoredInvoice.from_row(row)
    # `SELECT *` rows (sqlite3.Row) read the same by position.
    star = store.conn.execute("SELECT * FROM invoices WHERE id = ?", (row["id"],)).fetchone()
    assert StoredInvoice.from_row(star) == read


def test_every_invoice_read_returns_typed_rows(store):
    with store.transaction() as tx:
        invoice_id = invoices.insert(tx, FIELDS_IN)
    now = int(time.time())
    reads = [
        invoices.by_id(store.conn, invoice_id),
        invoices.by_hash(store.conn, "ab" * 32),
        invoices.by_hash(store.conn, "ab" * 32, "incoming"),
        *invoices.list_page(store.conn, invoices.ListQuery()),
        *invoices.open_expired(store.conn, 1_800_000_000),
        *invoices.open_unexpired(store.conn, 1_600_000_000),
    ]
    assert len(reads) == 6
    assert all(isinstance(r, StoredInvoice) and r.id == invoice_id for r in reads)
    assert reads[0] is not None and invoice_json(reads[0], now)["metadata"] == {"order": 7}


def test_it_is_immutable(store):
    inv = StoredInvoice.from_row(invoices.complete({**FIELDS_IN, "id": 1}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        inv.state = "SETTLED"  # type: ignore[misc]  # frozen: the refused write is the test
    assert dataclasses.replace(inv, state="SETTLED").state == "SETTLED"
    assert inv.state == "OPEN"


def test_a_row_missing_a_column_or_with_an_unknown_one_is_refused_not_defaulted():
    incomplete = dict(FIELDS_IN)  # no id, identifier, or schema defaults
    with pytest.raises(TypeError):
        StoredInvoice.from_row(incomplete)
    with pytest.raises(TypeError):
        StoredInvoice.from_row({**invoices.complete({**FIELDS_IN, "id": 1}), "colour": "red"})


def test_a_tuple_with_a_column_too_many_or_few_is_refused():
    row = invoices.complete({**FIELDS_IN, "id": 1})
    values = tuple(row[name] for name in FIELDS)
    assert StoredInvoice.from_row(values).id == 1
    for wrong in (values[:-1], (*values, "extra")):
        with pytest.raises(ValueError):
            StoredInvoice.from_row(wrong)
