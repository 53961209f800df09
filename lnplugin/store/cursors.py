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


def rewind(tx: sqlite3.Connection, name: str) -> None:
    """Set cursor `name` back to 0, for a node whose own positions went back
    (its invoice history was reset). Safe because the store deduplicates."""
    tx.execute(
        "UPDATE cursors SET value = 0, updated_at = ? WHERE name = ?", (int(time.time()), name)
    )


def rewind_followed(tx: sqlite3.Connection) -> None:
    """Rewind both of the follower's cursors: a node that starts its
    positions over numbers its settlements and its payments afresh."""
    for name in (INCOMING, OUTGOING):
        rewind(tx, name)


def sync_kind(tx: sqlite3.Connection, name: str, kind: str) -> bool:
    """Record what cursor `name` counts; reset it to 0 when that changed.

    A node can change what its feed position means (CLN upgraded past 23.08
    switches from pay_index to updated_index): the stored number then means
    nothing, and starting over is safe because the store deduplicates.
    Returns True when the cursor was reset.
    """
    row = tx.execute("SELECT kind FROM cursor_kinds WHERE name = ?", (name,)).fetchone()
    if row is not None and row[0] == kind:
        return False
    now = int(time.time())
    tx.execute(
        "INSERT INTO cursor_kinds (name, kind, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT(name) DO UPDATE SET kind = excluded.kind, updated_at = excluded.updated_at",
        (name, kind, now),
    )
    if get(tx, name) == 0:
        return False
    rewind(tx, name)
    return True


def followed_node(conn: sqlite3.Connection) -> str | None:
    """The identity pubkey of the node the cursors count positions of; None
    before one was seen."""
    row = conn.execute("SELECT pubkey FROM followed_node WHERE id = 1").fetchone()
    return None if row is None else str(row[0])


def sync_node(tx: sqlite3.Connection, pubkey: str) -> str | None:
    """Record that the cursors count positions of the node `pubkey`; when they
    counted another node's, rewind every follower cursor to 0 and return
    that node's pubkey (else None).

    Another node numbers its settlements and payments from 1: positions
    up to the stored cursors would be skipped, payments included, however
    many it has. Starting over is safe because the store deduplicates.
    """
    row = tx.execute("SELECT pubkey FROM followed_node WHERE id = 1").fetchone()
    if row is not None and row[0] == pubkey:
        return None
    now = int(time.time())
    tx.execute(
        "INSERT INTO followed_node (id, pubkey, updated_at) VALUES (1, ?, ?) "
        "ON CONFLICT(id) DO UPDATE SET pubkey = excluded.pubkey, updated_at = excluded.updated_at",
        (pubkey, now),
    )
    if row is None:
        return None  # the first node seen (or a store from before this was kept)
    rewind_followed(tx)
    return str(row[0])


def all_cursors(conn: sqlite3.Connection) -> dict[str, int]:
    return {row[0]: row[1] for row in conn.execute("SELECT name, value FROM cursors")}
