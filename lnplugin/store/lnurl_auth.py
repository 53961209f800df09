"""LUD-18 `auth` challenges: the k1s a Lightning Address's discovery answer
hands out, each good for one accepted signature before it expires.

LUD-04 asks a service to accept only k1s it issued and has not seen used;
rows are keyed by the k1 and name the address they were issued for, so a
k1 from one address's discovery does not sign a payment to another.
"""

from __future__ import annotations

import secrets
import sqlite3
import time

TTL = 600  # seconds from discovery to callback; a wallet calls back at once


def issue(tx: sqlite3.Connection, username: str, now: int | None = None) -> str:
    """A fresh random k1 (32 bytes, hex) for `username`, stored until used or
    expired; expired ones are swept on the way (one indexed delete)."""
    now = int(time.time()) if now is None else now
    tx.execute("DELETE FROM lnurl_auth_k1 WHERE expires_at <= ?", (now,))
    k1 = secrets.token_hex(32)
    tx.execute(
        "INSERT INTO lnurl_auth_k1 (k1, username, issued_at, expires_at) VALUES (?, ?, ?, ?)",
        (k1, username, now, now + TTL),
    )
    return k1


def usable(conn: sqlite3.Connection, k1: str, username: str, now: int | None = None) -> bool:
    """Whether `k1` was issued for `username`, is unused and has not expired."""
    now = int(time.time()) if now is None else now
    row = conn.execute(
        "SELECT 1 FROM lnurl_auth_k1 WHERE k1 = ? AND username = ? AND expires_at > ?",
        (k1.lower(), username, now),
    ).fetchone()
    return row is not None


def consume(tx: sqlite3.Connection, k1: str, username: str, now: int | None = None) -> bool:
    """Use up `k1`: True when it was usable (and now is not), False otherwise.
    Atomic, so of two callbacks racing with one k1 only one gets True."""
    now = int(time.time()) if now is None else now
    cur = tx.execute(
        "DELETE FROM lnurl_auth_k1 WHERE k1 = ? AND username = ? AND expires_at > ?",
        (k1.lower(), username, now),
    )
    return cur.rowcount == 1
