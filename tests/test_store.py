"""The SQLite store: schema versions, WAL, durability, and settlements applied atomically
with the follower cursor and the outbox event."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import asdict

import pytest

from lnplugin.follower import EXPIRE_BATCH, apply_in, expire_due
from lnplugin.nodes.base import InvoiceUpdate, NodeInvoice
from lnplugin.store import (
    Store,
    StoreError,
    cursors,
    events,
    invoices,
    migrations,
    tokens,
    webhooks,
)
from lnplugin.store.migrations import MIGRATIONS
from tests.helpers_store import invoice_by_hash, invoice_by_id, open_invoice

LATEST = max(MIGRATIONS)
HASH = "ab" * 32


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "lnplugin.sqlite")
    yield store
    store.close()


def settled(payment_hash: str = HASH, **kw) -> NodeInvoice:
    now = int(time.time())
    fields = {
        "payment_hash": payment_hash,
        "payment_request": "lnbcrt1...",
        "state": "SETTLED",
        "amount_msat": 5000,
        "created_at": now - 10,
        "expiry": 3600,
        "amount_received_msat": 5000,
        "settled_at": now,
        "preimage": "11" * 32,
        **kw,
    }
    return NodeInvoice(**fields)


def count(conn: sqlite3.Connection, table: str, where: str = "1") -> int:
    return conn.execute(f"SELECT COUNT(*) FROM {table} WHERE {where}").fetchone()[0]


# -- schema and connection ----------------------------------------------------------------------


def test_schema_version_is_recorded_for_every_migration(store):
    rows = store.conn.execute("SELECT version, name, applied_at FROM schema_version").fetchall()
    assert [r["version"] for r in rows] == sorted(MIGRATIONS)
    assert rows[-1]["version"] == LATEST
    assert all(r["name"] and r["applied_at"] > 0 for r in rows)


def test_reopening_applies_no_migration_twice(tmp_path):
    path = tmp_path / "db.sqlite"
    Store(path).close()
    first = sqlite3.connect(path).execute("SELECT * FROM schema_version").fetchall()
    Store(path).close()
    Store(path).close()
    assert sqlite3.connect(path).execute("SELECT * FROM schema_version").fetchall() == first


def test_a_database_from_a_newer_lnplugin_is_refused(tmp_path):
    path = tmp_path / "db.sqlite"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_version VALUES (?, 'from the future', 0)", (LATEST + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer than this lnplugin's") as refused:
        Store(path)
    assert "restore the backup taken before the upgrade" in str(refused.value)


def test_wal_mode_and_busy_timeout_are_on(store):
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000


def test_data_survives_reopening(tmp_path):
    path = tmp_path / "db.sqlite"
    store = Store(path)
    open_invoice(store)
    with store.transaction() as tx:
        cursors.advance(tx, cursors.INCOMING, 7)
    store.close()
    again = Store(path)
    assert invoice_by_hash(again.conn, HASH).amount_msat == 5000
    assert cursors.get(again.conn, cursors.INCOMING) == 7
    again.close()


def test_a_failed_transaction_writes_nothing(store):
    with pytest.raises(RuntimeError), store.transaction() as tx:
        invoices.insert(
            tx,
            {
                "type": "incoming",
                "payment_hash": HASH,
                "state": "OPEN",
                "created_at": 1,
                "expiry": 1,
                "expires_at": 2,
            },
        )
        raise RuntimeError("boom")
    assert count(store.conn, "invoices") == 0


def test_invoices_are_unique_per_type_and_payment_hash(store):
    open_invoice(store)
    with pytest.raises(sqlite3.IntegrityError):
        open_invoice(store)


def test_a_row_completed_for_a_bulk_insert_is_the_row_sqlite_stores(store):
    # `invoices.COLUMNS` mirrors the schema: every column, with SQLite's default.
    columns = [r["name"] for r in store.conn.execute("PRAGMA table_info(invoices)")]
    assert list(invoices.COLUMNS) == columns
    row = invoices.complete(
        {
            "type": "incoming",
            "payment_hash": HASH,
            "state": "SETTLED",
            "created_at": 1,
            "expiry": 1,
            "expires_at": 2,
            "list_seq": 1,
        }
    )
    with store.transaction() as tx:
        invoices.insert_many(tx, [row])
    assert row["id"] == 1
    assert asdict(invoice_by_id(store.conn, 1)) == row


def test_bulk_inserted_rows_continue_the_dense_ids(store):
    first = open_invoice(store, "01" * 32)
    batch = [
        invoices.complete(
            {
                "type": "incoming",
                "payment_hash": f"{n:064x}",
                "state": "SETTLED",
                "created_at": 1,
                "expiry": 1,
                "expires_at": 2,
            }
        )
        for n in range(2, 5)
    ]
    with store.transaction() as tx:
        invoices.insert_many(tx, batch)
    assert [r["id"] for r in batch] == [first + 1, first + 2, first + 3]
    assert open_invoice(store, "05" * 32) == first + 4


def test_identifiers_and_event_ids_are_unique_and_sort_by_creation_time():
    # Time-ordered ids append to their unique index instead of touching a random page.
    idents = []
    for _ in range(3):
        idents += [invoices.new_identifier() for _ in range(200)]
        time.sleep(0.002)
    assert len(set(idents)) == len(idents)
    assert all(len(i) == 24 for i in idents)
    first_of_each_ms = [i for n, i in enumerate(idents) if n % 200 == 0]
    assert first_of_each_ms == sorted(first_of_each_ms)
    assert idents[0][:12] < idents[-1][:12]
    event_a = events.new_event_id()
    time.sleep(0.002)
    event_b = events.new_event_id()
    assert event_a.startswith("evt_") and len(event_a) == 28 and event_a < event_b


def test_a_lookup_by_hash_alone_uses_the_type_and_hash_index(store):
    # Migration 4 dropped the payment_hash-only index; this lookup must not scan.
    names = {r["name"] for r in store.conn.execute("PRAGMA index_list(invoices)")}
    assert "idx_invoices_payment_hash" not in names
    open_invoice(store)
    with store.transaction() as tx:
        invoices.insert(
            tx,
            {
                "type": "outgoing",
                "payment_hash": HASH,
                "state": "SETTLED",
                "created_at": 1,
                "expiry": 0,
                "expires_at": 1,
            },
        )
    assert invoice_by_hash(store.conn, HASH).type == "incoming"
    assert invoice_by_hash(store.conn, HASH, "outgoing").type == "outgoing"
    plan = " ".join(
        str(r[3])
        for r in store.conn.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM invoices WHERE type IN ('incoming', 'outgoing') "
            "AND payment_hash = ? ORDER BY type = 'incoming' DESC LIMIT 1",
            (HASH,),
        )
    )
    assert "USING INDEX idx_invoices_type_payment_hash" in plan


def database_at(path, version: int, monkeypatch) -> None:
    """Create a database as an lnplugin whose newest migration was `version` would."""
    with monkeypatch.context() as m:
        m.setattr(migrations, "MIGRATIONS", {n: MIGRATIONS[n] for n in MIGRATIONS if n <= version})
        Store(path).close()


def test_an_existing_database_loses_the_redundant_index_on_upgrade(tmp_path, monkeypatch):
    path = tmp_path / "db.sqlite"
    database_at(path, 3, monkeypatch)
    conn = sqlite3.connect(path)
    assert "idx_invoices_payment_hash" in {
        r[1] for r in conn.execute("PRAGMA index_list(invoices)")
    }
    conn.close()
    store = Store(path)
    names = {r["name"] for r in store.conn.execute("PRAGMA index_list(invoices)")}
    assert "idx_invoices_payment_hash" not in names
    assert "idx_invoices_type_payment_hash" in names
    store.close()


def test_existing_webhook_deliveries_start_at_generation_zero_on_upgrade(tmp_path, monkeypatch):
    path = tmp_path / "db.sqlite"
    database_at(path, 4, monkeypatch)
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO webhook_deliveries (url, event_id, event_type, created_at)"
        " VALUES ('https://shop.example/hook', 'evt_old', 'webhook.test', 0)"
    )
    conn.commit()
    conn.close()
    store = Store(path)
    row = store.conn.execute("SELECT * FROM webhook_deliveries").fetchone()
    assert row["event_id"] == "evt_old" and row["generation"] == 0
    store.close()


def test_invoices_canceled_before_the_fix_have_received_0_on_upgrade(tmp_path, monkeypatch):
    """Versions before migration 18 stored a hold invoice canceled with its
    HTLCs held with their sum received; the API and exports then showed it paid."""
    path = tmp_path / "db.sqlite"
    database_at(path, 17, monkeypatch)
    conn = sqlite3.connect(path)  # rows as those versions wrote them
    for n, (state, received) in enumerate(
        [("CANCELED", 2_100_000), ("SETTLED", 5_000), ("ACCEPTED", 7_000)]
    ):
        conn.execute(
            "INSERT INTO invoices (identifier, type, payment_hash, state, amount_msat,"
            " amount_received_msat, created_at, expiry, expires_at, hold)"
            " VALUES (?, 'incoming', ?, ?, 7000, ?, 0, 3600, 3600, 1)",
            (f"id{n}", f"{n:064x}", state, received),
        )
    conn.commit()
    conn.close()
    store = Store(path)
    got = {
        r["state"]: r["amount_received_msat"]
        for r in store.conn.execute("SELECT state, amount_received_msat FROM invoices")
    }
    assert got == {"CANCELED": 0, "SETTLED": 5_000, "ACCEPTED": 7_000}
    store.close()


def test_a_0_1_0_store_keeps_its_invoices_tokens_outbox_and_deliveries_on_upgrade(
    tmp_path, monkeypatch
):
    """0.1.0 (schema 5) as an operator left it: a settled boost with its
    payer data, a live and a revoked token, one event delivered and one still
    pending to an endpoint. Upgraded, every answer is the same, the pending
    delivery is still due, and nothing is fanned out or fetched again (no
    webhook, SSE id or rss::payment fetch repeats)."""
    path = tmp_path / "db.sqlite"
    database_at(path, 5, monkeypatch)
    conn = sqlite3.connect(path)  # rows as 0.1.0 wrote them
    conn.executescript(
        f"""
        INSERT INTO tokens (id, label, token_hash, scopes, created_at, revoked_at) VALUES
          (1, 'shop', '{tokens.hash_token("lnp_shop")}', 'invoices:create invoices:read', 10, NULL),
          (2, 'old', '{tokens.hash_token("lnp_gone")}', 'admin', 10, 20);
        INSERT INTO invoices (id, identifier, type, payment_hash, payment_request, state,
          amount_msat, amount_received_msat, description, comment, metadata, payer_name,
          created_at, expiry, expires_at, settled_at, preimage, is_keysend, custom_records,
          boostagram, keysend_message, list_seq)
          VALUES (1, '01a0shop', 'incoming', '{HASH}', 'lnbcrt1...', 'SETTLED', 21000, 21007,
          'coffee', 'thanks', '{{"order":7}}', 'Ann', 100, 3600, 3700, 160, '{"11" * 32}', 0,
          '{{"7629169":"e30="}}', '{{"podcast":"My Pod"}}', 'hi', 1);
        INSERT INTO events (seq, event_id, type, invoice_id, payment_hash, created_at, payload)
          VALUES (1, 'evt_1', 'invoice.incoming.created', 1, '{HASH}', 100, '{{"n":1}}'),
                 (2, 'evt_2', 'invoice.incoming.settled', 1, '{HASH}', 160, '{{"n":2}}');
        INSERT INTO cursors (name, value, updated_at) VALUES ('webhooks', 2, 160),
          ('incoming', 1, 160);
        INSERT INTO webhook_endpoints (id, url, filter_types, secret, created_at, after_seq)
          VALUES ('ep_1', 'https://shop.example/hook',
          '["invoice.incoming.created","invoice.incoming.settled"]', 'whsec_x', 50, 0);
        INSERT INTO webhook_deliveries (endpoint_id, url, event_seq, event_id, event_type,
          status, attempts, retry_index, next_attempt_at, delivered_at, created_at, generation)
          VALUES ('ep_1', 'https://shop.example/hook', 1, 'evt_1', 'invoice.incoming.created',
                  'delivered', 1, 0, NULL, 101.0, 100.0, 0),
                 ('ep_1', 'https://shop.example/hook', 2, 'evt_2', 'invoice.incoming.settled',
                  'pending', 3, 2, 170.0, NULL, 160.0, 0);
        """
    )
    conn.commit()
    tables = ("invoices", "events", "webhook_deliveries", "webhook_endpoints")
    before = {t: [tuple(r) for r in conn.execute(f"SELECT * FROM {t} ORDER BY 1")] for t in tables}
    conn.close()
    store = Store(path)
    try:
        shop = tokens.verify(store.conn, "lnp_shop")
        assert shop and shop.id == 1 and shop.scopes == {"invoices:create", "invoices:read"}
        assert tokens.verify(store.conn, "lnp_gone") is None
        got = invoice_by_hash(store.conn, HASH)
        assert (got.state, got.amount_received_msat, got.settled_at, got.preimage) == (
            "SETTLED",
            21007,
            160,
            "11" * 32,
        )
        for table in tables:  # 0.1.0's columns hold what they held, in order
            width = len(before[table][0])
            rows = store.conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
            assert [tuple(r)[:width] for r in rows] == before[table], table
        assert [cursors.get(store.conn, c) for c in ("webhooks", "incoming", "rss_payment")] == [
            2,
            1,
            2,
        ]
        with store.transaction() as tx:
            assert webhooks.fan_out(tx) == 0  # nothing fanned out twice
        due = webhooks.due(store.conn, 170.0, (), 10)
        assert [r["event_id"] for r in due] == ["evt_2"]
        assert count(store.conn, "webhook_deliveries") == 2
        assert events.last_seq(store.conn) == 2  # SSE ids go on from 2
    finally:
        store.close()


# Migration 22 as lnplugin built it from 2026-12-07 01:05 to 01:38 (db23a29): it
# also counted events and settlements by triggers on the settlement path, which
# the next version counts over the outbox instead (without editing 22's name).
EARLY_22_TRIGGERS = (
    "CREATE TRIGGER tally_events_insert AFTER INSERT ON events WHEN 1 BEGIN INSERT INTO"
    " tallies (name, key, n) VALUES ('events', NEW.type, 1) ON CONFLICT(name, key) DO UPDATE"
    " SET n = n + (1); END",
    "CREATE TRIGGER tally_events_delete AFTER DELETE ON events WHEN 1 BEGIN INSERT INTO"
    " tallies (name, key, n) VALUES ('events', OLD.type, -1) ON CONFLICT(name, key) DO UPDATE"
    " SET n = n + (-1); END",
    "CREATE TRIGGER tally_events_update_out AFTER UPDATE OF type ON events WHEN 1 BEGIN INSERT"
    " INTO tallies (name, key, n) VALUES ('events', OLD.type, -1) ON CONFLICT(name, key) DO"
    " UPDATE SET n = n + (-1); END",
    "CREATE TRIGGER tally_events_update_in AFTER UPDATE OF type ON events WHEN 1 BEGIN INSERT"
    " INTO tallies (name, key, n) VALUES ('events', NEW.type, 1) ON CONFLICT(name, key) DO"
    " UPDATE SET n = n + (1); END",
    "CREATE TRIGGER tally_invoices_insert AFTER INSERT ON invoices WHEN NEW.type = 'incoming'"
    " AND NEW.state = 'SETTLED' BEGIN INSERT INTO tallies (name, key, n) VALUES ('settlements',"
    " CASE WHEN COALESCE(NEW.is_keysend, 0) != 0 THEN 'keysend' ELSE 'invoice' END, 1) ON"
    " CONFLICT(name, key) DO UPDATE SET n = n + (1); END",
    "CREATE TRIGGER tally_invoices_delete AFTER DELETE ON invoices WHEN OLD.type = 'incoming'"
    " AND OLD.state = 'SETTLED' BEGIN INSERT INTO tallies (name, key, n) VALUES ('settlements',"
    " CASE WHEN COALESCE(OLD.is_keysend, 0) != 0 THEN 'keysend' ELSE 'invoice' END, -1) ON"
    " CONFLICT(name, key) DO UPDATE SET n = n + (-1); END",
    "CREATE TRIGGER tally_invoices_update_out AFTER UPDATE OF type, state, is_keysend ON"
    " invoices WHEN OLD.type = 'incoming' AND OLD.state = 'SETTLED' BEGIN INSERT INTO tallies"
    " (name, key, n) VALUES ('settlements', CASE WHEN COALESCE(OLD.is_keysend, 0) != 0 THEN"
    " 'keysend' ELSE 'invoice' END, -1) ON CONFLICT(name, key) DO UPDATE SET n = n + (-1); END",
    "CREATE TRIGGER tally_invoices_update_in AFTER UPDATE OF type, state, is_keysend ON"
    " invoices WHEN NEW.type = 'incoming' AND NEW.state = 'SETTLED' BEGIN INSERT INTO tallies"
    " (name, key, n) VALUES ('settlements', CASE WHEN COALESCE(NEW.is_keysend, 0) != 0 THEN"
    " 'keysend' ELSE 'invoice' END, 1) ON CONFLICT(name, key) DO UPDATE SET n = n + (1); END",
)


def schema_of(conn: sqlite3.Connection) -> set[tuple[str, str]]:
    return {
        (row[0], row[1])
        for row in conn.execute(
            "SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
        )
    }


def test_a_store_from_the_early_migration_22_loses_its_settlement_path_triggers(
    tmp_path, monkeypatch
):
    """A store first migrated by the early 22 kept counting every event and
    settlement by trigger (~20 % of settlement ingest) after the upgrade that
    stopped doing so, since 22 was already recorded as applied."""
    path = tmp_path / "db.sqlite"
    database_at(path, 22, monkeypatch)
    conn = sqlite3.connect(path)
    for statement in EARLY_22_TRIGGERS:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO events (event_id, type, created_at, payload)"
        " VALUES ('evt_old', 'invoice.incoming.created', 0, '{}')"
    )
    assert conn.execute("SELECT n FROM tallies WHERE name = 'events'").fetchone() == (1,)
    conn.commit()
    conn.close()
    fresh = Store(tmp_path / "fresh.sqlite")
    store = Store(path)
    try:
        assert schema_of(store.conn) == schema_of(fresh.conn)
        assert not count(store.conn, "tallies", "name IN ('events', 'settlements')")
        store.conn.execute(
            "INSERT INTO events (event_id, type, created_at, payload)"
            " VALUES ('evt_new', 'invoice.incoming.created', 0, '{}')"
        )
        assert not count(store.conn, "tallies", "name = 'events'")
    finally:
        store.close()
        fresh.close()


def test_address_payments_stored_before_migration_26_show_their_payer_data_under_albys_key(
    tmp_path, monkeypatch
):
    """The LNURL callback kept LUD-18 payer data under `metadata.payerdata`;
    Alby's invoice object has it as `metadata.payer_data`. Old address
    payments move to the new key, as received; other metadata is left."""
    path = tmp_path / "db.sqlite"
    database_at(path, 25, monkeypatch)
    conn = sqlite3.connect(path)
    rows = [
        (1, "lnurl", {"payerdata": {"name": "Ann", "foo": [1, 2]}}),
        (2, "api", {"payerdata": "an API caller's own key"}),
        (3, "lnurl", None),
    ]
    for invoice_id, source, metadata in rows:
        conn.execute(
            "INSERT INTO invoices (id, identifier, type, payment_hash, state, amount_msat,"
            " amount_received_msat, created_at, expiry, expires_at, source, metadata)"
            " VALUES (?, ?, 'incoming', ?, 'SETTLED', 1000, 1000, 0, 60, 60, ?, ?)",
            (
                invoice_id,
                f"id{invoice_id}",
                f"{invoice_id:064x}",
                source,
                json.dumps(metadata) if metadata else None,
            ),
        )
    conn.commit()
    conn.close()
    store = Store(path)
    try:
        found = {
            row["id"]: json.loads(row["metadata"]) if row["metadata"] else None
            for row in store.conn.execute("SELECT id, metadata FROM invoices")
        }
        assert found == {
            1: {"payer_data": {"name": "Ann", "foo": [1, 2]}},
            2: {"payerdata": "an API caller's own key"},
            3: None,
        }
    finally:
        store.close()


def test_invoices_made_before_migration_19_with_an_idempotency_key_keep_their_token(
    tmp_path, monkeypatch
):
    """A token that may create but not read invoices settles and cancels only
    those on record as its own; one that sent an Idempotency-Key with
    `POST /invoices` before the record existed is named by that key, so it can
    still settle the hold invoices it had held when lnplugin was upgraded."""
    path = tmp_path / "db.sqlite"
    database_at(path, 18, monkeypatch)
    conn = sqlite3.connect(path)  # rows as those versions wrote them
    for token_id in (1, 2):
        conn.execute(
            "INSERT INTO tokens (id, token_hash, scopes, created_at)"
            " VALUES (?, ?, 'invoices:create', 0)",
            (token_id, f"{token_id:064x}"),
        )
    for invoice_id in (1, 2, 3):
        conn.execute(
            "INSERT INTO invoices (id, identifier, type, payment_hash, state, amount_msat,"
            " amount_received_msat, created_at, expiry, expires_at, hold)"
            " VALUES (?, ?, 'incoming', ?, 'ACCEPTED', 7000, 7000, 0, 3600, 3600, 1)",
            (invoice_id, f"id{invoice_id}", f"{invoice_id:064x}"),
        )
    for token_id, invoice_id in ((1, 1), (2, 2)):
        conn.execute(
            "INSERT INTO idempotency_keys (token_id, key, body_hash, invoice_id, created_at)"
            " VALUES (?, 'order-1', 'h', ?, 0)",
            (token_id, invoice_id),
        )
    conn.commit()
    conn.close()
    store = Store(path)
    try:
        assert tokens.made_by(store.conn, 1, 1) and tokens.made_by(store.conn, 2, 2)
        assert not tokens.made_by(store.conn, 1, 2) and not tokens.made_by(store.conn, 2, 1)
        # Made without a key: no maker on record, as before.
        assert not any(tokens.made_by(store.conn, 3, t) for t in (1, 2))
    finally:
        store.close()


# -- cursors -------------------------------------------------------------------------------


def test_cursor_starts_at_zero_and_never_moves_backward(store):
    assert cursors.get(store.conn, cursors.INCOMING) == 0
    with store.transaction() as tx:
        cursors.advance(tx, cursors.INCOMING, 5)
        cursors.advance(tx, cursors.INCOMING, 3)
    assert cursors.get(store.conn, cursors.INCOMING) == 5


# -- applying settlements --------------------------------------------------------------------


def test_a_settlement_writes_row_cursor_and_event_together(store):
    invoice_id = open_invoice(store)
    with store.transaction() as tx:
        assert apply_in(tx, InvoiceUpdate(settled(), 4)) is True
    row = invoice_by_id(store.conn, invoice_id)
    assert row.state == "SETTLED"
    assert row.amount_received_msat == 5000
    assert row.preimage == "11" * 32
    assert row.list_seq == 1
    assert cursors.get(store.conn, cursors.INCOMING) == 4
    (event,) = events.after(store.conn, 0)
    assert event["type"] == events.INCOMING_SETTLED
    assert event["payment_hash"] == HASH
    assert events.payload(event)["data"]["state"] == "SETTLED"


def test_a_replayed_settlement_changes_nothing_and_creates_no_second_event(store):
    invoice_id = open_invoice(store)
    with store.transaction() as tx:
        apply_in(tx, InvoiceUpdate(settled(), 4))
    before = asdict(invoice_by_id(store.conn, invoice_id))
    with store.transaction() as tx:
        assert apply_in(tx, InvoiceUpdate(settled(amount_received_msat=9999), 4)) is False
        assert apply_in(tx, InvoiceUpdate(settled(), 2)) is False  # an older feed position
    assert asdict(invoice_by_id(store.conn, invoice_id)) == before
    assert count(store.conn, "events") == 1
    assert cursors.get(store.conn, cursors.INCOMING) == 4


def test_a_failure_inside_the_transaction_leaves_neither_row_nor_cursor(store):
    invoice_id = open_invoice(store)
    with pytest.raises(RuntimeError), store.transaction() as tx:
        apply_in(tx, InvoiceUpdate(settled(), 4))
        raise RuntimeError("crash before commit")
    assert invoice_by_id(store.conn, invoice_id).state == "OPEN"
    assert cursors.get(store.conn, cursors.INCOMING) == 0
    assert count(store.conn, "events") == 0
    with store.transaction() as tx:  # the retry after restart applies it exactly once
        assert apply_in(tx, InvoiceUpdate(settled(), 4)) is True
    assert count(store.conn, "events") == 1


def test_a_settlement_of_an_unknown_invoice_is_stored_from_the_node(store):
    with store.transaction() as tx:
        apply_in(tx, InvoiceUpdate(settled("cd" * 32, payment_request="", is_keysend=True), 1))
    row = invoice_by_hash(store.conn, "cd" * 32)
    assert row.state == "SETTLED" and row.source == "node" and row.is_keysend == 1
    assert row.list_seq == 1
    assert count(store.conn, "events", f"type = '{events.INCOMING_SETTLED}'") == 1


def test_an_open_update_only_moves_the_cursor(store):
    open_invoice(store)
    with store.transaction() as tx:
        assert apply_in(tx, InvoiceUpdate(settled(state="OPEN"), 9)) is False
    assert invoice_by_hash(store.conn, HASH).state == "OPEN"
    assert cursors.get(store.conn, cursors.INCOMING) == 9
    assert count(store.conn, "events") == 0


def test_a_reconciliation_lookup_does_not_move_the_cursor(store):
    open_invoice(store)
    with store.transaction() as tx:
        cursors.advance(tx, cursors.INCOMING, 3)
        apply_in(tx, InvoiceUpdate(settled(), 0))
    assert cursors.get(store.conn, cursors.INCOMING) == 3
    assert invoice_by_hash(store.conn, HASH).state == "SETTLED"


def test_settled_invoices_get_consecutive_list_positions(store):
    for i in range(3):
        open_invoice(store, f"{i:02x}" * 32)
    with store.transaction() as tx:
        for i in (2, 0, 1):
            apply_in(tx, InvoiceUpdate(settled(f"{i:02x}" * 32), 10 + i))
    seqs = [invoice_by_hash(store.conn, f"{i:02x}" * 32).list_seq for i in (2, 0, 1)]
    assert seqs == [1, 2, 3]


# -- expiry sweep ------------------------------------------------------------------------------


def test_the_expiry_sweep_marks_expired_invoices_with_one_event_each(store):
    expired = open_invoice(store, "01" * 32, expires_in=-5)
    live = open_invoice(store, "02" * 32, expires_in=3600)
    assert expire_due(store) == 1
    assert invoice_by_id(store.conn, expired).state == "EXPIRED"
    assert invoice_by_id(store.conn, live).state == "OPEN"
    (event,) = events.after(store.conn, 0)
    assert event["type"] == events.INCOMING_EXPIRED
    assert events.payload(event)["data"]["state"] == "EXPIRED"
    assert expire_due(store) == 0  # running again changes nothing
    assert count(store.conn, "events") == 1


def test_the_expiry_sweep_leaves_settled_invoices_alone(store):
    invoice_id = open_invoice(store, expires_in=-5)
    with store.transaction() as tx:
        apply_in(tx, InvoiceUpdate(settled(), 1))
    assert expire_due(store) == 0
    assert invoice_by_id(store.conn, invoice_id).state == "SETTLED"


def _due_invoices(store: Store, count: int, now: int) -> None:
    """`count` open invoices that expired 90 s before `now`."""
    with store.transaction() as tx:
        for i in range(count):
            invoices.insert(
                tx,
                {
                    "type": "incoming",
                    "payment_hash": f"{i:064x}",
                    "state": "OPEN",
                    "created_at": now - 100,
                    "expiry": 10,
                    "expires_at": now - 90,
                },
            )


def test_the_expiry_sweep_handles_more_than_one_batch(store):
    _due_invoices(store, 1203, int(time.time()))
    assert expire_due(store) == 1203
    assert count(store.conn, "invoices", "state = 'EXPIRED'") == 1203
    assert count(store.conn, "events") == 1203


def test_a_sweep_whose_node_leaves_a_full_batch_as_it_was_ends(store):
    """A full batch of due invoices the node says nothing about that changes
    them (here: nothing lapsed, nothing stored) stays OPEN for the next tick;
    the sweep must not read the same batch again and again (it did, for
    ever), and the invoices after it are asked about in the same sweep."""
    now = int(time.time())
    _due_invoices(store, EXPIRE_BATCH + 3, now)
    asked: list[int] = []

    def nothing_lapsed(due):
        asked.append(len(due))
        return set()

    assert expire_due(store, now, ask=nothing_lapsed) == 0
    assert asked == [EXPIRE_BATCH, 3]  # each due invoice once
    assert count(store.conn, "invoices", "state = 'OPEN'") == EXPIRE_BATCH + 3


def test_a_settlement_after_the_sweep_still_counts(store):
    # The node is the authority on payment: an HTLC accepted just before expiry wins.
    invoice_id = open_invoice(store, expires_in=-1)
    expire_due(store)
    with store.transaction() as tx:
        assert apply_in(tx, InvoiceUpdate(settled(), 1)) is True
    assert invoice_by_id(store.conn, invoice_id).state == "SETTLED"


def test_count_by_state_counts_each_stored_state(store):
    assert invoices.count_by_state(store.conn) == {}
    open_invoice(store, "01" * 32)
    open_invoice(store, "02" * 32)
    settled_id = open_invoice(store, "03" * 32)
    with store.transaction() as tx:
        invoices.update(tx, settled_id, {"state": "SETTLED"})
    assert invoices.count_by_state(store.conn) == {"OPEN": 2, "SETTLED": 1}


def test_of_invoice_after_is_one_invoices_events_after_a_seq_oldest_first(store):
    mine = open_invoice(store, "01" * 32)
    other = open_invoice(store, "02" * 32)
    with store.transaction() as tx:
        first = events.append(tx, events.INCOMING_CREATED, invoice_by_id(tx, mine))
        events.append(tx, events.INCOMING_CREATED, invoice_by_id(tx, other))
        second = events.append(tx, events.INCOMING_SETTLED, invoice_by_id(tx, mine))
    assert [r["seq"] for r in events.of_invoice_after(store.conn, mine, 0)] == [first, second]
    assert [r["seq"] for r in events.of_invoice_after(store.conn, mine, first)] == [second]
    assert events.of_invoice_after(store.conn, mine, second) == []


def test_a_quiet_transaction_that_appends_to_the_outbox_wakes_its_readers_all_the_same(store):
    # `transaction(wake=False)` spares the waiting threads a wake-up for
    # bookkeeping they never read; an outbox event written under it by
    # mistake must still reach them at once, not at their next idle look.
    mine = open_invoice(store, "01" * 32)
    seen = store.commit_version
    with store.transaction(wake=False) as tx:
        tx.execute("UPDATE invoices SET description = 'quiet' WHERE id = ?", (mine,))
    assert store.commit_version == seen
    with store.transaction(wake=False) as tx:
        events.append(tx, events.INCOMING_CREATED, invoice_by_id(tx, mine))
    assert store.wait_for_commit(seen, 5) == seen + 1


def test_a_listener_for_some_event_types_is_woken_by_those_and_by_commits_without_events(store):
    # The rss::payment worker reads settlements only: an invoice created
    # must not wake it, a settlement must, and so must a commit that wrote
    # rows but no event (a delivery made due again), as every commit did.
    mine = open_invoice(store, "01" * 32)
    settled, anything = threading.Event(), threading.Event()
    store.on_commit(settled, (events.INCOMING_SETTLED,))
    store.on_commit(anything)
    with store.transaction() as tx:
        events.append(tx, events.INCOMING_CREATED, invoice_by_id(tx, mine))
    assert anything.is_set() and not settled.is_set()

    anything.clear()
    with store.transaction(wake=False) as tx:  # a quiet one appending the type
        events.append(tx, events.INCOMING_SETTLED, invoice_by_id(tx, mine))
    assert settled.is_set() and anything.is_set()

    settled.clear()
    with store.transaction() as tx:
        tx.execute("UPDATE invoices SET description = 'no event' WHERE id = ?", (mine,))
    assert settled.is_set()

    settled.clear()
    store.off_commit(settled)
    with store.transaction() as tx:
        events.append(tx, events.INCOMING_SETTLED, invoice_by_id(tx, mine))
    assert not settled.is_set()
    store.off_commit(anything)


def test_an_event_of_an_invoice_with_its_own_webhook_wakes_listeners_of_those(store):
    # The webhook worker is woken by the types its endpoints take, and by
    # every event of an invoice with its own webhook URL, whatever the type.
    plain = open_invoice(store, "01" * 32)
    hooked = open_invoice(store, "02" * 32)
    with store.transaction() as tx:
        tx.execute(
            "UPDATE invoices SET webhook_url = 'https://shop.example/hook' WHERE id = ?", (hooked,)
        )
    woken = threading.Event()
    store.on_commit(woken, (events.HAS_INVOICE_WEBHOOK,))
    try:
        with store.transaction() as tx:
            events.append(tx, events.INCOMING_CREATED, invoice_by_id(tx, plain))
        assert not woken.is_set()
        with store.transaction() as tx:
            events.append(tx, events.INCOMING_CREATED, invoice_by_id(tx, hooked))
        assert woken.is_set()
    finally:
        store.off_commit(woken)


@pytest.mark.parametrize("type_", [None, "incoming", "outgoing"])
def test_an_export_batch_walks_the_primary_key_without_sorting(store, type_):
    """Each batch reads on from the last id. With `type=`, SQLite would pick
    the (type, list_seq) index and sort every remaining row of that type by
    id in each batch: an export slowed with the square of the store (the
    soak audit: p99 from 65 ms to 2.2 s at 108 MB)."""
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    try:
        list(invoices.export_batches(store.conn, type_=type_, since=0))
    finally:
        store.conn.set_trace_callback(None)
    [select] = [sql for sql in statements if "FROM invoices" in sql]
    plan = [row[3] for row in store.conn.execute(f"EXPLAIN QUERY PLAN {select}")]
    assert plan == ["SEARCH invoices USING INTEGER PRIMARY KEY (rowid>?)"], plan
