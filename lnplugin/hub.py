"""Fan-out of new outbox events to live subscribers (Server-Sent Events).

One thread waits on `Store.wait_for_commit`, reads the new events once and
hands each to the subscribers that want it. Streams therefore sleep on their
own condition and wake only for their events: 500 idle streams cost 500
sleeping threads, not 500 database queries per commit.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from lnplugin.store import Store, events

log = logging.getLogger(__name__)

IDLE_WAIT = 1.0  # also catches commits made by other processes, which do not notify
MAX_QUEUE = 10_000  # a subscriber this far behind is cut off and must resume


class Subscription:
    """A queue of outbox rows for one stream."""

    def __init__(self, wants: Callable[[sqlite3.Row], bool], invoice_id: int | None) -> None:
        self.wants = wants
        self.invoice_id = invoice_id
        self.overflowed = False
        self.closed = False  # the server is shutting down: end the stream
        self._items: deque[sqlite3.Row] = deque()
        self._cond = threading.Condition()

    def push(self, row: sqlite3.Row) -> None:
        with self._cond:
            if len(self._items) >= MAX_QUEUE:
                self.overflowed = True
            else:
                self._items.append(row)
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify()

    def take(self, timeout: float) -> list[sqlite3.Row]:
        """Everything queued, waiting up to `timeout` when nothing is."""
        with self._cond:
            if not self._items and not self.overflowed and not self.closed:
                self._cond.wait(timeout)
            items = list(self._items)
            self._items.clear()
            return items


class EventHub:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._by_invoice: dict[int, set[Subscription]] = {}
        self._all: set[Subscription] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lnplugin-event-hub", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self.store.wake_waiters()
        if self._thread is not None:
            self._thread.join(timeout)

    def close_all(self) -> None:
        """End every stream now (shutdown), instead of at its next heartbeat."""
        with self._lock:
            subs = list(self._all) + [s for group in self._by_invoice.values() for s in group]
        for sub in subs:
            sub.close()

    def subscribe(self, sub: Subscription) -> None:
        with self._lock:
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

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._all) + sum(len(s) for s in self._by_invoice.values())

    def _run(self) -> None:
        seen = self.store.commit_version
        seq = events.last_seq(self.store.conn)
        while not self._stop.is_set():
            seen = self.store.wait_for_commit(seen, IDLE_WAIT, self._stop)
            try:
                while rows := events.after(self.store.conn, seq, 1000):
                    seq = rows[-1]["seq"]
                    self._dispatch(rows)
            except sqlite3.Error:
                if self._stop.is_set():
                    return
                log.exception("event hub read failed")

    def _dispatch(self, rows: list[sqlite3.Row]) -> None:
        with self._lock:
            everyone = list(self._all)
            by_invoice = {k: list(v) for k, v in self._by_invoice.items()}
        for row in rows:
            for sub in everyone + by_invoice.get(row["invoice_id"], []):
                if sub.wants(row):
                    sub.push(row)


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


class ParkingMap(dict[int, Any]):
    """waitress's socket map, minus the channels of open event streams.

    waitress's main loop asks every channel in its map whether it wants to
    read or write on every iteration, so 500 idle streams would add 500
    Python calls to the handling of every API request. A stream's channel
    needs nothing from the loop while its worker thread writes directly
    (waitress flushes writes from the writing thread), so it is parked:
    hidden from `items()` until the stream ends. Lookups still see it.
    """

    def __init__(self) -> None:
        super().__init__()
        self._parked: set[int] = set()

    def park(self, fd: int) -> None:
        self._parked.add(fd)

    def unpark(self, fd: int) -> None:
        self._parked.discard(fd)

    def items(self) -> Any:  # type: ignore[override]
        if not self._parked:
            return super().items()
        parked = self._parked
        return [(fd, obj) for fd, obj in super().items() if fd not in parked]
