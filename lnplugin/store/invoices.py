"""Invoice rows: insert, fetch, and list newest-first without OFFSET scans.

Lists order by a dense integer position: `id` for the "all" list (rows are
never deleted, and SQLite assigns max(id)+1), and `list_seq` per type for the
incoming (settled) and outgoing lists. Because positions are dense, page N
starts at a computed position and every page is one index range scan, at any
depth. Only `q[created_at_*]` filters combined with `page` fall back to
skipping rows, within the filtered range.
"""

from __future__ import annotations

import json
import operator
import secrets
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from lnplugin.boostagram import parse_records, records_to_json
from lnplugin.store import addresses
from lnplugin.store.models import SELECT_COLUMNS, StoredInvoice, invoice_factory

ListName = Literal["all", "incoming", "outgoing"]
MAX_ITEMS = 100


def new_identifier() -> str:
    """An opaque, unguessable id that sorts by creation time.

    The millisecond-time prefix makes each insert land at the end of the
    unique index rather than on a random page: with random ids a bulk
    catch-up rewrote most of that index's pages on every commit.
    """
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_urlsafe(9)}"


def new_public_id() -> str:
    """The id in an invoice's public URLs (QR codes, checkout page): 128
    random bits after the same millisecond-time prefix as `new_identifier`,
    so inserts append to the unique index instead of landing on random pages.
    """
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(16)}"


def takes_address_webhook(row: StoredInvoice) -> bool:
    """Whether a stored payment whose records name an address gets that
    address's webhook (`record_fields`): a keysend without one of its own."""
    return bool(row.is_keysend) and row.webhook_url is None


def record_fields(
    records: dict[int, bytes],
    incoming: sqlite3.Connection | None = None,
    *,
    address_webhook: bool = False,
) -> dict[str, Any]:
    """The invoice columns derived from TLV records: raw JSON, boostagram, message.

    For an incoming payment (`incoming` is the transaction it is written in),
    also `lightning_address` when the records carry an address's keysend
    record: this is the one place keysends are attributed to an address. The
    key is left out when nothing matches, so an update never clears the
    address an LNURL invoice was minted for. Such a payment also gets the
    address's `webhook`, as an invoice minted through the address does, so
    the podcaster hears of a keysend boost where they hear of an LNURL one;
    but only when `address_webhook` says so (`takes_address_webhook`): a
    keysend, never in place of a webhook the invoice already has. An invoice
    with a BOLT11 was made for someone else, and whoever pays it chooses its
    records, so adding the address's record must not send its settlement to
    the address's webhook.
    """
    parsed = parse_records(records)
    out = {
        "custom_records": records_to_json(records),
        "boostagram": json.dumps(parsed.boostagram) if parsed.boostagram is not None else None,
        "keysend_message": parsed.keysend_message,
    }
    if incoming is not None and records:
        address = addresses.match_records(incoming, records)
        if address is not None:
            out["lightning_address"] = address.username
            if address.webhook_url and address_webhook:
                out["webhook_url"] = address.webhook_url
    return out


def insert(tx: sqlite3.Connection, fields: dict[str, Any]) -> int:
    """Insert an invoice row; `identifier` is generated when absent."""
    fields = {"identifier": new_identifier(), "public_id": new_public_id(), **fields}
    columns = ", ".join(fields)
    marks = ", ".join("?" * len(fields))
    cur = tx.execute(f"INSERT INTO invoices ({columns}) VALUES ({marks})", list(fields.values()))
    return int(cur.lastrowid or 0)


# Every column a stored row has, with the value SQLite gives it when an insert
# leaves it out (the schema's defaults, else NULL). `complete` uses it so a
# caller that inserted rows in bulk knows them without reading them back.
COLUMNS: dict[str, Any] = {
    "id": None,
    "identifier": None,
    "type": None,
    "payment_hash": None,
    "payment_request": "",
    "state": None,
    "amount_msat": None,
    "amount_received_msat": 0,
    "fee_msat": 0,
    "description": None,
    "description_hash": None,
    "comment": None,
    "metadata": None,
    "payer_name": None,
    "payer_email": None,
    "payer_pubkey": None,
    "created_at": None,
    "expiry": None,
    "expires_at": None,
    "settled_at": None,
    "preimage": None,
    "payment_secret": None,
    "destination": None,
    "is_keysend": 0,
    "custom_records": None,
    "boostagram": None,
    "keysend_message": None,
    "webhook_url": None,
    "list_seq": None,
    "source": "api",
    "settle_deadline": None,
    "cancel_reason": None,
    "hold": 0,
    "lightning_address": None,
    "public_id": None,
    "price_currency": None,
    "price_amount": None,
    "price_rate": None,
    "price_rate_source": None,
    "price_rate_at": None,
    "fiat_currency": None,
    "fiat_in_cents": None,
    "items": None,
    "viewed_at": None,
}


