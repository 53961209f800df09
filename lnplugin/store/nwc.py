"""Nostr Wallet Connect rows: connections and their wallet keys, answered
requests, notifications.

A connection is only the app's public key with the scopes it was granted:
the secret half goes to the operator once, inside the connection URI, and
is never written here, so a stolen database cannot impersonate an app.
Answered requests are kept by request event id so a request delivered twice
(two relays, a replay, a restart) gets the same answer and never mints twice.
Notifications are fanned out from the outbox with their cursor in the same
transaction (as webhook deliveries are), so each is sent at least once.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass

from lnplugin.store import cursors, events, tokens
from lnplugin.store.invoices import _select
from lnplugin.store.models import StoredInvoice

# The token scopes that mean something to a wallet connection (docs/nwc.md).
SCOPES = ("invoices:create", "invoices:read", "transactions:read")
CURSOR = "nwc.notifications"
# The outbox events a connection with `invoices:read` hears of, as NIP-47
# notification types.
NOTIFY = {
    events.INCOMING_SETTLED: "payment_received",
    events.INCOMING_ACCEPTED: "hold_invoice_accepted",
}
FAN_OUT_BATCH = 500
PENDING_BATCH = 200  # notifications sent in one pipelined batch


@dataclass(frozen=True, slots=True)
class Connection:
    id: int
    app_pubkey: str
    label: str | None
    scopes: frozenset[str]
    created_at: int
    revoked_at: int | None
    # The wallet key its URI names; None for a connection made before keys
    # per connection (it uses the shared `service_secret`).
    service_pubkey: str | None = None
    # The Lightning Address its URI names (NIP-47 `lud16`), None for none.
    lud16: str | None = None


def check_scopes(scopes: Sequence[str]) -> list[str]:
    """`tokens.check_scopes` against the scopes a wallet connection may hold."""
    return tokens.check_scopes(scopes, SCOPES)


def _connection(row: sqlite3.Row) -> Connection:
    return Connection(
        id=row["id"],
        app_pubkey=row["app_pubkey"],
        label=row["label"],
        scopes=frozenset(row["scopes"].split()),
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
        service_pubkey=row["service_pubkey"],
        lud16=row["lud16"],
    )


def create(
    tx: sqlite3.Connection,
    app_pubkey: str,
    scopes: Sequence[str],
    label: str | None,
    service: tuple[str, str] | None = None,
    lud16: str | None = None,
) -> int:
    """A connection for `app_pubkey`; `service` is its own wallet key pair
    (public hex, secret hex), None to use the shared key; `lud16` the
    Lightning Address its URI names."""
    clean = check_scopes(scopes)
    service_pubkey, service_secret = service or (None, None)
    cur = tx.execute(
        "INSERT INTO nwc_connections (app_pubkey, label, scopes, created_at, service_pubkey,"
        " service_secret, lud16) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            app_pubkey,
            label,
            " ".join(clean),
            int(time.time()),
            service_pubkey,
            service_secret,
            lud16,
        ),
    )
    return int(cur.lastrowid or 0)


def live_by_pubkey(conn: sqlite3.Connection, app_pubkey: str) -> Connection | None:
    row = conn.execute(
        "SELECT * FROM nwc_connections WHERE app_pubkey = ? AND revoked_at IS NULL", (app_pubkey,)
    ).fetchone()
    return None if row is None else _connection(row)


def by_id(conn: sqlite3.Connection, connection_id: int) -> Connection | None:
    row = conn.execute("SELECT * FROM nwc_connections WHERE id = ?", (connection_id,)).fetchone()
    return None if row is None else _connection(row)


def list_all(conn: sqlite3.Connection) -> list[Connection]:
    return [_connection(r) for r in conn.execute("SELECT * FROM nwc_connections ORDER BY id")]


def revoke(tx: sqlite3.Connection, connection_id: int) -> bool:
    cur = tx.execute(
        "UPDATE nwc_connections SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
        (int(time.time()), connection_id),
    )
    if cur.rowcount == 1:  # nothing more will be sent to it
        tx.execute("DELETE FROM nwc_notifications WHERE connection_id = ?", (connection_id,))
    return cur.rowcount == 1


# -- the shared wallet key ----------------------------------------------------------


def service_secret(tx: sqlite3.Connection) -> str:
    """The shared wallet key's secret (hex), made on first use: the key of
    connections made before each had its own (migration 16)."""
    row = tx.execute("SELECT secret_hex FROM nwc_service_key WHERE id = 1").fetchone()
    if row is not None:
        return str(row[0])
    secret = secrets.token_hex(32)
    tx.execute(
        "INSERT INTO nwc_service_key (id, secret_hex, created_at) VALUES (1, ?, ?)",
        (secret, int(time.time())),
    )
    return secret


# -- wallet keys per connection ------------------------------------------------------

SPARES = 4  # keys listened on ahead of the connections that will take them


def take_spare(tx: sqlite3.Connection) -> tuple[str, str] | None:
    """The oldest spare key pair (public hex, secret hex), now no longer spare;
    None when there is none (no server has made any yet, or a burst of new
    connections used them up)."""
    row = tx.execute(
        "SELECT pubkey, secret_hex FROM nwc_spare_keys ORDER BY created_at, pubkey LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    tx.execute("DELETE FROM nwc_spare_keys WHERE pubkey = ?", (row[0],))
    return str(row[0]), str(row[1])


def add_spares(tx: sqlite3.Connection, pairs: Sequence[tuple[str, str]]) -> None:
    now = int(time.time())
    tx.executemany(
        "INSERT INTO nwc_spare_keys (pubkey, secret_hex, created_at) VALUES (?, ?, ?)",
        [(pub, secret, now) for pub, secret in pairs],
    )


def spare_count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM nwc_spare_keys").fetchone()[0])


def wallet_keys(
    conn: sqlite3.Connection, revoked_since: int | None = None
) -> list[tuple[str, str]]:
    """Every wallet key pair the server answers on, but the shared one: each
    connection's own and the spares. Revoked connections' too, so their apps
    hear `UNAUTHORIZED`; with `revoked_since`, only those revoked since then
    (`revoked_keys`)."""
    with_keys = conn.execute(
        "SELECT service_pubkey, service_secret FROM nwc_connections"
        " WHERE service_pubkey IS NOT NULL AND (revoked_at IS NULL OR revoked_at >= ?)"
        " UNION ALL SELECT pubkey, secret_hex FROM nwc_spare_keys",
        (revoked_since if revoked_since is not None else 0,),
    )
    return [(str(pub), str(secret)) for pub, secret in with_keys]


def key_scopes(conn: sqlite3.Connection) -> dict[str, frozenset[str]]:
    """The scopes of each live connection with a wallet key of its own, by
    that key: what its info event offers. Spares and the shared key have
    none (they offer what the wallet does)."""
    rows = conn.execute(
        "SELECT service_pubkey, scopes FROM nwc_connections"
        " WHERE service_pubkey IS NOT NULL AND revoked_at IS NULL"
    )
    return {str(pub): frozenset(str(scopes).split()) for pub, scopes in rows}


def revoked_keys(conn: sqlite3.Connection, since: int) -> dict[str, int]:
    """The wallet keys of connections revoked since `since`: when each was revoked."""
    rows = conn.execute(
        "SELECT service_pubkey, revoked_at FROM nwc_connections"
        " WHERE service_pubkey IS NOT NULL AND revoked_at >= ?",
        (since,),
    )
    return {str(pub): int(at) for pub, at in rows}


def keys_version(conn: sqlite3.Connection) -> tuple[int, int, int]:
    """Changes when a connection is made or revoked, or a spare taken or
    added: one cheap read a listener polls to learn of connections made (or
    revoked) by another process."""
    made, revoked = conn.execute(
        "SELECT COALESCE(MAX(id), 0), COUNT(revoked_at) FROM nwc_connections"
    ).fetchone()
    return int(made), int(revoked), spare_count(conn)


# -- answered requests ------------------------------------------------------------

CLAIMED = "claimed"  # a row exists, no response yet (in flight, or interrupted by a crash)


def claim(tx: sqlite3.Connection, event_id: str, connection_id: int, method: str) -> str | None:
    """Claim request `event_id` before running it. Returns None when this call
    claimed it, the stored response event JSON when it was answered before,
    or `CLAIMED` when it was claimed but never answered."""
    row = tx.execute("SELECT response FROM nwc_requests WHERE event_id = ?", (event_id,)).fetchone()
    if row is not None:
        return row[0] if row[0] is not None else CLAIMED
    tx.execute(
        "INSERT INTO nwc_requests (event_id, connection_id, method, created_at)"
        " VALUES (?, ?, ?, ?)",
        (event_id, connection_id, method, int(time.time())),
    )
    return None


def answer(tx: sqlite3.Connection, event_id: str, response_json: str) -> None:
    tx.execute("UPDATE nwc_requests SET response = ? WHERE event_id = ?", (response_json, event_id))


def response(conn: sqlite3.Connection, event_id: str) -> str | None:
    row = conn.execute(
        "SELECT response FROM nwc_requests WHERE event_id = ?", (event_id,)
    ).fetchone()
    return None if row is None else row[0]


def prune_requests(tx: sqlite3.Connection, before: int) -> int:
    """Forget requests older than `before`; relays drop requests that old anyway."""
    return tx.execute("DELETE FROM nwc_requests WHERE created_at < ?", (before,)).rowcount


def last_request_at(conn: sqlite3.Connection) -> int | None:
    row = conn.execute("SELECT MAX(created_at) FROM nwc_requests").fetchone()
    return row[0]


# -- invoices a connection made --------------------------------------------------


def made(tx: sqlite3.Connection, invoice_id: int, connection_id: int) -> None:
    """Record, in the invoice's own transaction, which connection minted it."""
    tx.execute(
        "INSERT INTO nwc_invoices (invoice_id, connection_id) VALUES (?, ?)",
        (invoice_id, connection_id),
    )


