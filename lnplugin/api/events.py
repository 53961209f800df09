"""Server-Sent Events: live invoice updates from the outbox.

- `GET /invoices/<payment_hash>/events`: the invoice's current state first,
  then each change; the stream ends after a final state (SETTLED, EXPIRED,
  CANCELED). A resume whose invoice is already final gets 204, which tells
  EventSource clients to stop reconnecting.
- `GET /events`: every invoice event the token may read (incoming needs
  `invoices:read`, outgoing `transactions:read`).

Each message's `id` is the outbox `seq`, so `Last-Event-ID` (the header
EventSource sends on reconnect, or `?last_event_id=`) resumes exactly after
the last message seen. Heartbeat comment lines keep proxies from timing out
and reveal dead clients.

Serving model (docs/streaming.md): the route runs like any other on a
worker thread (auth, scopes, admission, the first state, the history), and
its body then ends with a `LiveTail`. The asyncio server
(`lnplugin.run.asgi`) takes that as "the rest is live" and serves it on the
event loop: no thread is held while a stream is open. `StreamGate` admits at
most `--max-streams` streams; stream number max+1 gets 503 with Retry-After.
Under a plain WSGI server (Flask's test client) there is no loop, and the
body's own thread sends the live part from the stream's queue.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

from flask import Blueprint, Response, request

from lnplugin.alby import effective_state, invoice_json, iso
from lnplugin.api import context
from lnplugin.api.auth import (
    READ_SCOPES,
    current_token,
    has_scope,
    require,
    require_one_of,
)
from lnplugin.api.errors import APIError
from lnplugin.hub import (
    ASYNC_LOOP,
    FINAL_EVENTS,
    HEARTBEAT,
    LiveTail,
    Subscription,
    message,
)
from lnplugin.store import events, invoices

bp = Blueprint("events", __name__)

_TYPE_FOR_STATE = {
    "CREATED": events.INCOMING_CREATED,
    "ACCEPTED": events.INCOMING_ACCEPTED,
    "SETTLED": events.INCOMING_SETTLED,
    "EXPIRED": events.INCOMING_EXPIRED,
    "CANCELED": events.INCOMING_CANCELED,
}
RETRY_MS = 3000  # how long EventSource waits before reconnecting


MAX_EVENT_ID = (1 << 63) - 1  # outbox seqs are SQLite integers: signed 64-bit
_EVENT_ID_REASON = f"must be an event id: an integer from 0 to {MAX_EVENT_ID}"


def _last_event_id() -> int | None:
    """The resume point: `Last-Event-ID`, else `?last_event_id=`, else None.

    Parsed by the API's one integer-parameter check (ASCII digits, length
    checked before `int()`), bounded by what SQLite can bind: 2^63 or more
    was an OverflowError that cut the stream. The reason names the field sent.

    An id past the newest event is refused too: this server never sent it
    (it comes from another server, or from before a restore), and resuming
    "after" it would silently skip every event up to it, and never end an
    invoice's stream.
    """
    field = "Last-Event-ID"
    raw = request.headers.get(field)
    if not raw:
        field, raw = "last_event_id", request.args.get("last_event_id")
    try:
        resume = context.int_param(field, raw, None, 0, MAX_EVENT_ID)
    except APIError:
        raise APIError(400, "Invalid request", {field: _EVENT_ID_REASON}) from None
    if resume is not None:
        newest = events.last_seq(context.service().store.conn)
        if resume > newest:
            reason = (
                f"is past the newest event ({newest}): not an id this server sent; "
                "reconnect without it"
            )
            raise APIError(400, "Invalid request", {field: reason})
    return resume


def admit(sub: Subscription) -> Callable[[], None]:
    """Take a stream slot and subscribe; the returned function undoes both, once.
    No slot free: 503 with Retry-After.

    Subscribing before the handler reads the store means nothing committed in
    between can be missed (duplicates are skipped by `seq`).
    """
    svc = context.service()
    gate, hub = svc.stream_gate, svc.event_hub
    if not gate.enter():
        raise APIError(
            503, f"Too many open event streams (limit {gate.limit})", headers={"Retry-After": "5"}
        )
    hub.subscribe(sub)
    released = threading.Event()

    def release() -> None:
        if not released.is_set():
            released.set()
            hub.unsubscribe(sub)
            gate.leave()

    return release


def respond(
    body: Iterator[bytes | LiveTail], sub: Subscription, release: Callable[[], None]
) -> Any:
    def stream() -> Iterator[bytes | LiveTail]:
        try:
            yield f"retry: {RETRY_MS}\n\n".encode()  # headers are out after this
            yield from body
        finally:
            sub.detach()  # before the server writes the end of the response
            release()

    # The body's last item may be a `LiveTail` (not bytes): only lnplugin's own
    # server (lnplugin.run.asgi) puts the environ key that makes it one.
    response = Response(cast(Iterator[bytes], stream()), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
    response.call_on_close(release)  # also when the body never started
    return response


def live(sub: Subscription, after: int, heartbeat: float) -> Iterator[bytes | LiveTail]:
    """Live messages past `after`, with heartbeats while idle.

    Under the asyncio server this is one `LiveTail`: the server writes the
    messages on its loop. Elsewhere this thread sends what the hub queued.
    """
    if sub.loop is not None:
        yield LiveTail(sub, after, heartbeat)
        return
    yield from _queued(sub, after, heartbeat)


def _queued(sub: Subscription, after: int, heartbeat: float) -> Iterator[bytes]:
    last_sent = after
    while True:
        items = sub.take(heartbeat)
        if sub.overflowed or sub.closed:
            return  # far behind, or shutting down: the client resumes from Last-Event-ID
        if not items:
            yield HEARTBEAT
            continue
        for seq, type_, msg in items:
            if seq <= last_sent:
                continue
            last_sent = seq
            yield msg
            if sub.final_ends and type_ in FINAL_EVENTS:
                return


@bp.get("/invoices/<payment_hash>/events")
@require("invoices:read")
def invoice_events(payment_hash: str) -> Any:
    found = context.readable_invoice(payment_hash)
    svc = context.service()
    resume = _last_event_id()
    sub = Subscription(
        lambda row: True,
        found.id,
        final_ends=True,
        token_id=current_token().id,
        loop=request.environ.get(ASYNC_LOOP),
    )
    release = admit(sub)
    try:
        with svc.store.snapshot() as conn:
            row = invoices.by_id(conn, found.id)
            head = events.last_seq(conn)
            history = events.of_invoice_after(conn, found.id, resume) if resume is not None else []
    except BaseException:
        release()
        raise
    assert row is not None
    now = int(time.time())
    state = effective_state(row.state, row.expires_at, now)
    if resume is not None and not history and state in ("SETTLED", "EXPIRED", "CANCELED"):
        release()
        return Response(status=204)
    heartbeat = svc.settings.sse_heartbeat
    base = svc.settings.public_url

    def body() -> Iterator[bytes | LiveTail]:
        if resume is None:
            type_ = events.OUTGOING_SETTLED if row.type == "outgoing" else _TYPE_FOR_STATE[state]
            obj = invoice_json(row, now, base)
            data = {"type": type_, "timestamp": iso(now), "data": obj}
            yield message(head, type_, json.dumps(data, separators=(",", ":")))
            if type_ in FINAL_EVENTS:
                return
        for event in history:
            text = events.with_links(event["payload"], event["page_id"], base)
            yield message(event["seq"], event["type"], text)
            if event["type"] in FINAL_EVENTS:
                return
        yield from live(sub, max(head, resume or 0), heartbeat)

    return respond(body(), sub, release)


def _allowed_types() -> set[str]:
    token = current_token()
    allowed: set[str] = set()
    if has_scope(token, "invoices:read"):
        allowed |= set(events.EVENT_TYPES) - {events.OUTGOING_SETTLED}
    if has_scope(token, "transactions:read"):
        allowed.add(events.OUTGOING_SETTLED)
    return allowed


@bp.get("/events")
@require_one_of(*READ_SCOPES)
def all_events() -> Any:
    allowed = _allowed_types()
    svc = context.service()
    resume = _last_event_id()
    sub = Subscription(
        lambda row: row["type"] in allowed,
        None,
        token_id=current_token().id,
        loop=request.environ.get(ASYNC_LOOP),
    )
    release = admit(sub)
    heartbeat = svc.settings.sse_heartbeat
    base = svc.settings.public_url

    def body() -> Iterator[bytes | LiveTail]:
        if resume is None:
            last = events.last_seq(svc.store.conn)  # before the first piece: this thread's
        else:
            last = resume
            # Its own connection: a long history goes on from other worker threads.
            with svc.store.reader() as conn:
                while rows := events.after(conn, last, 500):
                    if sub.ended:
                        return  # e.g. the token was revoked while the history went out
                    for row in rows:
                        if row["type"] in allowed:
                            text = events.with_links(row["payload"], row["page_id"], base)
                            yield message(row["seq"], row["type"], text)
                    last = rows[-1]["seq"]
        yield from live(sub, last, heartbeat)

    return respond(body(), sub, release)
