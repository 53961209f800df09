"""Idempotency keys: a retried `POST /invoices` gets the invoice it already made.

A key belongs to the token that sent it (two apps may pick the same key) and
remembers a hash of the request body, so reusing a key for a different
request is refused rather than answered with an unrelated invoice. The key is
written in the same transaction as the invoice: a key never points at
nothing, and the (token, key) uniqueness lets exactly one of two concurrent
requests with the same key win.
"""

from __future__ import annotations

import sqlite3
from typing import NamedTuple


class Remembered(NamedTuple):
    body_hash: str
    invoice_id: int


def remember(
    tx: sqlite3.Connection, token_id: int, key: str, body_hash: str, invoice_id: int, now: int
) -> None:
    """Record that `key` (from `token_id`) made `invoice_id`; raises
    sqlite3.IntegrityError when that token already used the key."""
    tx.execute(
        "INSERT INTO idempotency_keys (token_id, key, body_hash, invoice_id, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (token_id, key, body_hash, invoice_id, now),
    )


def lookup(conn: sqlite3.Connection, token_id: int, key: str) -> Remembered | None:
    """What `key` from `token_id` made before, if anything."""
    row = conn.execute(
        "SELECT body_hash, invoice_id FROM idempotency_keys WHERE token_id = ? AND key = ?",
        (token_id, key),
    ).fetchone()
    return Remembered(row["body_hash"], row["invoice_id"]) if row is not None else None