def made_by(conn: sqlite3.Connection, invoice_id: int, connection_id: int) -> bool:
    row = conn.execute(
        "SELECT 1 FROM nwc_invoices WHERE invoice_id = ? AND connection_id = ?",
        (invoice_id, connection_id),
    ).fetchone()
    return row is not None


# -- transactions (lookup_invoice, list_transactions) -------------------------------


def lookup(
    conn: sqlite3.Connection, types: Sequence[str], payment_hash: str | None, invoice: str | None
) -> StoredInvoice | None:
    marks = ", ".join("?" * len(types))
    if payment_hash is not None:
        where, arg = f"WHERE type IN ({marks}) AND payment_hash = ?", payment_hash
    else:
        where, arg = f"WHERE type IN ({marks}) AND payment_request = ?", invoice or ""
    return _select(
        conn, where + " ORDER BY type = 'incoming' DESC LIMIT 1", (*types, arg)
    ).fetchone()


def transactions(
    conn: sqlite3.Connection,
    types: Sequence[str],
    *,
    since: int | None,
    until: int | None,
    limit: int,
    offset: int,
    unpaid: bool,
) -> list[StoredInvoice]:
    """Newest first, by creation time, as NIP-47 lists them.

    `since` and `until` (inclusive) apply to when a transaction settled, and
    to its creation while it is unsettled (Alby Hub's go by its last update),
    so an app catching up `from` the last time it knows of also finds an
    invoice made before that time and paid after it.

    Read through two indexes (migration 21) rather than by sorting the
    table. With `since`, the rows fall in two runs, one after the other in
    the listing's order: those created since (`idx_invoices_created`, in
    order), then those created before and settled since, all older
    (`idx_invoices_settled`: few, the payments pending at `since`). A page
    reads the first run, and the second only when the first runs out."""
    where = [f"type IN ({', '.join('?' * len(types))})"]
    args: list[object] = list(types)
    if until is not None:
        # Settled at or before `until` means created at or before it too:
        # the second clause bounds the index range, the first decides.
        where += ["COALESCE(settled_at, created_at) <= ?", "created_at <= ?"]
        args += [until, until]
    if not unpaid:
        where.append("state = 'SETTLED'")
    if since is None:
        return _page(conn, "idx_invoices_created", where, args, limit, offset)
    made_since = [*where, "created_at >= ?", "COALESCE(settled_at, created_at) >= ?"]
    first = _page(conn, "idx_invoices_created", made_since, [*args, since, since], limit, offset)
    if len(first) == limit:
        return first
    if first or not offset:
        before = offset + len(first)  # the first run ended inside this page
    else:
        before = conn.execute(
            "SELECT COUNT(*) FROM invoices INDEXED BY idx_invoices_created WHERE "
            + " AND ".join(made_since),
            [*args, since, since],
        ).fetchone()[0]
    settled_since = [*where, "settled_at >= ?", "created_at < ?"]
    rest = _page(
        conn,
        "idx_invoices_settled",
        settled_since,
        [*args, since, since],
        limit - len(first),
        max(0, offset - before),
    )
    return first + rest


