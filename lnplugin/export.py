"""Getting invoices out as CSV or JSON Lines: `lnplugin export` and `GET /invoices/export`.

Podcasters reconcile boosts in a spreadsheet (Helipad users export CSV), so
each bLIP-10 field a podcaster filters or sums on (`BOOST_FIELDS` and
`LATER_BOOST_FIELDS`: the action, who sent it and with what app, the show
and episode, the amounts, the message) gets a column of its own instead of
one JSON blob a spreadsheet cannot filter on. Both formats carry
the same record with the same keys in the same order: JSON Lines keeps the
types (integers stay integers, absent is `null`), CSV writes the same values
as text (absent is an empty cell). The full boostagram and the raw TLV
records are kept as JSON text too, so nothing a sender sent is lost to the
fixed columns.

The preimage is left out: it is the payer's proof of payment, and an export
is a file that gets mailed around and opened in other programs.

The command line and the HTTP route both call `stream`, so the two cannot
drift apart.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator
from typing import Any, Literal

from lnplugin import compactjson
from lnplugin.alby import effective_state, iso
from lnplugin.store import invoices
from lnplugin.store.models import StoredInvoice

Format = Literal["csv", "jsonl"]
FORMATS: tuple[Format, ...] = ("csv", "jsonl")
TYPES = ("incoming", "outgoing")
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}

# bLIP-10 fields that get a column each, as `boost_<field>` (docs/protocols.md).
BOOST_FIELDS: tuple[str, ...] = (
    "action",
    "app_name",
    "sender_name",
    "message",
    "podcast",
    "feedID",
    "guid",
    "url",
    "episode",
    "itemID",
    "episode_guid",
    "ts",
    "time",
    "value_msat",
    "value_msat_total",
    "name",
    "boost_link",
    "reply_address",
)
# Added later, so their columns come after every other (`COLUMNS`): what a
# podcast app needs to answer a boost (reply_custom_*), tell senders apart
# (sender_id), and credit a value time split (remote_*), as Helipad exports them.
LATER_BOOST_FIELDS: tuple[str, ...] = (
    "app_version",
    "sender_id",
    "reply_custom_key",
    "reply_custom_value",
    "remote_feed_guid",
    "remote_item_guid",
)

COLUMNS: tuple[str, ...] = (
    "identifier",
    "type",
    "state",
    "payment_hash",
    "amount_msat",
    "amount_received_msat",
    "fee_msat",
    "created_at",
    "settled_at",
    "expires_at",
    "description",
    "comment",
    "payer_name",
    "payer_email",
    "payer_pubkey",
    "metadata",
    "is_keysend",
    "keysend_message",
    *(f"boost_{name}" for name in BOOST_FIELDS),
    "boostagram",
    "custom_records",
    "destination",
    # Added later, so appended: columns are never reordered (spreadsheets
    # and scripts read them by position).
    "viewed_at",
    "price_currency",
    "price_amount",
    "price_rate",
    "price_rate_source",
    "price_rate_at",
    "fiat_currency",
    "fiat_in_cents",
    "items",
    "hold",
    "settle_deadline",
    "cancel_reason",
    "lightning_address",
    *(f"boost_{name}" for name in LATER_BOOST_FIELDS),
)

# Cells a spreadsheet would run as a formula (OWASP's list for CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# A lone surrogate: what a sender's `"\ud800"` in a boostagram string decodes
# to. No UTF-8 holds it, so a CSV chunk with one could not be written at all
# (JSON Lines escape it: `compactjson`).
_SURROGATE = re.compile("[\ud800-\udfff]")


class SinceError(ValueError):
    """`--since` / `since` is neither unix seconds nor an ISO 8601 date or time."""


def parse_since(text: str) -> int:
    """Unix seconds, or an ISO 8601 date (`2026-01-31`, midnight UTC) or date
    and time (`2026-01-31T12:00:00Z`; no zone means UTC)."""
    text = text.strip()
    if text.isascii() and text.isdigit():
        if len(text) > 12:
            raise SinceError("is too far in the future")
        return int(text)
    try:
        moment = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise SinceError(
            "must be unix seconds or an ISO 8601 date or time (2026-01-31 or 2026-01-31T12:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.UTC)
    return int(moment.timestamp())


def record(inv: StoredInvoice, now: int) -> dict[str, Any]:
    """One exported invoice: a flat dict with the keys of `COLUMNS`, in that order."""
    boost = json.loads(inv.boostagram) if inv.boostagram else None
    boost_fields = boost if isinstance(boost, dict) else {}
    settled = inv.state == "SETTLED"
    out: dict[str, Any] = {
        "identifier": inv.identifier,
        "type": inv.type,
        "state": effective_state(inv.state, inv.expires_at, now),
        "payment_hash": inv.payment_hash,
        "amount_msat": inv.amount_msat or 0,
        "amount_received_msat": inv.amount_received_msat or 0,
        "fee_msat": inv.fee_msat or 0,
        "created_at": iso(inv.created_at),
        "settled_at": iso(inv.settled_at) if settled else None,
        "expires_at": iso(inv.expires_at),
        "description": inv.description,
        "comment": inv.comment,
        "payer_name": inv.payer_name,
        "payer_email": inv.payer_email,
        "payer_pubkey": inv.payer_pubkey,
        "metadata": inv.metadata,
        "is_keysend": bool(inv.is_keysend),
        "keysend_message": inv.keysend_message,
    }
    for name in BOOST_FIELDS:
        out[f"boost_{name}"] = boost_fields.get(name)
    # As people read it: an emoji as itself, not as the `\\ud83d\\ude80`
    # escapes it is stored with (a spreadsheet shows those as they are).
    # The same JSON value; JSON Lines escapes what it must.
    out["boostagram"] = (
        None if boost is None else json.dumps(boost, ensure_ascii=False, separators=(",", ":"))
    )
    out["custom_records"] = inv.custom_records
    out["destination"] = inv.destination
    out.update(
        viewed_at=iso(inv.viewed_at),
        price_currency=inv.price_currency,
        price_amount=inv.price_amount,  # minor units of price_currency
        price_rate=inv.price_rate,  # decimal text, kept exact
        price_rate_source=inv.price_rate_source,
        price_rate_at=iso(inv.price_rate_at),
        fiat_currency=inv.fiat_currency,
        fiat_in_cents=inv.fiat_in_cents,
        items=inv.items,  # JSON text, as metadata
        hold=bool(inv.hold),
        settle_deadline=inv.settle_deadline,
        cancel_reason=inv.cancel_reason if inv.state == "CANCELED" else None,
        lightning_address=inv.lightning_address,
    )
    for name in LATER_BOOST_FIELDS:
        out[f"boost_{name}"] = boost_fields.get(name)
    return out


def cell(value: Any, spreadsheet_safe: bool = False) -> str:
    """A record value as CSV text: empty for absent, `true`/`false`, JSON for
    anything that is not a string or number (a sender may nest objects in a
    boostagram field).

    `spreadsheet_safe` puts a `'` before text a spreadsheet would evaluate as
    a formula: boostagram messages are written by strangers. It changes the
    data, so it is a choice, not the default.
    """
    if value is None:
        text = ""
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | str):
        text = str(value)
    else:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if spreadsheet_safe and text.startswith(_FORMULA_START):
        text = "'" + text
    return text


def _csv_chunks(batches: Iterable[list[StoredInvoice]], safe: bool) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)  # RFC 4180: quotes doubled, CRLF line ends
    writer.writerow(COLUMNS)
    for rows in batches:
        now = int(time.time())
        for inv in rows:
            writer.writerow([cell(v, safe) for v in record(inv, now).values()])
        yield _SURROGATE.sub("\ufffd", buffer.getvalue())  # text has no escape for one
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()  # the header alone, when there was no row


def _jsonl_chunks(batches: Iterable[list[StoredInvoice]]) -> Iterator[str]:
    for rows in batches:
        now = int(time.time())
        # compactjson escapes what UTF-8 cannot hold (a lone surrogate) as JSON does.
        yield "".join(compactjson.dumps(record(inv, now)) + "\n" for inv in rows)


def stream(
    conn: sqlite3.Connection,
    fmt: Format,
    *,
    type_: str | None = None,
    since: int | None = None,
    spreadsheet_safe: bool = False,
) -> Iterator[str]:
    """The export as text chunks, one per batch of rows read from the store."""
    batches = invoices.export_batches(conn, type_=type_, since=since)
    if fmt == "csv":
        return (chunk for chunk in _csv_chunks(batches, spreadsheet_safe) if chunk)
    return _jsonl_chunks(batches)
