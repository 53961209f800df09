"""Lightning Addresses (LUD-16): the rows behind `/.well-known/lnurlp/<username>`.

An address is what a payer's wallet sees before any invoice exists: the
amount range, the description, which payer data to ask for, and the keysend
record (type and value) that marks a Podcasting 2.0 keysend as paid to it.
Invoices minted for an address record its username, not its id, so removing
an address never rewrites what it was paid; `match_records` is the one place
a keysend's TLV records are attributed to an address.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

DEFAULT_KEYSEND_KEY = 696969  # the customKey podcast apps already send to hosted wallets


@dataclass(frozen=True, slots=True)
class Address:
    id: int
    username: str
    min_sendable_msat: int
    max_sendable_msat: int
    description: str
    image: str | None  # a data: URI (image/png or image/jpeg, base64)
    comment_allowed: int
    payer_data: str | None  # LUD-18 request object, JSON text
    webhook_url: str | None
    success_message: str | None
    keysend_custom_key: int
    keysend_custom_value: str
    created_at: int
    updated_at: int

    @property
    def payer_data_request(self) -> dict[str, Any]:
        return json.loads(self.payer_data) if self.payer_data else {}


_COLUMNS = tuple(f.name for f in fields(Address))
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM lightning_addresses"


def _address(_cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> Address:
    return Address(*row)


def _select(conn: sqlite3.Connection, where: str, args: tuple[Any, ...]) -> sqlite3.Cursor:
    cur = conn.cursor()
    cur.row_factory = _address
    return cur.execute(f"{_SELECT} {where}", args)


class DuplicateAddress(ValueError):
    """A username or keysend record (type, value) another address already has."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


def _duplicate(exc: sqlite3.IntegrityError) -> DuplicateAddress:
    text = str(exc)
    return DuplicateAddress("keysend_custom_value" if "keysend" in text else "username")


def insert(tx: sqlite3.Connection, values: Mapping[str, Any]) -> Address:
    """Store a new address; `values` holds the columns other than id and times."""
    if by_username(tx, values["username"]) is not None:
        # Checked first: a new username also collides on the keysend value it defaults to.
        raise DuplicateAddress("username")
    now = int(time.time())
    row = {**values, "created_at": now, "updated_at": now}
    names = ", ".join(row)
    try:
        cur = tx.execute(
            f"INSERT INTO lightning_addresses ({names}) VALUES ({', '.join('?' * len(row))})",
            list(row.values()),
        )
    except sqlite3.IntegrityError as exc:
        raise _duplicate(exc) from None
    found = by_id(tx, int(cur.lastrowid or 0))
    assert found is not None
    return found


def update(tx: sqlite3.Connection, username: str, values: Mapping[str, Any]) -> Address | None:
    """Change some columns of an address; None when there is no such username."""
    row = {**values, "updated_at": int(time.time())}
    sets = ", ".join(f"{k} = ?" for k in row)
    try:
        cur = tx.execute(
            f"UPDATE lightning_addresses SET {sets} WHERE username = ?",
            [*row.values(), username],
        )
    except sqlite3.IntegrityError as exc:
        raise _duplicate(exc) from None
    if cur.rowcount == 0:
        return None
    return by_username(tx, values.get("username", username))


def delete(tx: sqlite3.Connection, username: str) -> bool:
    cur = tx.execute("DELETE FROM lightning_addresses WHERE username = ?", (username,))
    return cur.rowcount > 0


def by_id(conn: sqlite3.Connection, address_id: int) -> Address | None:
    return _select(conn, "WHERE id = ?", (address_id,)).fetchone()


def by_username(conn: sqlite3.Connection, username: str) -> Address | None:
    return _select(conn, "WHERE username = ?", (username,)).fetchone()


def list_all(conn: sqlite3.Connection) -> list[Address]:
    return _select(conn, "ORDER BY username", ()).fetchall()


def usernames(conn: sqlite3.Connection, limit: int) -> list[str]:
    """Up to `limit` usernames, in order: enough to tell none, one or several."""
    rows = conn.execute(
        "SELECT username FROM lightning_addresses ORDER BY username LIMIT ?", (limit,)
    )
    return [row[0] for row in rows]


def match_records(conn: sqlite3.Connection, records: Mapping[int, bytes]) -> Address | None:
    """The address whose keysend record (type, value) a payment carries, if any.

    Values are compared as UTF-8 text, as podcast apps send the `customValue`
    of `/.well-known/keysend/<username>`. One indexed lookup per record; a
    payment carries a handful, and most carry none.
    """
    for key, value in records.items():
        if key >= 2**63:  # beyond SQLite's integers, so no address has it
            continue
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            continue
        row = _select(
            conn, "WHERE keysend_custom_key = ? AND keysend_custom_value = ?", (key, text)
        ).fetchone()
        if row is not None:
            return row
    return None
