"""Custom TLV records captured from Core Lightning's `htlc_accepted` hook.

`listinvoices` never shows keysend TLVs, so plugin mode stores them here by
payment hash, and the follower joins them to the invoice row. Rows are
merged, never replaced: a multi-part payment carries records in each part,
and CLN replays the hook after a restart, so a second capture of the same
records must change nothing.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping

from lnplugin.boostagram import records_from_json, records_to_json


def get(conn: sqlite3.Connection, payment_hash: str) -> dict[int, bytes]:
    """The records captured for `payment_hash` ({} when none)."""
    row = conn.execute(
        "SELECT records FROM htlc_records WHERE payment_hash = ?", (payment_hash,)
    ).fetchone()
    return records_from_json(row[0]) if row else {}


def merge(
    tx: sqlite3.Connection,
    payment_hash: str,
    records: Mapping[int, bytes],
    now: int | None = None,
) -> dict[int, bytes]:
    """Add `records` to what is stored for the hash; returns the union.

    Writes only when something new arrived, so a replayed hook is a read.
    """
    stored = get(tx, payment_hash)
    merged = {**stored, **records}
    if merged != stored:
        tx.execute(
            "INSERT INTO htlc_records (payment_hash, records, received_at) VALUES (?, ?, ?) "
            "ON CONFLICT(payment_hash) DO UPDATE SET records = excluded.records",
            (payment_hash, records_to_json(merged), int(time.time()) if now is None else now),
        )
    return merged


def count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM htlc_records").fetchone()[0])