def _page(
    conn: sqlite3.Connection,
    index: str,
    where: list[str],
    args: list[object],
    limit: int,
    offset: int,
) -> list[StoredInvoice]:
    sql = (
        f"INDEXED BY {index} WHERE "
        + " AND ".join(where)
        + " ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"
    )
    return _select(conn, sql, [*args, limit, offset]).fetchall()


# -- notifications ----------------------------------------------------------------


def fan_out(tx: sqlite3.Connection, limit: int = FAN_OUT_BATCH) -> int:
    """Turn settlements and held (ACCEPTED) payments past the cursor into
    notification rows, one per live connection that may read incoming
    payments; returns events read."""
    rows = events.after(tx, cursors.get(tx, CURSOR), limit)
    if not rows:
        return 0
    # A connection hears of settlements from its creation on, not the history.
    readers = [
        (r["id"], r["created_at"])
        for r in tx.execute(
            "SELECT id, scopes, created_at FROM nwc_connections WHERE revoked_at IS NULL"
        )
        if "invoices:read" in r["scopes"].split()
    ]
    now = int(time.time())
    new = []
    for event in rows:
        kind = NOTIFY.get(event["type"])
        if kind is None or not readers:
            continue
        body = json.dumps({"type": kind, "invoice_id": event["invoice_id"]})
        new += [(cid, body, now) for cid, since in readers if event["created_at"] >= since]
    tx.executemany(
        "INSERT INTO nwc_notifications (connection_id, body, created_at) VALUES (?, ?, ?)", new
    )
    cursors.advance(tx, CURSOR, rows[-1]["seq"])
    return len(rows)


def pending(conn: sqlite3.Connection, limit: int = PENDING_BATCH) -> list[sqlite3.Row]:
    return conn.execute(
        "SELECT n.id, n.body, c.app_pubkey, c.service_pubkey"
        " FROM nwc_notifications n"
        " JOIN nwc_connections c ON c.id = n.connection_id AND c.revoked_at IS NULL"
        " ORDER BY n.id LIMIT ?",
        (limit,),
    ).fetchall()


def sent(tx: sqlite3.Connection, notification_id: int) -> None:
    tx.execute("DELETE FROM nwc_notifications WHERE id = ?", (notification_id,))


def backlog(conn: sqlite3.Connection) -> int:
    """Notifications not yet taken by a relay, plus outbox events not yet fanned out."""
    queued = conn.execute("SELECT COUNT(*) FROM nwc_notifications").fetchone()[0]
    marks = ", ".join("?" * len(NOTIFY))
    behind = conn.execute(
        f"SELECT COUNT(*) FROM events WHERE seq > ? AND type IN ({marks})",
        (cursors.get(conn, CURSOR), *NOTIFY),
    ).fetchone()[0]
    return int(queued) + int(behind)
