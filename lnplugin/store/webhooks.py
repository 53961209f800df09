"""Webhook endpoints, delivery rows and the service-wide signing secret.

A delivery row is the unit of retry: one per (target, event), created by the
fan-out in the same transaction that advances the `webhooks` cursor, so an
event is turned into deliveries exactly once even across crashes. The worker
only ever updates rows afterwards; nothing here sends anything.
"""

from __future__ import annotations

import base64
import json
import secrets
import sqlite3
import time
from collections.abc import Iterable
from typing import Any

from lnplugin.alby import iso
from lnplugin.store import cursors, events

CURSOR = "webhooks"  # outbox position already fanned out into delivery rows
INVOICE_TARGET = ""  # endpoint_id of deliveries to an invoice's own `webhook` URL
SECRET_PREFIX = "whsec_"
TEST_EVENT = "webhook.test"  # sent by POST /webhook_endpoints/<id>/test; not in the outbox
ROTATION_GRACE = 24 * 3600  # seconds the previous service secret still signs
FAN_OUT_BATCH = 500  # outbox events read per fan-out transaction


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


# -- endpoints ------------------------------------------------------------------


def create_endpoint(
    tx: sqlite3.Connection, url: str, description: str | None, filter_types: list[str]
) -> sqlite3.Row:
    endpoint_id = "ep_" + secrets.token_hex(12)
    tx.execute(
        "INSERT INTO webhook_endpoints (id, url, description, filter_types, secret, created_at,"
        " after_seq) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            endpoint_id,
            url,
            description,
            json.dumps(filter_types),
            new_secret(),
            int(time.time()),
            events.last_seq(tx),
        ),
    )
    row = endpoint(tx, endpoint_id)
    assert row is not None
    return row


def endpoint(conn: sqlite3.Connection, endpoint_id: str) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM webhook_endpoints WHERE id = ?", (endpoint_id,)).fetchone()


def endpoints(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    return conn.execute("SELECT * FROM webhook_endpoints ORDER BY created_at, id").fetchall()


def delete_endpoint(tx: sqlite3.Connection, endpoint_id: str) -> bool:
    """Delete the endpoint and its deliveries: nothing is sent to it afterwards."""
    tx.execute("DELETE FROM webhook_deliveries WHERE endpoint_id = ?", (endpoint_id,))
    return tx.execute("DELETE FROM webhook_endpoints WHERE id = ?", (endpoint_id,)).rowcount > 0


def filter_types(row: sqlite3.Row) -> list[str]:
    return list(json.loads(row["filter_types"]))


def wanted_types(conn: sqlite3.Connection) -> frozenset[str]:
    """What the delivery worker must be woken for (`Store.on_commit` types):
    the event types some endpoint takes, and every event of an invoice with
    its own webhook URL."""
    wanted = {events.HAS_INVOICE_WEBHOOK}
    for (types,) in conn.execute("SELECT DISTINCT filter_types FROM webhook_endpoints"):
        wanted.update(json.loads(types))
    return frozenset(wanted)


# -- fan-out ----------------------------------------------------------------------


def fan_out(tx: sqlite3.Connection, limit: int = FAN_OUT_BATCH) -> int:
    """Turn outbox events past the cursor into delivery rows; returns events read.

    Runs inside one write transaction with the cursor advance, so a crash
    either keeps both or neither, and `INSERT OR IGNORE` on the unique
    (endpoint, event) index makes even a replay harmless.
    """
    start = cursors.get(tx, CURSOR)
    rows = events.after(tx, start, limit)
    if not rows:
        return 0
    targets = [
        (ep["id"], ep["url"], set(filter_types(ep)), ep["after_seq"]) for ep in endpoints(tx)
    ]
    hooks = _invoice_hooks(tx, {row["invoice_id"] for row in rows})
    new: list[tuple[str, str, sqlite3.Row]] = []
    for event in rows:
        for endpoint_id, url, types, after_seq in targets:
            if event["seq"] > after_seq and event["type"] in types:
                new.append((endpoint_id, url, event))
        hook = hooks.get(event["invoice_id"])
        if hook:
            new.append((INVOICE_TARGET, hook, event))
    _insert(tx, new, time.time())
    cursors.advance(tx, CURSOR, rows[-1]["seq"])
    return len(rows)


def _invoice_hooks(tx: sqlite3.Connection, invoice_ids: Iterable[int]) -> dict[int, str]:
    ids = [i for i in invoice_ids if i is not None]
    if not ids:
        return {}
    marks = ", ".join("?" * len(ids))
    return {
        row[0]: row[1]
        for row in tx.execute(
            f"SELECT id, webhook_url FROM invoices WHERE id IN ({marks})"
            " AND webhook_url IS NOT NULL",
            ids,
        )
    }


def _insert(
    tx: sqlite3.Connection, deliveries: list[tuple[str, str, sqlite3.Row]], now: float
) -> None:
    """One delivery row per (endpoint id, url, event), in one statement."""
    tx.executemany(
        "INSERT OR IGNORE INTO webhook_deliveries (endpoint_id, url, event_seq, event_id,"
        " event_type, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (endpoint_id, url, event["seq"], event["event_id"], event["type"], now, now)
            for endpoint_id, url, event in deliveries
        ],
    )


