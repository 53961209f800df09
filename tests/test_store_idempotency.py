"""Idempotency keys: remembered per token with the request's body hash."""

from __future__ import annotations

import sqlite3

import pytest

from lnplugin.store import Store, idempotency


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "lnplugin.sqlite")
    yield store
    store.close()


def test_a_remembered_key_is_found_with_its_body_hash_and_invoice(store):
    with store.transaction() as tx:
        idempotency.remember(tx, 1, "order-7", "h1", 42, 1_700_000_000)
    assert idempotency.lookup(store.conn, 1, "order-7") == ("h1", 42)
    found = idempotency.lookup(store.conn, 1, "order-7")
    assert found is not None and found.body_hash == "h1" and found.invoice_id == 42


def test_keys_belong_to_their_token(store):
    with store.transaction() as tx:
        idempotency.remember(tx, 1, "order-7", "h1", 42, 1_700_000_000)
    assert idempotency.lookup(store.conn, 2, "order-7") is None
    assert idempotency.lookup(store.conn, 1, "order-8") is None
    with store.transaction() as tx:  # another token may use the same key
        idempotency.remember(tx, 2, "order-7", "h2", 43, 1_700_000_000)
    assert idempotency.lookup(store.conn, 2, "order-7") == ("h2", 43)


def test_a_key_reused_by_the_same_token_is_refused_and_the_first_kept(store):
    with store.transaction() as tx:
        idempotency.remember(tx, 1, "order-7", "h1", 42, 1_700_000_000)
    with pytest.raises(sqlite3.IntegrityError), store.transaction() as tx:
        idempotency.remember(tx, 1, "order-7", "h2", 43, 1_700_000_001)
    assert idempotency.lookup(store.conn, 1, "order-7") == ("h1", 42)