_INSERT_ALL = (
    f"INSERT INTO invoices ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
)
_ALL_VALUES = operator.itemgetter(*COLUMNS)


def complete(fields: dict[str, Any]) -> dict[str, Any]:
    """`fields` as the full row `by_id` would return after inserting them."""
    return {**COLUMNS, "identifier": new_identifier(), "public_id": new_public_id(), **fields}


def insert_many(tx: sqlite3.Connection, rows: list[dict[str, Any]]) -> None:
    """Insert complete rows (see `complete`) in one statement, assigning each its `id`.

    Ids are given explicitly, counting on from the current maximum: `tx`
    holds the write lock, so nothing else can take them, and the ids stay
    dense as the "all" list requires. The rows are updated in place.
    """
    if not rows:
        return
    top = tx.execute("SELECT MAX(id) FROM invoices").fetchone()[0] or 0
    for offset, row in enumerate(rows, 1):
        row["id"] = top + offset
    tx.executemany(_INSERT_ALL, map(_ALL_VALUES, rows))


def update(tx: sqlite3.Connection, invoice_id: int, fields: dict[str, Any]) -> None:
    sets = ", ".join(f"{k} = ?" for k in fields)
    tx.execute(f"UPDATE invoices SET {sets} WHERE id = ?", [*fields.values(), invoice_id])


def note_cancel_reason(tx: sqlite3.Connection, payment_hash: str, reason: str) -> None:
    """Keep why lnplugin is about to cancel an open or ACCEPTED invoice on the
    node, before it asks: a process that dies after the node canceled and
    before CANCELED is stored leaves the reason to the next, which stores
    lnd's (or the dev node's) CANCELED with it. Readers show `cancel_reason`
    only on a CANCELED invoice."""
    tx.execute(
        "UPDATE invoices SET cancel_reason = ? WHERE payment_hash = ? AND type = 'incoming'"
        " AND state IN ('OPEN', 'ACCEPTED')",
        (reason, payment_hash),
    )


def drop_cancel_reason(tx: sqlite3.Connection, payment_hash: str) -> None:
    """Forget `note_cancel_reason`'s reason: the node refused that cancel."""
    tx.execute(
        "UPDATE invoices SET cancel_reason = NULL WHERE payment_hash = ? AND type = 'incoming'"
        " AND state != 'CANCELED'",
        (payment_hash,),
    )


def next_list_seq(tx: sqlite3.Connection, type_: str) -> int:
    row = tx.execute("SELECT MAX(list_seq) FROM invoices WHERE type = ?", (type_,)).fetchone()
    return (row[0] or 0) + 1


_SELECT = f"SELECT {SELECT_COLUMNS} FROM invoices"


def _select(conn: sqlite3.Connection, where: str, args: Sequence[Any]) -> sqlite3.Cursor:
    """`SELECT <every column> FROM invoices <where>`, yielding `StoredInvoice`s."""
    cur = conn.cursor()
    cur.row_factory = invoice_factory  # set before execute: it applies from the first row
    return cur.execute(f"{_SELECT} {where}", args)


def by_id(conn: sqlite3.Connection, invoice_id: int) -> StoredInvoice | None:
    return _select(conn, "WHERE id = ?", (invoice_id,)).fetchone()


def by_hash(
    conn: sqlite3.Connection, payment_hash: str, type_: str | None = None
) -> StoredInvoice | None:
    """The invoice for a payment hash; incoming wins when both directions exist."""
    if type_ is not None:
        where = "WHERE type = ? AND payment_hash = ?"
        return _select(conn, where, (type_, payment_hash)).fetchone()
    # `type IN (...)` lets SQLite use the (type, payment_hash) index.
    return _select(
        conn,
        "WHERE type IN ('incoming', 'outgoing') AND payment_hash = ? "
        "ORDER BY type = 'incoming' DESC LIMIT 1",
        (payment_hash,),
    ).fetchone()


def by_public_id(conn: sqlite3.Connection, public_id: str) -> StoredInvoice | None:
    """An incoming invoice by the id in its public URLs (outgoing payments
    have no public page)."""
    return _select(conn, "WHERE public_id = ? AND type = 'incoming'", (public_id,)).fetchone()