def add_test_delivery(
    tx: sqlite3.Connection, ep: sqlite3.Row, event_id: str, body: str
) -> sqlite3.Row:
    """Queue a test event to `ep`; returns the new delivery row, which the API
    answers with (RETURNING saves a second lookup that could only miss)."""
    now = time.time()
    row: sqlite3.Row = tx.execute(
        "INSERT INTO webhook_deliveries (endpoint_id, url, event_id, event_type, payload,"
        " next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING *",
        (ep["id"], ep["url"], event_id, TEST_EVENT, body, now, now),
    ).fetchone()
    return row


def redeliver(tx: sqlite3.Connection, ep: sqlite3.Row, event_id: str) -> sqlite3.Row | None:
    """Schedule `event_id` to `ep` now, with a fresh retry budget.

    Works for dead-lettered, delivered and never-fanned-out events alike;
    None when no such event exists.
    """
    now = time.time()
    if not _reschedule(tx, ep["id"], event_id, now):
        event = events.by_event_id(tx, event_id)
        if event is None:
            return None
        _insert(tx, [(ep["id"], ep["url"], event)], now)
    return delivery(tx, ep["id"], event_id)


def redeliver_invoice(tx: sqlite3.Connection, invoice_id: int, event_id: str) -> sqlite3.Row | None:
    """Schedule the delivery of `event_id` to invoice `invoice_id`'s own
    `webhook` URL now, with a fresh retry budget, as `redeliver` does.

    Dead-lettered and delivered rows alike; None when `event_id` is not an
    event of this invoice or has no delivery to its URL. Unlike an endpoint's,
    nothing is created here: the fan-out already gives every event of an
    invoice with a URL its delivery (the URL was given before the first event).
    """
    event = events.by_event_id(tx, event_id)
    if event is None or event["invoice_id"] != invoice_id:
        return None
    if not _reschedule(tx, INVOICE_TARGET, event_id, time.time()):
        return None
    return delivery(tx, INVOICE_TARGET, event_id)


def _reschedule(tx: sqlite3.Connection, endpoint_id: str, event_id: str, now: float) -> bool:
    """Make an existing delivery pending, due `now`, with its retry budget reset.

    Bumps `generation`, so an attempt already on the wire (dispatched with the
    old one) cannot overwrite this when it finishes; see `record_attempt`.
    """
    cur = tx.execute(
        "UPDATE webhook_deliveries SET status = 'pending', retry_index = 0, next_attempt_at = ?,"
        " generation = generation + 1 WHERE endpoint_id = ? AND event_id = ?",
        (now, endpoint_id, event_id),
    )
    return cur.rowcount > 0


# -- the worker's view ------------------------------------------------------------


