"""Settle and cancel decisions on hold invoices whose HTLCs lnplugin holds.

In Core Lightning plugin mode the node has no invoice for a hold invoice's
hash: lnplugin's plugin holds the HTLCs in `htlc_accepted` and answers them.
The decision is written here before any HTLC is answered, so an HTLC that
lightningd replays after a restart is answered the same way, and a lookup
after a crash between answering and storing the invoice's state still
finds the outcome.
"""

from __future__ import annotations

import sqlite3
import time


def decide(tx: sqlite3.Connection, payment_hash: str, state: str, preimage: str | None) -> None:
    """Record SETTLED (with the preimage) or CANCELED; the first decision stands."""
    tx.execute(
        "INSERT OR IGNORE INTO hold_decisions (payment_hash, state, preimage, decided_at)"
        " VALUES (?, ?, ?, ?)",
        (payment_hash, state, preimage, int(time.time())),
    )


def decision(conn: sqlite3.Connection, payment_hash: str) -> tuple[str, str | None] | None:
    """(state, preimage) decided for this hash, or None."""
    row = conn.execute(
        "SELECT state, preimage FROM hold_decisions WHERE payment_hash = ?", (payment_hash,)
    ).fetchone()
    return (row[0], row[1]) if row else None