def mark_viewed(tx: sqlite3.Connection, invoice_id: int, now: int) -> StoredInvoice | None:
    """Record the first opening of the invoice's checkout page: the updated
    row, or None when it was opened before.

    One conditional UPDATE decides, under the write lock, so of two openings
    at the same moment exactly one gets the row (and writes the event).
    """
    cur = tx.execute(
        "UPDATE invoices SET viewed_at = ? WHERE id = ? AND viewed_at IS NULL", (now, invoice_id)
    )
    return by_id(tx, invoice_id) if cur.rowcount else None


def count_by_state(conn: sqlite3.Connection) -> dict[str, int]:
    """How many invoices are in each stored state (for `lnplugin status`, which
    reports on a database whose server is not running)."""
    return dict(conn.execute("SELECT state, COUNT(*) FROM invoices GROUP BY state").fetchall())


def existing_hashes(conn: sqlite3.Connection, payment_hashes: list[str], type_: str) -> set[str]:
    """Which of `payment_hashes` already have a row of `type_`."""
    found: set[str] = set()
    for start in range(0, len(payment_hashes), 500):  # under SQLite's variable limit
        chunk = payment_hashes[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        found.update(
            row[0]
            for row in conn.execute(
                f"SELECT payment_hash FROM invoices WHERE type = ? AND payment_hash IN ({marks})",
                (type_, *chunk),
            )
        )
    return found


@dataclass(frozen=True, slots=True)
class ListQuery:
    name: ListName = "all"
    created_at_gt: int | None = None
    created_at_lt: int | None = None
    since: str | None = None  # identifier: return rows newer than it
    before: str | None = None  # identifier: return rows older than it
    page: int = 1
    items: int = 25
    lightning_address: str | None = None  # only invoices minted for / attributed to it
    boostagram: bool | None = None  # True: only with a boostagram; False: only without
    feed_guid: str | None = None  # the boostagram's podcast guid (bLIP-10 `guid`)
    feed_id: int | None = None  # the boostagram's PodcastIndex feed id (bLIP-10 `feedID`)
    item_guid: str | None = None  # the boostagram's episode guid (bLIP-10 `episode_guid`)
    action: str | None = None  # the boostagram's action: boost, stream, auto, ...


class CursorNotFound(LookupError):
    """A q[since]/q[before] identifier that is not in the requested list."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


_LIST_SQL = {
    # (position column, extra predicate)
    "all": ("id", ""),
    "incoming": ("list_seq", "type = 'incoming' AND list_seq IS NOT NULL"),
    "outgoing": ("list_seq", "type = 'outgoing' AND list_seq IS NOT NULL"),
}


def _position(conn: sqlite3.Connection, query: ListQuery, identifier: str, field: str) -> int:
    column, predicate = _LIST_SQL[query.name]
    where = f" AND {predicate}" if predicate else ""
    row = conn.execute(
        f"SELECT {column} FROM invoices WHERE identifier = ?{where}", (identifier,)
    ).fetchone()
    if row is None or row[0] is None:
        raise CursorNotFound(field)
    return int(row[0])


def list_page(conn: sqlite3.Connection, query: ListQuery) -> list[StoredInvoice]:
    """One page of a list, newest first."""
    column, predicate = _LIST_SQL[query.name]
    clauses = [predicate] if predicate else []
    args: list[Any] = []
    lower: int | None = None  # exclusive
    upper: int | None = None  # exclusive
    if query.before is not None:
        upper = _position(conn, query, query.before, "q[before]")
    if query.since is not None:
        lower = _position(conn, query, query.since, "q[since]")
    filtered = (
        query.created_at_gt is not None
        or query.created_at_lt is not None
        or query.lightning_address is not None
        or query.boostagram is not None
        or query.feed_guid is not None
        or query.feed_id is not None
        or query.item_guid is not None
        or query.action is not None
    )
    if query.lightning_address is not None:
        clauses.append("lightning_address = ?")
        args.append(query.lightning_address)
    if query.boostagram is not None:
        clauses.append(f"boostagram IS {'NOT ' if query.boostagram else ''}NULL")
    # The expressions match the indexes of migration 8 word for word, so SQLite uses them.
    for value, path in (
        (query.feed_guid, "$.guid"),
        (query.item_guid, "$.episode_guid"),
        (query.action, "$.action"),
    ):
        if value is not None:
            clauses.append(f"boostagram IS NOT NULL AND json_extract(boostagram, '{path}') = ?")
            args.append(value)
    if query.feed_id is not None:
        # Always stored as a number: parsing makes a digit string one (Fountain
        # sends `"920666"`), so one integer comparison finds both, by the index.
        clauses.append("boostagram IS NOT NULL AND json_extract(boostagram, '$.feedID') = ?")
        args.append(query.feed_id)
    if query.created_at_gt is not None:
        clauses.append("created_at > ?")
        args.append(query.created_at_gt)
    if query.created_at_lt is not None:
        clauses.append("created_at < ?")
        args.append(query.created_at_lt)
    skip = (query.page - 1) * query.items

    if lower is not None and upper is None:
        # Walk forward from the cursor: the rows just newer than it, shown newest first.
        clauses.append(f"{column} > ?")
        args.append(lower if filtered else lower + skip)
        sql = f"WHERE {' AND '.join(clauses)} ORDER BY {column} ASC LIMIT ?"
        args.append(query.items)
        if filtered and skip:
            sql += " OFFSET ?"
            args.append(skip)
        return list(reversed(_select(conn, sql, args).fetchall()))

    if lower is not None:
        clauses.append(f"{column} > ?")
        args.append(lower)
    if not filtered:
        top = upper if upper is not None else _next_position(conn, query.name)
        upper = top - skip
        skip = 0
    if upper is not None:
        clauses.append(f"{column} < ?")
        args.append(upper)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    sql = f"{where} ORDER BY {column} DESC LIMIT ?"
    args.append(query.items)
    if skip:
        sql += " OFFSET ?"
        args.append(skip)
    return _select(conn, sql, args).fetchall()


def _next_position(conn: sqlite3.Connection, name: ListName) -> int:
    if name == "all":
        return (conn.execute("SELECT MAX(id) FROM invoices").fetchone()[0] or 0) + 1
    return next_list_seq(conn, name)


# (`expires_at`, `id`) before every row: where a sweep's first batch starts.
BEFORE_ANY = (-(2**63), 0)


def open_expired(
    conn: sqlite3.Connection,
    now: int,
    limit: int = 500,
    after: tuple[int, int] = BEFORE_ANY,
) -> list[StoredInvoice]:
    """Open incoming invoices whose expiry has passed (for the expiry sweep),
    the longest expired first. Ties go by `id`, so two reads of the same
    rows give the same batch (the sweep reads a batch, asks the node about
    it, then reads it again in the transaction that marks it). `after`
    (`expires_at`, `id`) of the last row of the previous batch: the next
    batch, so rows a batch left OPEN are not read again in the same sweep."""
    return _select(
        conn,
        "WHERE state = 'OPEN' AND expires_at <= ? AND (expires_at, id) > (?, ?) "
        "ORDER BY expires_at, id LIMIT ?",
        (now, *after, limit),
    ).fetchall()


def open_unexpired(conn: sqlite3.Connection, now: int, limit: int = 1000) -> list[StoredInvoice]:
    return _select(
        conn, "WHERE state = 'OPEN' AND expires_at > ? ORDER BY expires_at LIMIT ?", (now, limit)
    ).fetchall()


def export_batches(
    conn: sqlite3.Connection,
    *,
    type_: str | None = None,
    since: int | None = None,
    batch: int = 500,
) -> Iterator[list[StoredInvoice]]:
    """Every invoice in insertion order (`id`), `batch` rows per statement.

    For `lnplugin export` and `GET /invoices/export`, which stream rows to a
    reader that may be slow. Each batch is its own short read that resumes
    after the last `id` seen (a keyset walk), rather than one statement held
    open for the whole export: an open read would pin a WAL snapshot and keep
    the checkpointer from recycling the log for as long as the client reads.
    Rows are never deleted, so each row is seen exactly once; a row changed
    during the export shows its state at the moment its batch was read.
    """
    clauses = ["id > ?"]
    args: list[Any] = []
    if type_ is not None:
        # `+type`: not by the (type, list_seq) index, which SQLite would pick
        # and which makes every batch sort all the remaining rows of that
        # type by id (an export got slower with the square of the store).
        # Walking the primary key from the last id reads each row once.
        clauses.append("+type = ?")
        args.append(type_)
    if since is not None:
        clauses.append("created_at >= ?")
        args.append(since)
    sql = f"WHERE {' AND '.join(clauses)} ORDER BY id LIMIT ?"
    last = 0
    while True:
        rows = _select(conn, sql, [last, *args, batch]).fetchall()
        if not rows:
            return
        yield rows
        last = rows[-1].id


def accepted(conn: sqlite3.Connection, limit: int = 1000) -> list[StoredInvoice]:
    """Hold invoices waiting to be settled or canceled, nearest deadline first:
    the sweep re-checks them on the node and the safety cancel watches them."""
    return _select(
        conn,
        "WHERE state = 'ACCEPTED' AND type = 'incoming' ORDER BY settle_deadline LIMIT ?",
        (limit,),
    ).fetchall()