def target(row: sqlite3.Row) -> tuple[str, str]:
    """Who a delivery goes to, for the worker's limit per target: its
    endpoint, or for an invoice's own `webhook`, that URL."""
    if row["endpoint_id"] == INVOICE_TARGET:
        return (INVOICE_TARGET, row["url"])
    return (row["endpoint_id"], "")


def _not_in(
    exclude: Iterable[int], busy_targets: Iterable[tuple[str, str]], alias: str
) -> tuple[str, list[Any]]:
    """SQL (and its parameters) leaving out the rows `exclude` and every row
    of the targets in `busy_targets` (see `target`)."""
    skip = list(exclude)
    endpoint_ids = [ep for ep, url in busy_targets if ep != INVOICE_TARGET]
    urls = [url for ep, url in busy_targets if ep == INVOICE_TARGET]
    sql, args = "", [*skip, *endpoint_ids, *urls]
    if skip:
        sql += f" AND {alias}id NOT IN ({', '.join('?' * len(skip))})"
    if endpoint_ids:
        sql += f" AND {alias}endpoint_id NOT IN ({', '.join('?' * len(endpoint_ids))})"
    if urls:
        sql += (
            f" AND NOT ({alias}endpoint_id = '{INVOICE_TARGET}'"
            f" AND {alias}url IN ({', '.join('?' * len(urls))}))"
        )
    return sql, args


def due(
    conn: sqlite3.Connection,
    now: float,
    exclude: Iterable[int],
    limit: int,
    busy_targets: Iterable[tuple[str, str]] = (),
) -> list[sqlite3.Row]:
    """Pending deliveries whose time has come, oldest first, minus those in
    flight and those to targets (`target`) that have all the senders they may."""
    not_in, args = _not_in(exclude, busy_targets, "d.")
    return conn.execute(
        "SELECT d.*, COALESCE(d.payload, e.payload) AS body, ep.secret AS endpoint_secret,"
        f" {events.PAGE_ID}"
        " FROM webhook_deliveries d"
        " LEFT JOIN events e ON e.seq = d.event_seq"
        " LEFT JOIN invoices i ON i.id = e.invoice_id"
        " LEFT JOIN webhook_endpoints ep ON ep.id = d.endpoint_id"
        f" WHERE d.status = 'pending' AND d.next_attempt_at <= ?{not_in}"
        " ORDER BY d.next_attempt_at, d.id LIMIT ?",
        (now, *args, limit),
    ).fetchall()


def next_due_at(
    conn: sqlite3.Connection,
    exclude: Iterable[int] = (),
    busy_targets: Iterable[tuple[str, str]] = (),
) -> float | None:
    """When the earliest pending delivery not already in flight, nor to a
    target that has all the senders it may, is due."""
    not_in, args = _not_in(exclude, busy_targets, "")
    row = conn.execute(
        "SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE status = 'pending'" + not_in,
        args,
    ).fetchone()
    return row[0]


def record_attempt(
    tx: sqlite3.Connection,
    delivery_id: int,
    generation: int,
    *,
    ok: bool,
    status_code: int | None,
    error: str | None,
    retry_in: float | None,
) -> bool:
    """Record one attempt of the row as dispatched at `generation`. `retry_in`
    None after a failure means dead-letter.

    If a redeliver was accepted while this attempt was in flight, the
    generation has moved on. The receiver may have handled this attempt
    before the redeliver was asked for, and the 202 promised one more send,
    so this outcome must not close the row (nor dead-letter it). Only the
    attempt's own facts are written then (the count, its answer,
    `delivered_at` on success); the redeliver's state stands: pending, due
    now, fresh budget. The worker keeps a row out of `due` until this has
    committed, so the extra send comes after this one, never alongside.
    Returns False then (and when the row was deleted meanwhile).
    """
    now = time.time()
    if ok:
        status, next_at = "delivered", None
    elif retry_in is None:
        status, next_at = "failed", None
    else:
        status, next_at = "pending", now + retry_in
    decided = tx.execute(
        "UPDATE webhook_deliveries SET status = ?, next_attempt_at = ?,"
        " retry_index = CASE WHEN ? THEN retry_index ELSE retry_index + 1 END"
        " WHERE id = ? AND generation = ?",
        (status, next_at, ok, delivery_id, generation),
    )
    tx.execute(
        "UPDATE webhook_deliveries SET attempts = attempts + 1, last_status_code = ?,"
        " last_error = ?, last_attempt_at = ?,"
        " delivered_at = CASE WHEN ? THEN ? ELSE delivered_at END WHERE id = ?",
        (status_code, error, now, ok, now, delivery_id),
    )
    return decided.rowcount > 0


