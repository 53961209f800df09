"""API tokens, stored as SHA-256 hashes.

A token is 32 random bytes, so a plain SHA-256 is enough (no slow KDF is
needed for high-entropy secrets) and lookups stay a single indexed query.
The hash found is compared again in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import time
from dataclasses import dataclass

SCOPES = ("invoices:create", "invoices:read", "transactions:read", "metrics:read", "admin")
TOKEN_PREFIX = "lnp_"


class UnknownScope(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: int
    label: str | None
    scopes: frozenset[str]
    created_at: int
    revoked_at: int | None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_scopes(scopes: list[str] | tuple[str, ...]) -> list[str]:
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise UnknownScope(f"unknown scope {', '.join(unknown)}; valid scopes: {', '.join(SCOPES)}")
    if not scopes:
        raise UnknownScope("at least one scope is required; valid scopes: " + ", ".join(SCOPES))
    return sorted(set(scopes))


def create(tx: sqlite3.Connection, scopes: list[str], label: str | None = None) -> tuple[int, str]:
    """Returns (id, token). The token itself is never stored."""
    clean = check_scopes(scopes)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    cur = tx.execute(
        "INSERT INTO tokens (label, token_hash, scopes, created_at) VALUES (?, ?, ?, ?)",
        (label, hash_token(token), " ".join(clean), int(time.time())),
    )
    return int(cur.lastrowid or 0), token


def _info(row: sqlite3.Row) -> TokenInfo:
    return TokenInfo(
        id=row["id"],
        label=row["label"],
        scopes=frozenset(row["scopes"].split()),
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


def verify(conn: sqlite3.Connection, token: str) -> TokenInfo | None:
    """The live token matching `token`, or None."""
    digest = hash_token(token)
    row = conn.execute(
        "SELECT * FROM tokens WHERE token_hash = ? AND revoked_at IS NULL", (digest,)
    ).fetchone()
    if row is None or not hmac.compare_digest(row["token_hash"], digest):
        return None
    return _info(row)


def by_id(conn: sqlite3.Connection, token_id: int) -> TokenInfo | None:
    """The live (not revoked) token with this id, or None."""
    row = conn.execute(
        "SELECT * FROM tokens WHERE id = ? AND revoked_at IS NULL", (token_id,)
    ).fetchone()
    return None if row is None else _info(row)


def list_all(conn: sqlite3.Connection) -> list[TokenInfo]:
    return [_info(r) for r in conn.execute("SELECT * FROM tokens ORDER BY id")]


def revoke(tx: sqlite3.Connection, token_id: int) -> bool:
    cur = tx.execute(
        "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
        (int(time.time()), token_id),
    )
    return cur.rowcount == 1


def live_ids(conn: sqlite3.Connection, ids: set[int]) -> set[int]:
    """Those of `ids` that name a token still in force (not revoked, not gone)."""
    if not ids:
        return set()
    rows = conn.execute(  # one parameter however many ids (up to --max-streams)
        "SELECT id FROM tokens WHERE revoked_at IS NULL AND id IN (SELECT value FROM json_each(?))",
        (json.dumps(sorted(ids)),),
    )
    return {int(row["id"]) for row in rows}


def has_admin(conn: sqlite3.Connection) -> bool:
    row = conn.execute(
        "SELECT 1 FROM tokens WHERE revoked_at IS NULL AND ' ' || scopes || ' ' LIKE '% admin %'"
    ).fetchone()
    return row is not None
