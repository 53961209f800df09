"""Due rows handed to a pool of threads, each out once at a time.

The webhook, rss::payment and zap workers send (or fetch) due rows on a
thread pool. A row may be handed out again only once the outcome of its
attempt is stored; one whose outcome could not be stored (a failing
database) is still due, so it is parked for a while rather than sent again
in a tight loop. Both rules live here, once, with the pool (`Senders`).
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

log = logging.getLogger(__name__)

Row = TypeVar("Row")
JITTER = 0.2  # each retry delay is scaled by a random factor in [1 - JITTER, 1 + JITTER]


def retry_delay(schedule: Sequence[float], retry_index: int) -> float | None:
    """Seconds until the next attempt after failure number `retry_index + 1`,
    jittered so rows that failed together do not come back together; None
    when the schedule is exhausted (dead-letter, given up)."""
    if retry_index >= len(schedule):
        return None
    return schedule[retry_index] * random.uniform(1 - JITTER, 1 + JITTER)


class Handout:
    def __init__(self, size: int, park: float) -> None:
        self.size = size  # rows out at once at most (the pool's threads)
        self.park = park  # seconds a row whose outcome was not stored stays back
        self._lock = threading.Lock()
        self._out: set[int] = set()
        self._parked: dict[int, float] = {}  # key -> monotonic time it may go again

    def take(
        self, due: Callable[[set[int], int], Sequence[Row]], key: Callable[[Row], int]
    ) -> list[Row]:
        """`due(busy, free)` of the rows not out or parked, as many as there
        are free threads; they are out from now on."""
        with self._lock:
            free = self.size - len(self._out)
            rows = list(due(self._busy(), free)) if free > 0 else []
            self._out.update(key(row) for row in rows)
        return rows

    def busy(self) -> set[int]:
        """Keys that are out or parked."""
        with self._lock:
            return self._busy()

    def release(self, key: int, parked: bool = False) -> None:
        """The row's attempt is over (its outcome stored, unless `parked`)."""
        with self._lock:
            self._out.discard(key)
            if parked:
                self._parked[key] = time.monotonic() + self.park

    def attempt(
        self, key: int, attempt: Callable[[], None], what: str, then: Callable[[], None]
    ) -> None:
        """Run `attempt` (on a pool thread), then release `key` and call
        `then` (the worker's wake-up, so its next due row goes out). An
        exception means the outcome was not stored (a failing database): the
        row is still due, so it is parked, not attempted again in a tight loop."""
        parked = False
        try:
            attempt()
        except Exception:
            log.exception("%s: storing the outcome failed", what)
            parked = True
        finally:
            self.release(key, parked)
            then()

    @property
    def out(self) -> frozenset[int]:
        with self._lock:
            return frozenset(self._out)

    def _busy(self) -> set[int]:  # the caller holds the lock
        clock = time.monotonic()
        for key, until in list(self._parked.items()):
            if until <= clock:
                del self._parked[key]
        return self._out | set(self._parked)


class Senders:
    """`size` daemon threads that run the calls `submit` hands them.

    Not a `ThreadPoolExecutor`: the interpreter joins that pool's threads at
    exit, so a stopping server waited for every attempt still in flight (a
    receiver that answers slowly, or a byte at a time, for ever) and the
    shutdown watchdog ended it with status 1. Here `shutdown` gives the calls
    in flight `grace` seconds to finish, then leaves them: an attempt that
    never stored its outcome leaves its row due, and the next start sends it
    again (at least once, as after a crash).
    """

    def __init__(self, size: int, name: str) -> None:
        self._calls: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}_{i}", daemon=True)
            for i in range(size)
        ]
        self._closed = False
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        if not self._closed:
            self._calls.put((fn, args))

    def shutdown(self, grace: float | None = None) -> None:
        """Drop the calls not started, and wait for those in flight: at most
        `grace` seconds in all (None: until they end)."""
        self._closed = True
        while True:  # calls that have not started are not started at all
            try:
                self._calls.get_nowait()
            except queue.Empty:
                break
        for _ in self._threads:
            self._calls.put(None)
        deadline = None if grace is None else time.monotonic() + grace
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def _work(self) -> None:
        while (call := self._calls.get()) is not None:
            fn, args = call
            try:
                fn(*args)
            except Exception:  # the callers handle their own; this keeps the thread
                log.exception("%s failed", getattr(fn, "__qualname__", fn))