# -- listing ------------------------------------------------------------------------


def delivery(conn: sqlite3.Connection, endpoint_id: str, event_id: str) -> sqlite3.Row | None:
    return conn.execute(
        "SELECT * FROM webhook_deliveries WHERE endpoint_id = ? AND event_id = ?",
        (endpoint_id, event_id),
    ).fetchone()


def deliveries(conn: sqlite3.Connection, endpoint_id: str, limit: int = 100) -> list[sqlite3.Row]:
    return conn.execute(
        "SELECT * FROM webhook_deliveries WHERE endpoint_id = ? ORDER BY id DESC LIMIT ?",
        (endpoint_id, limit),
    ).fetchall()


def invoice_deliveries(
    conn: sqlite3.Connection, invoice_id: int, limit: int = 100
) -> list[sqlite3.Row]:
    """Deliveries to one invoice's own `webhook` URL (endpoint_id ''), newest first."""
    return conn.execute(
        "SELECT d.* FROM events e JOIN webhook_deliveries d"
        " ON d.endpoint_id = ? AND d.event_id = e.event_id"
        " WHERE e.invoice_id = ? ORDER BY d.id DESC LIMIT ?",
        (INVOICE_TARGET, invoice_id, limit),
    ).fetchall()


def delivery_json(row: sqlite3.Row) -> dict[str, Any]:
    def ts(value: float | None) -> str | None:
        return iso(int(value)) if value is not None else None

    return {
        "event_id": row["event_id"],
        "type": row["event_type"],
        "status": row["status"],
        "attempts": row["attempts"],
        "last_status_code": row["last_status_code"],
        "last_error": row["last_error"],
        "last_attempt_at": ts(row["last_attempt_at"]),
        "next_attempt_at": ts(row["next_attempt_at"]) if row["status"] == "pending" else None,
        "delivered_at": ts(row["delivered_at"]),
        "created_at": ts(row["created_at"]),
    }


# -- the service-wide secret (per-invoice `webhook` URLs) ----------------------------


def service_secrets(tx: sqlite3.Connection, now: int | None = None) -> list[str]:
    """The secrets to sign invoice webhooks with: current first, then the
    previous one during the grace period after a rotation. Creates the
    current secret on first use."""
    now = int(time.time()) if now is None else now
    rows = {r["name"]: r for r in tx.execute("SELECT * FROM webhook_keys")}
    if "current" not in rows:
        secret = new_secret()
        tx.execute(
            "INSERT OR IGNORE INTO webhook_keys (name, secret, created_at)"
            " VALUES ('current', ?, ?)",
            (secret, now),
        )
        return service_secrets(tx, now)
    out = [rows["current"]["secret"]]
    previous = rows.get("previous")
    if previous is not None and now - rows["current"]["created_at"] < ROTATION_GRACE:
        out.append(previous["secret"])
    return out


def rotate_service_secret(tx: sqlite3.Connection) -> str:
    """Make a new current secret; the old one keeps signing for ROTATION_GRACE."""
    now = int(time.time())
    current = service_secrets(tx, now)[0]
    secret = new_secret()
    tx.execute(
        "INSERT OR REPLACE INTO webhook_keys (name, secret, created_at) VALUES ('previous', ?, ?)",
        (current, now),
    )
    tx.execute(
        "INSERT OR REPLACE INTO webhook_keys (name, secret, created_at) VALUES ('current', ?, ?)",
        (secret, now),
    )
    return secret
