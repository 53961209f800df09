"""API tokens, stored as SHA-256 hashes.

A token is 32 random bytes, so a plain SHA-256 is enough (no slow KDF is
needed for high-entropy secrets) and lookups stay a single indexed query.
The hash found is compared again in constant time.

A token may carry its own request rate (`rate_limit`, NULL for the server's
default) and a signing secret: with one, every request it makes must be
signed (`lnplugin.api.signing`). The signing secret is an HMAC key, which
has to be at hand to check a signature, so it is stored as it is, like the
webhook secrets, in the store's 0600 file.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lnplugin.store.db import Store

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
    rate_limit: str | None = None
    signing_secret: str | None = None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_scopes(scopes: Sequence[str], valid: Sequence[str] = SCOPES) -> list[str]:
    """`scopes` sorted and without repeats; `UnknownScope` names any not in
    `valid` (a token's scopes by default; a wallet connection passes its
    own), or says that none was given. One rule and one wording for both
    kinds of credential, as the CLI and the API show it to the operator."""
    unknown = [s for s in scopes if s not in valid]
    if unknown:
        raise UnknownScope(f"unknown scope {', '.join(unknown)}; valid scopes: {', '.join(valid)}")
    if not scopes:
        raise UnknownScope("at least one scope is required; valid scopes: " + ", ".join(valid))
    return sorted(set(scopes))


SIGNING_PREFIX = "lnps_"


def new_signing_secret() -> str:
    return SIGNING_PREFIX + secrets.token_urlsafe(32)


def create(
    tx: sqlite3.Connection,
    scopes: list[str],
    label: str | None = None,
    rate_limit: str | None = None,
    signing_secret: str | None = None,
) -> tuple[int, str]:
    """Returns (id, token). The token itself is never stored.

    `rate_limit` ("100/minute", checked by the caller) overrides the server's
    default for this token; `signing_secret` makes it require signed requests.
    """
    clean = check_scopes(scopes)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    cur = tx.execute(
        "INSERT INTO tokens (label, token_hash, scopes, created_at, rate_limit, signing_secret)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (label, hash_token(token), " ".join(clean), int(time.time()), rate_limit, signing_secret),
    )
    return int(cur.lastrowid or 0), token


def _info(row: sqlite3.Row) -> TokenInfo:
    return TokenInfo(
        id=row["id"],
        label=row["label"],
        scopes=frozenset(row["scopes"].split()),
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
        rate_limit=row["rate_limit"],
        signing_secret=row["signing_secret"],
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


def revoke(store: Store, token_id: int) -> bool:
    """Revoke the token `token_id`: False when there is no live token by that id.

    It commits on its own, then changes the store's revocation mark, so a
    server that keeps verified tokens in memory (`LiveTokens`), in this
    process or another, refuses the token from its next request on. Raises
    OSError when the mark cannot be changed: the revocation is stored, but a
    running server may go on accepting the token until it restarts."""
    if store.conn.in_transaction:
        raise RuntimeError("tokens.revoke commits on its own; call it outside a transaction")
    with store.transaction() as tx:
        cur = tx.execute(
            "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            (int(time.time()), token_id),
        )
    if cur.rowcount != 1:
        return False
    if store.revocations is not None:
        store.revocations.change()
    return True


class LiveTokens:
    """`verify`, answered from memory for a token verified before, for as long
    as the store's revocation mark has not changed.

    Why: in a busy server the query `verify` makes costs more in hand-overs
    of Python's lock than in work (`store.revocations` says why and how a
    revocation elsewhere is seen at once). A token is only ever inserted or
    revoked, never changed, so a verified one stays right until a revocation.

    The mark is read before the query, and a revocation changes it after its
    commit: an answer the query gave before the commit is kept under the old
    mark, which the first request after the change sees and drops. Tokens not
    found are not kept (guessing costs a query, as before), and at most
    `MAX_KEPT` are."""

    MAX_KEPT = 10_000

    def __init__(self, store: Store) -> None:
        self._store = store
        self._kept: tuple[bytes | None, dict[str, TokenInfo]] = (None, {})

    def verify(self, token: str) -> TokenInfo | None:
        """As the module's `verify`, with this thread's connection of the store."""
        mark = self._store.revocations.read() if self._store.revocations is not None else None
        if mark is None:  # nothing tells us of revocations: ask every time
            return verify(self._store.conn, token)
        digest = hash_token(token)
        kept_under, kept = self._kept
        if kept_under == mark:
            info = kept.get(digest)
            if info is not None:
                return info
        else:
            kept = {}
            self._kept = (mark, kept)
        info = verify(self._store.conn, token)
        if info is not None and len(kept) < self.MAX_KEPT:
            kept[digest] = info
        return info


def live_ids(conn: sqlite3.Connection, ids: set[int]) -> set[int]:
    """Those of `ids` that name a token still in force (not revoked, not gone)."""
    if not ids:
        return set()
    rows = conn.execute(  # one parameter however many ids (up to --max-streams)
        "SELECT id FROM tokens WHERE revoked_at IS NULL AND id IN (SELECT value FROM json_each(?))",
        (json.dumps(sorted(ids)),),
    )
    return {int(row["id"]) for row in rows}


def made(tx: sqlite3.Connection, invoice_id: int, token_id: int) -> None:
    """Record, in the invoice's own transaction, which token minted it."""
    tx.execute(
        "INSERT INTO token_invoices (invoice_id, token_id) VALUES (?, ?)", (invoice_id, token_id)
    )


def made_by(conn: sqlite3.Connection, invoice_id: int, token_id: int) -> bool:
    found = conn.execute(
        "SELECT token_id FROM token_invoices WHERE invoice_id = ?", (invoice_id,)
    ).fetchone()
    return found is not None and found[0] == token_id


def has_admin(conn: sqlite3.Connection) -> bool:
    row = conn.execute(
        "SELECT 1 FROM tokens WHERE revoked_at IS NULL AND ' ' || scopes || ' ' LIKE '% admin %'"
    ).fetchone()
    return row is not None


def remember_nonce(
    tx: sqlite3.Connection, token_id: int, nonce: str, now: int, window: int
) -> bool:
    """Record a signed request's nonce; False when this token used it before
    within the time its request stays acceptable (a replay). Older nonces are
    pruned first: a timestamp may be up to `window` ahead of the clock when
    first seen, so a nonce is kept for two windows, after which its request's
    timestamp is stale and refused anyway."""
    tx.execute("DELETE FROM request_nonces WHERE seen_at < ?", (now - 2 * window,))
    cur = tx.execute(
        "INSERT OR IGNORE INTO request_nonces (token_id, nonce, seen_at) VALUES (?, ?, ?)",
        (token_id, nonce, now),
    )
    return cur.rowcount == 1
