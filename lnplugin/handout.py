"""Due rows handed to a pool of threads, each out once at a time.

The webhook and rss::payment workers both send (or fetch) due rows on a
thread pool. A row may be handed out again only once the outcome of its
attempt is stored; one whose outcome could not be stored (a failing
database) is still due, so it is parked for a while rather than sent again
in a tight loop. Both rules live here, once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

Row = TypeVar("Row")


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
