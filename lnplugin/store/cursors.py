"""Follower cursors: the node feed positions already applied to the store.

A cursor is only ever written inside the transaction that applies the
update it covers, so the store and its cursor can never disagree.
"""

from __future__ import annotations

import sqlite3
import time

INCOMING = "incoming"  # the node's settlement feed (LND settle_index, CLN updated_index, ...)
OUTGOING = "outgoing"  # the node's payment index


def get(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT value FROM cursors WHERE name = ?", (name,)).fetchone()
    return int(row[0]) if row else 0


def advance(tx: sqlite3.Connection, name: str, value: int) -> None:
    """Move the cursor forward; never backward (replays carry older positions)."""
    tx.execute(
        "INSERT INTO cursors (name, value, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT(name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at "
        "WHERE excluded.value > cursors.value",
        (name, value, int(time.time())),
    )


def all_cursors(conn: sqlite3.Connection) -> dict[str, int]:
    return {row[0]: row[1] for row in conn.execute("SELECT name, value FROM cursors")}
