"""Fan-out of new outbox events to live subscribers (Server-Sent Events).

One thread, woken by commits while any stream is open (`Store.on_commit`),
reads the new events once, encodes each once as an SSE message, and hands
it to the subscribers that want it. With no stream open it is not woken by
commits at all: it only moves its position to the outbox's head once per
`IDLE_WAIT`, so a server creating invoices with no one listening pays
nothing here.

A subscriber starts in *queued* mode: the hub appends to its queue, and the
stream sends what it finds there (that is how a stream sends its first state
and any resumed history without missing or repeating events). Once caught
up, a stream served by the asyncio server (`lnplugin.run.asgi`) switches to
*direct* mode: from then on each message is written into the connection as
soon as the hub hands it over, with no task woken per stream.

Streams on the event loop are never touched from the hub thread: the hub
collects everything one read produced for them and hands the whole batch to
the loop with ONE `call_soon_threadsafe`, whose callback pushes each message
to its streams (a non-blocking write each). So one commit reaching 1,000
streams costs one thread-to-loop hand-over and 1,000 small writes, not 1,000
wake-ups. Streams without a loop (Flask's test client, any plain WSGI server)
stay in queued mode, and their own thread takes the messages.

A stream is only as good as the token that opened it: on every wake-up the
hub checks that the tokens of its streams are still in force, after reading
new events and before sending them, and ends the streams of a revoked token.
Revocation by another process (`lnplugin token revoke`) is a commit the hub
does not hear about, so it is seen at the next idle wake-up (`IDLE_WAIT`),
well within one heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lnplugin.store import Store, events, tokens

log = logging.getLogger(__name__)

IDLE_WAIT = 1.0  # also catches commits made by other processes, which do not notify
MAX_QUEUE = 10_000  # a subscriber this far behind is cut off and must resume
MAX_BACKLOG = 256 * 1024  # unsent bytes after which a live stream's client counts as stalled
FINAL_EVENTS = frozenset(
    {
        events.INCOMING_SETTLED,
        events.INCOMING_EXPIRED,
        events.INCOMING_CANCELED,
        events.OUTGOING_SETTLED,
    }
)
HEARTBEAT = b": keep-alive\n\n"
# The WSGI environ key under which the asyncio server (`lnplugin.run.asgi`)
# puts its event loop. A stream that finds it ends its response body with a
# `LiveTail`, and the server runs the live part on the loop.
ASYNC_LOOP = "lnplugin.asyncio_loop"


def message(seq: int, type_: str, data: str) -> bytes:
    """One SSE message; `data` is a single-line JSON document."""
    return f"id: {seq}\nevent: {type_}\ndata: {data}\n\n".encode()


# The state each incoming event puts an invoice in, for state-only streams.
STATE_OF_EVENT = {
    events.INCOMING_CREATED: "CREATED",
    events.INCOMING_ACCEPTED: "ACCEPTED",
    events.INCOMING_SETTLED: "SETTLED",
    events.INCOMING_EXPIRED: "EXPIRED",
    events.INCOMING_CANCELED: "CANCELED",
}


def state_message(state: str) -> bytes:
    """A state-only SSE message (the public checkout stream): the new state
    and nothing else of the invoice, so a payer's page learns no metadata.

    Its id is the state, not the outbox's sequence number: that number counts
    every event of every invoice, and would tell anyone holding a payment
    page how busy the node is. The stream needs no more (a reconnect gets
    the current state; after the final one it already saw, 204)."""
    return f'id: {state.lower()}\nevent: state\ndata: {{"state":"{state}"}}\n\n'.encode()


@dataclass(frozen=True)
class LiveTail:
    """The last item of a stream's WSGI body under the asyncio server: "the
    rest of this response is live; serve it on the loop". The sync part
    (auth, admission, first state, history) ran on a worker thread; what
    follows costs no thread."""

    sub: Subscription
    after: int  # the last seq already sent
    heartbeat: float


class Subscription:
    """One stream's view of the hub: a queue, then (direct mode) a writer.

    Every write to the connection after the switch happens under `_lock`, by
    the hub (messages) or the stream thread (heartbeats), so messages never
    interleave and `last_sent` orders and deduplicates them.
    """

    def __init__(
        self,
        wants: Callable[[sqlite3.Row], bool],
        invoice_id: int | None,
        final_ends: bool = False,
        token_id: int | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        state_only: bool = False,
    ) -> None:
        self.wants = wants
        # Sent `state_message`s instead of the event payload (public streams).
        self.state_only = state_only
        # Set: the stream lives on this event loop and the hub hands it
        # messages there (never from its own thread).
        self.loop = loop
        # Called (from any thread) whenever the stream must end; the asyncio
        # server sets it to wake the stream's task.
        self.on_end: Callable[[], None] | None = None
        self.invoice_id = invoice_id
        self.final_ends = final_ends  # end the stream after a final invoice event
        self.token_id = token_id  # the stream ends when this token is revoked
        self.overflowed = False  # too far behind (queue full, or unsent bytes piling up)
        self.closed = False  # the server is shutting down, or the token was revoked
        self.finished = False  # a final event was written (direct mode)
        self.broken = False  # a write failed: the client is gone
        self.last_sent = 0
        self._items: deque[tuple[int, str, bytes]] = deque()
        # Entered as the lock itself (a C call), not through the Condition's
        # Python `__enter__`: the hub's fan-out takes it once per stream.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._write: Callable[[bytes], Any] | None = None
        self._stalled: Callable[[int], bool] = lambda limit: False
        self._backlog = 0
        self._active = False  # something was written since the last heartbeat check

    @property
    def ended(self) -> bool:
        return self.overflowed or self.closed or self.finished or self.broken

    def push(self, seq: int, type_: str, msg: bytes) -> None:
        """Called by the hub with an already encoded message."""
        self.push_many([(seq, type_, msg)])

    def push_many(self, items: list[tuple[int, str, bytes]]) -> None:
        """Several messages in order; in direct mode they go out in one write
        (a burst of settlements costs each stream one write, not one each)."""
        with self._lock:
            if self.ended:
                return
            if self._write is not None:
                self._send(items)
                return
            for item in items:
                if len(self._items) >= MAX_QUEUE:
                    self.overflowed = True
                    self._notify_end()
                    return
                self._items.append(item)
            self._cond.notify()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._notify_end()

    def gone(self) -> None:
        """The client went away (the server saw it hang up)."""
        with self._lock:
            self.broken = True
            self._notify_end()

    def _notify_end(self) -> None:
        # Under _lock.
        self._cond.notify()
        if self.on_end is not None:
            self.on_end()

    def take(self, timeout: float) -> list[tuple[int, str, bytes]]:
        """Queued mode: everything queued, waiting up to `timeout` when nothing is."""
        with self._lock:
            if not self._items and not self.ended:
                self._cond.wait(timeout)
            items = list(self._items)
            self._items.clear()
            return items

    def go_direct(
        self,
        write: Callable[[bytes], Any],
        last_sent: int,
        stalled: Callable[[int], bool],
        backlog: int,
    ) -> None:
        """Switch to direct mode: send what is queued past `last_sent`, then
        let `push` write directly. `stalled(n)` tells whether more than `n`
        bytes are still unsent; past `backlog` the stream is cut off."""
        with self._lock:
            self.last_sent = max(self.last_sent, last_sent)
            self._write, self._stalled, self._backlog = write, stalled, backlog
            items = list(self._items)
            self._items.clear()
            if items and not self.ended:
                self._send(items)

    def _send(self, items: list[tuple[int, str, bytes]]) -> None:
        # Under _lock, in direct mode: the messages past `last_sent`, up to and
        # including a final one, in one write.
        if len(items) == 1:  # the usual case (one event): no list to build
            last, type_, data = items[0]
            if last <= self.last_sent:
                return
            final = self.final_ends and type_ in FINAL_EVENTS
        else:
            out: list[bytes] = []
            last, final = self.last_sent, False
            for seq, type_, msg in items:
                if seq <= last:
                    continue
                out.append(msg)
                last = seq
                if self.final_ends and type_ in FINAL_EVENTS:
                    final = True
                    break
            if not out:
                return
            data = out[0] if len(out) == 1 else b"".join(out)
        assert self._write is not None
        if self._stalled(self._backlog):
            self.overflowed = True  # not reading; never block the hub on it
            self._notify_end()
            return
        try:
            self._write(data)
        except Exception:  # the connection is gone
            self.broken = True
            self._notify_end()
            return
        self.last_sent = last
        self._active = True
        if final:
            self.finished = True
            self._notify_end()

    def wait(self, timeout: float) -> bool:
        """Direct mode, stream thread: sleep until the stream must end (True)
        or `timeout` passes (False). Normal writes do not wake it."""
        with self._lock:
            if not self.ended:
                self._cond.wait(timeout)
            return self.ended

    def heartbeat(self) -> bool:
        """Direct mode: write a keep-alive comment if nothing was written since
        the last call. False when the stream should end: the bytes written
        before are still unsent (the client is gone or not reading), or the
        write failed."""
        with self._lock:
            if self.ended:
                return False
            if self._active:
                self._active = False
                return True
            if self._stalled(0):
                return False
            assert self._write is not None
            try:
                self._write(HEARTBEAT)
            except Exception:
                self.broken = True
                return False
            return True

    def detach(self) -> None:
        """The stream is over: nothing may be written to its connection any more."""
        with self._lock:
            self._write = None
            self.closed = True


class EventHub:
    def __init__(self, store: Store, public_url: str | None = None) -> None:
        self.store = store
        self.public_url = public_url  # fills the invoice's links in each message
        self._by_invoice: dict[int, set[Subscription]] = {}
        self._all: set[Subscription] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by commits while a stream is open
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lnplugin-event-hub", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._wake.set()
        self.store.off_commit(self._wake)
        if self._thread is not None:
            self._thread.join(timeout)

    def close_all(self) -> None:
        """End every stream now (shutdown), instead of at its next heartbeat."""
        for sub in self._everyone():
            sub.close()

    def _everyone(self) -> list[Subscription]:
        with self._lock:
            return list(self._all) + [s for group in self._by_invoice.values() for s in group]

    def subscribe(self, sub: Subscription) -> None:
        with self._lock:
            if not self._all and not self._by_invoice:  # the first: hear commits again
                self.store.on_commit(self._wake)
            if sub.invoice_id is None:
                self._all.add(sub)
            else:
                self._by_invoice.setdefault(sub.invoice_id, set()).add(sub)

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub.invoice_id is None:
                self._all.discard(sub)
            else:
                subs = self._by_invoice.get(sub.invoice_id, set())
                subs.discard(sub)
                if not subs:
                    self._by_invoice.pop(sub.invoice_id, None)
            if not self._all and not self._by_invoice:  # the last: stop hearing them
                self.store.off_commit(self._wake)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._all) + sum(len(s) for s in self._by_invoice.values())

    def _run(self) -> None:
        seq = events.last_seq(self.store.conn)
        while not self._stop.is_set():
            self._wake.wait(IDLE_WAIT)
            self._wake.clear()  # a commit from here on sets it again: not missed
            try:
                head = events.last_seq(self.store.conn)
                if not self.subscribers:
                    # No stream to send to, so no events to read. Checked after
                    # `head` is read: a stream subscribes before it reads the
                    # store, so one that subscribes now sees up to `head` itself.
                    seq = head
                    continue
                while True:
                    rows = events.after(self.store.conn, seq, 1000)
                    # After the read: whatever was committed after a revocation
                    # is in `rows` only if the revocation is visible here too.
                    self._end_revoked()
                    if not rows:
                        break
                    seq = rows[-1]["seq"]
                    self._dispatch(rows)
            except sqlite3.Error:
                if self._stop.is_set():
                    return
                log.exception("event hub read failed")

    def _end_revoked(self) -> None:
        """End the streams whose token was revoked since they opened."""
        subs = self._everyone()
        ids = {sub.token_id for sub in subs if sub.token_id is not None}
        if not ids:
            return
        live = tokens.live_ids(self.store.conn, ids)
        for sub in subs:
            if sub.token_id is not None and sub.token_id not in live and not sub.closed:
                log.info("ending an event stream of token %s: the token was revoked", sub.token_id)
                sub.close()

    def _dispatch(self, rows: list[sqlite3.Row]) -> None:
        with self._lock:
            everyone = list(self._all)
            by_invoice = {k: list(v) for k, v in self._by_invoice.items()}
        batches: dict[asyncio.AbstractEventLoop, list[Delivery]] = {}
        for row in rows:
            mine = by_invoice.get(row["invoice_id"])
            targets = [sub for sub in (everyone + mine if mine else everyone) if sub.wants(row)]
            if not targets:
                continue
            seq, type_ = row["seq"], row["type"]
            # Encoded once for every stream, with the invoice's public links;
            # the one-item list is shared too (`push_many` only reads it).
            text = events.with_links(row["payload"], row["page_id"], self.public_url)
            full = [(seq, type_, message(seq, type_, text))]
            public: list[tuple[int, str, bytes]] | None = None
            for sub in targets:
                items = full
                if sub.state_only:
                    if type_ not in STATE_OF_EVENT:
                        continue
                    if public is None:
                        public = [(seq, type_, state_message(STATE_OF_EVENT[type_]))]
                    items = public
                if sub.loop is None:
                    deliver([(sub, items)])
                else:
                    batches.setdefault(sub.loop, []).append((sub, items))
        for loop, batch in batches.items():
            if len(rows) > 1:  # a stream may be in it more than once
                batch = _merged(batch)
            try:
                loop.call_soon_threadsafe(deliver, batch)  # one hand-over per read
            except RuntimeError:  # the loop is closed: the server is gone
                for sub, _ in batch:
                    sub.close()


# A stream and its messages (in order) of one outbox read.
Delivery = tuple[Subscription, list[tuple[int, str, bytes]]]


def _merged(batch: list[Delivery]) -> list[Delivery]:
    """Each stream once, with all its messages of the batch in order, so a
    burst costs it one write."""
    per_sub: dict[Subscription, list[tuple[int, str, bytes]]] = {}
    for sub, items in batch:
        got = per_sub.get(sub)
        if got is None:
            per_sub[sub] = list(items)  # its own list: `items` is shared
        else:
            got.extend(items)
    return list(per_sub.items())


def deliver(batch: list[Delivery]) -> None:
    """Push each stream its messages of the batch (on the stream's loop, for
    loop streams). Each stream is in the batch once."""
    for sub, items in batch:
        try:
            sub.push_many(items)
        except Exception:  # one broken stream must not stop the others' events
            log.exception("event hub: pushing to a stream failed")
            sub.close()


class StreamGate:
    """Counts open streams; refuses beyond the limit instead of queueing."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self._lock = threading.Lock()

    def enter(self) -> bool:
        with self._lock:
            if self.open >= self.limit:
                return False
            self.open += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.open -= 1


class ClientGate:
    """Counts open streams per client; refuses a client's stream beyond the limit.

    A `StreamGate` alone caps all clients together: one client could take
    every slot and hold it. A client's entry goes with its last stream, so
    the table never holds more clients than there are streams open."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()

    def enter(self, client: str) -> bool:
        with self._lock:
            held = self._open.get(client, 0)
            if held >= self.limit:
                return False
            self._open[client] = held + 1
            return True

    def leave(self, client: str) -> None:
        with self._lock:
            held = self._open.pop(client, 0) - 1
            if held > 0:
                self._open[client] = held
