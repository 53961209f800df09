"""`store.metrics`: what `/metrics` counts without grouping whole tables at
every scrape must equal those GROUP BYs: delivery and rss::payment counts
kept by triggers (migration 22), whatever is written; event and settlement
counts carried from scrape to scrape over the outbox (`Running`), however
the follower's writes and the scrapes interleave."""

from __future__ import annotations

import hashlib
import random
import sqlite3
from pathlib import Path

import nostr_sdk as ns
import pytest

from lnplugin.follower import apply_in
from lnplugin.nodes.base import InvoiceUpdate, NodeInvoice
from lnplugin.store import Store, invoices, metrics
from lnplugin.store.migrations import MIGRATIONS

GROUPED = {
    "deliveries": "SELECT status, COUNT(*) FROM webhook_deliveries GROUP BY status",
    "rss_payments": "SELECT state, COUNT(*) FROM rss_payments GROUP BY state",
    "zap_receipts": "SELECT state, COUNT(*) FROM zap_receipts GROUP BY state",
}
ZAP_STATES = ["pending", "sent", "refused", "failed"]
STATES = ["OPEN", "ACCEPTED", "SETTLED", "CANCELED", "EXPIRED"]
STATUSES = ["pending", "delivered", "failed"]


def grouped(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    return {name: dict(conn.execute(sql).fetchall()) for name, sql in GROUPED.items()}


def tallied(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    return {name: metrics.tallies(conn, name) for name in GROUPED}


def scramble(store: Store, rng: random.Random, steps: int) -> None:
    """Random inserts, updates and deletes on the counted tables (and on
    invoices and events around them), some updating counted columns to the
    value they had, some to another."""
    for n in range(steps):
        with store.transaction() as tx:
            ids = [r[0] for r in tx.execute("SELECT id FROM invoices")]
            action = rng.randrange(8)
            if action == 0 or not ids:
                now = 1_700_000_000 + n
                invoices.insert(
                    tx,
                    {
                        "type": rng.choice(["incoming", "incoming", "outgoing"]),
                        "payment_hash": hashlib.sha256(f"{n}".encode()).hexdigest(),
                        "payment_request": "lnbcrt1...",
                        "state": rng.choice(STATES),
                        "amount_msat": 1000,
                        "created_at": now,
                        "expiry": 600,
                        "expires_at": now + 600,
                        "is_keysend": rng.choice([0, 1]),
                    },
                )
            elif action == 1:
                tx.execute(
                    "UPDATE invoices SET state = ? WHERE id = ?",
                    (rng.choice(STATES), rng.choice(ids)),
                )
            elif action == 2:
                tx.execute(
                    "UPDATE invoices SET is_keysend = ?, type = ? WHERE id = ?",
                    (rng.choice([0, 1]), rng.choice(["incoming", "outgoing"]), rng.choice(ids)),
                )
            elif action == 3:
                tx.execute("UPDATE invoices SET description = 'x' WHERE id = ?", (rng.choice(ids),))
            elif action == 4:
                tx.execute(
                    "INSERT INTO events (event_id, type, created_at, payload)"
                    " VALUES (?, ?, 0, '{}')",
                    (
                        f"ev{n}",
                        rng.choice(["invoice.incoming.settled", "invoice.incoming.created"]),
                    ),
                )
            elif action == 5:
                tx.execute(
                    "INSERT INTO webhook_deliveries (endpoint_id, url, event_id, event_type,"
                    " status, created_at) VALUES (?, 'https://example.com', ?, 't', ?, 0)",
                    (rng.choice(["a", "b"]), f"ev{n}", rng.choice(STATUSES)),
                )
                tx.execute(
                    "INSERT INTO rss_payments (invoice_id, url, state, created_at, updated_at)"
                    " VALUES (?, 'https://example.com', ?, 0, 0)",
                    (n + 1_000_000, rng.choice(["pending", "done", "failed"])),
                )
                tx.execute(
                    "INSERT INTO zap_receipts (invoice_id, relay, state, created_at, updated_at)"
                    " VALUES (?, ?, ?, 0, 0)",
                    (n % 7, f"wss://r{n}.example", rng.choice(ZAP_STATES)),
                )
            elif action == 6:
                tx.execute(
                    "UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1"
                    " WHERE id IN (SELECT id FROM webhook_deliveries ORDER BY random() LIMIT 3)",
                    (rng.choice(STATUSES),),
                )
                tx.execute(
                    "UPDATE rss_payments SET state = ? WHERE invoice_id IN"
                    " (SELECT invoice_id FROM rss_payments ORDER BY random() LIMIT 2)",
                    (rng.choice(["pending", "done", "failed"]),),
                )
                tx.execute(
                    "UPDATE zap_receipts SET state = ?, attempts = attempts + 1 WHERE id IN"
                    " (SELECT id FROM zap_receipts ORDER BY random() LIMIT 2)",
                    (rng.choice(ZAP_STATES),),
                )
            else:
                tx.execute(
                    "DELETE FROM webhook_deliveries WHERE endpoint_id = ?", (rng.choice("ab"),)
                )
                tx.execute("DELETE FROM events WHERE seq IN (SELECT seq FROM events LIMIT 1)")
                tx.execute("DELETE FROM zap_receipts WHERE invoice_id = ?", (rng.randrange(7),))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_tallies_equal_the_grouped_counts_whatever_is_written(tmp_path: Path, seed: int) -> None:
    store = Store(tmp_path / "lnplugin.sqlite")
    try:
        scramble(store, random.Random(seed), 400)
        assert tallied(store.conn) == {
            name: {k: n for k, n in counts.items() if n}
            for name, counts in grouped(store.conn).items()
        }
        assert any(tallied(store.conn).values())
    finally:
        store.close()


def test_the_migration_counts_what_was_there_before_it(tmp_path: Path) -> None:
    """A store upgraded with rows in it starts its tallies from them."""
    path = tmp_path / "lnplugin.sqlite"
    store = Store(path)
    try:
        scramble(store, random.Random(9), 300)
        expected = tallied(store.conn)
        with store.transaction() as tx:  # back to the schema before migration 22
            for (name,) in tx.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'tally_%'"
            ).fetchall():
                tx.execute(f"DROP TRIGGER {name}")
            tx.execute("DROP TABLE tallies")
            # and what later migrations made, which run again after 22
            tx.execute("DROP INDEX idx_invoices_boost_feed_id")  # 25
            for table in ("zap_receipts", "zap_requests", "zapper_key"):  # 27
                tx.execute(f"DROP TABLE {table}")
            tx.execute("ALTER TABLE nwc_connections DROP COLUMN lud16")  # 28
            tx.execute("ALTER TABLE hold_decisions DROP COLUMN reason")  # 28
            tx.execute("DELETE FROM schema_version WHERE version >= 22")
        # The zap tables (27) are made again empty; 28 counts them from there.
        expected["zap_receipts"] = {}
    finally:
        store.close()
    again = Store(path)
    try:
        assert tallied(again.conn) == expected
        version = again.conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
        assert version == max(MIGRATIONS)
    finally:
        again.close()


SETTLED_BY_KIND = (
    "SELECT CASE WHEN COALESCE(is_keysend, 0) != 0 THEN 'keysend' ELSE 'invoice' END,"
    " COUNT(*) FROM invoices WHERE type = 'incoming' AND state = 'SETTLED' GROUP BY 1"
)


def node_update(n: int, state: str, keysend: bool) -> InvoiceUpdate:
    settled = state == "SETTLED"
    return InvoiceUpdate(
        NodeInvoice(
            payment_hash=hashlib.sha256(f"p{n}".encode()).hexdigest(),
            payment_request="" if keysend else "lnbcrt1...",
            state=state,  # type: ignore[arg-type]  # str: the caller draws it from a list
            amount_msat=None if keysend else 1000,
            created_at=1_700_000_000 + n,
            expiry=600,
            amount_received_msat=1000 if settled else 0,
            settled_at=1_700_000_000 + n if settled else None,
            preimage="11" * 32 if settled else None,
            is_keysend=keysend,
        ),
        n + 1,
    )


def test_outbox_counts_carried_between_scrapes_equal_the_grouped_counts(
    tmp_path: Path,
) -> None:
    """The follower's writes (new invoices, settlements of known ones,
    keysends, replays) interleaved with scrapes, one `Running` throughout,
    and a second process's first scrape that counts everything at once."""
    store = Store(tmp_path / "lnplugin.sqlite")
    rng = random.Random(5)
    running = metrics.Running()
    try:
        for _ in range(600):
            keysend = rng.random() < 0.3
            state = "SETTLED" if keysend else rng.choice(["OPEN", "SETTLED", "SETTLED", "CANCELED"])
            with store.transaction() as tx:
                apply_in(tx, node_update(rng.randrange(400), state, keysend))
            if rng.random() < 0.1:
                with store.snapshot() as conn:
                    counts = metrics.read(conn, running)
                    assert counts.events_by_type == dict(
                        conn.execute("SELECT type, COUNT(*) FROM events GROUP BY type").fetchall()
                    )
                    assert counts.settlements_by_kind == dict(
                        conn.execute(SETTLED_BY_KIND).fetchall()
                    )
        with store.snapshot() as conn:
            carried = metrics.read(conn, running)
            fresh = metrics.read(conn, metrics.Running())  # a new process's first scrape
            assert carried == fresh
            assert set(fresh.settlements_by_kind) == {"invoice", "keysend"}
            assert fresh.settlements_by_kind == dict(conn.execute(SETTLED_BY_KIND).fetchall())
    finally:
        store.close()


def test_the_zap_receipt_backlog_counts_receipts_not_yet_built_and_not_yet_sent(
    tmp_path: Path,
) -> None:
    """What `/info` shows: a zapped invoice settled past the zap worker's
    cursor is a receipt to build, then one delivery per relay until sent or
    given up; an invoice without a zap request is none of it."""
    from lnplugin.store import zaps
    from lnplugin.zapper import ZapWorker

    store = Store(tmp_path / "lnplugin.sqlite")
    worker = ZapWorker(store)  # not started: its steps are run here
    try:
        with store.transaction() as tx:
            apply_in(tx, node_update(1, "SETTLED", False))
            apply_in(tx, node_update(2, "SETTLED", False))
            (zapped,) = tx.execute(
                "SELECT id FROM invoices WHERE payment_hash = ?",
                (node_update(1, "SETTLED", False).invoice.payment_hash,),
            )
            relays = ["wss://a.example", "wss://b.example"]
            sender = ns.Keys.generate()
            tags = [ns.Tag.parse(["p", "ab" * 32]), ns.Tag.parse(["relays", *relays])]
            unsigned = ns.EventBuilder(ns.Kind(9734), "").tags(tags)
            request = sender.sign_event(unsigned.finalize_unsigned(sender.public_key()))
            zaps.record_request(tx, zapped[0], str(request.as_json()), relays)
        status = worker.status()
        assert (status["receipt_backlog"], status["receipts_failed"]) == (1, 0)
        with store.transaction() as tx:
            read = worker.build(tx, worker.keys)
        assert read > 0
        assert worker.status()["receipt_backlog"] == 2  # one delivery per relay
        with store.transaction() as tx:
            rows = tx.execute("SELECT id FROM zap_receipts ORDER BY id").fetchall()
            zaps.record_attempt(tx, rows[0][0], state=zaps.FAILED, error="no")
            zaps.record_attempt(tx, rows[1][0], state=zaps.SENT)
        status = worker.status()
        assert status["receipt_backlog"] == 0
        assert (status["receipts_failed"], status["receipts_refused"]) == (1, 0)
    finally:
        store.close()
