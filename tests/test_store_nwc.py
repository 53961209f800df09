"""`store.nwc.transactions`, NWC's `list_transactions`: read through two
indexes in two runs, it must list exactly what one plain query over the
whole table lists, for every filter, page and offset."""

from __future__ import annotations

import hashlib
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from lnplugin.store import Store, invoices
from lnplugin.store import nwc as nwc_store

T0 = 1_700_000_000
SPAN = 400  # seconds over which the invoices are created


@pytest.fixture(scope="module")
def conn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sqlite3.Connection]:
    """300 invoices: both directions, every state, created within SPAN seconds
    (many in the same second), settled up to 300 s after their creation."""
    path = Path(tmp_path_factory.mktemp("nwc")) / "lnplugin.sqlite"
    store = Store(path)
    rng = random.Random(47)
    with store.transaction() as tx:
        for n in range(300):
            created = T0 + rng.randrange(SPAN)
            state = rng.choice(["OPEN", "SETTLED", "SETTLED", "EXPIRED", "CANCELED"])
            settled = state == "SETTLED"
            invoices.insert(
                tx,
                {
                    "type": rng.choice(["incoming", "incoming", "outgoing"]),
                    "payment_hash": hashlib.sha256(n.to_bytes(4, "big")).hexdigest(),
                    "payment_request": "lnbcrt1...",
                    "state": state,
                    "amount_msat": 1000,
                    "amount_received_msat": 1000 if settled else 0,
                    "created_at": created,
                    "expiry": 600,
                    "expires_at": created + 600,
                    "settled_at": created + rng.randrange(300) if settled else None,
                },
            )
    store.close()
    db = sqlite3.connect(path)
    yield db
    db.close()


def reference(conn: sqlite3.Connection, types, since, until, limit, offset, unpaid) -> list[int]:
    """The listing as one query that sorts the whole table."""
    where = [f"type IN ({', '.join('?' * len(types))})"]
    args: list[object] = list(types)
    if since is not None:
        where.append("COALESCE(settled_at, created_at) >= ?")
        args.append(since)
    if until is not None:
        where.append("COALESCE(settled_at, created_at) <= ?")
        args.append(until)
    if not unpaid:
        where.append("state = 'SETTLED'")
    sql = (
        "SELECT id FROM invoices NOT INDEXED WHERE "
        + " AND ".join(where)
        + " ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"
    )
    return [row[0] for row in conn.execute(sql, [*args, limit, offset])]


def _made_since(conn: sqlite3.Connection, types, since, until, unpaid) -> int:
    """How many rows the first run (created at or after `since`) holds."""
    everything = reference(conn, types, since, until, 10_000, 0, unpaid)
    if since is None or not everything:
        return len(everything)
    marks = ", ".join(map(str, everything))
    return conn.execute(
        f"SELECT COUNT(*) FROM invoices WHERE id IN ({marks}) AND created_at >= ?", (since,)
    ).fetchone()[0]


SINCE = [None, T0 - 10, T0, T0 + 150, T0 + 300, T0 + 390, T0 + 400, T0 + 550, T0 + 800]
UNTIL = [None, T0 + 150, T0 + 350, T0 + 420, T0 + 600]
TYPES = [["incoming"], ["outgoing"], ["incoming", "outgoing"]]


@pytest.mark.parametrize("types", TYPES, ids="+".join)
@pytest.mark.parametrize("unpaid", [False, True], ids=["paid", "unpaid"])
def test_every_page_is_the_one_a_whole_table_sort_gives(
    conn: sqlite3.Connection, types: list[str], unpaid: bool
) -> None:
    """Every filter, with pages that start and end on each side of where the
    first run ends (the offsets where the second run's own offset is found)."""
    checked = 0
    for since in SINCE:
        for until in UNTIL:
            first = _made_since(conn, types, since, until, unpaid)
            for limit in (1, 7, 20, 50):
                offsets = {0, 3, 2**63 - 1, *range(max(0, first - limit - 1), first + limit + 2)}
                for offset in sorted(offsets):
                    got = nwc_store.transactions(
                        conn,
                        types,
                        since=since,
                        until=until,
                        limit=limit,
                        offset=offset,
                        unpaid=unpaid,
                    )
                    want = reference(conn, types, since, until, limit, offset, unpaid)
                    assert [row.id for row in got] == want, (since, until, limit, offset)
                    checked += 1
    assert checked > 1000


def test_paging_through_from_a_time_lists_each_transaction_once(conn: sqlite3.Connection) -> None:
    """An app catching up `from` a time, 20 at a time, sees both runs (made
    since, and made before but settled since) once each, in order."""
    since = T0 + SPAN // 2
    seen: list[int] = []
    while page := nwc_store.transactions(
        conn,
        ["incoming", "outgoing"],
        since=since,
        until=None,
        limit=20,
        offset=len(seen),
        unpaid=True,
    ):
        seen += [row.id for row in page]
    everything = reference(conn, ["incoming", "outgoing"], since, None, 10_000, 0, True)
    assert seen == everything
    created_before = conn.execute(
        f"SELECT COUNT(*) FROM invoices WHERE id IN ({', '.join(map(str, seen))})"
        " AND created_at < ?",
        (since,),
    ).fetchone()[0]
    assert created_before > 0  # the second run was needed


def test_no_page_sorts_the_table(conn: sqlite3.Connection) -> None:
    """Each run walks its index in the listing's order, or sorts only its
    own few rows: no statement scans the table or sorts all of it."""
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        for since, offset in ((None, 0), (T0 + SPAN - 50, 0), (T0 + SPAN + 200, 5)):
            nwc_store.transactions(
                conn,
                ["incoming", "outgoing"],
                since=since,
                until=T0 + SPAN + 250,
                limit=20,
                offset=offset,
                unpaid=True,
            )
    finally:
        conn.set_trace_callback(None)
    plans = [
        " | ".join(str(step[-1]) for step in conn.execute("EXPLAIN QUERY PLAN " + sql))
        for sql in statements
    ]
    # The last call's `since` is past every creation: its first run is empty
    # (and counted, for the offset), and its page comes from the second.
    assert any("COUNT" in sql for sql in statements), statements
    for plan in plans:
        if "idx_invoices_settled" in plan:
            continue  # the second run: the payments pending at `since`, sorted
        assert "USING INDEX idx_invoices_created" in plan, plan
        assert "TEMP B-TREE" not in plan, plan  # walked in order, not sorted
    assert "idx_invoices_settled" in plans[-1], plans
