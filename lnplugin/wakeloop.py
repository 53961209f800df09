"""The loop of the outbox workers: one thread that runs a step when woken,
or when the step's own wait ran out.

The webhook, rss::payment and zap workers each read the outbox past a
cursor of their own, write their own rows, and hand what is due to a pool
of threads; this is the part they share. Commits set the loop's event
through `Store.on_commit` (only those appending the event types a worker
reads, when it names some), and so do its pool threads when an attempt's
outcome is stored. A step returns how long it may sleep; `IDLE_WAIT` caps
it, which is also how commits made by other processes (which set no event
here) are found.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from lnplugin.handout import Handout
from lnplugin.store import Store

log = logging.getLogger(__name__)

IDLE_WAIT = 1.0  # re-check at least this often (commits by other processes do not notify)


def sleep_until(next_at: float | None) -> float:
    """What a step returns when its next row falls due at `next_at` (epoch
    seconds; None when none is waiting): never more than `IDLE_WAIT`, so
    other processes' commits are still found."""
    if next_at is None:
        return IDLE_WAIT
    return min(IDLE_WAIT, max(0.0, next_at - time.time()))


class WakeLoop:
    def __init__(
        self,
        store: Store,
        name: str,
        step: Callable[[], float],
        types: Iterable[str] | None = None,
    ) -> None:
        """`step` runs on a thread called `name`; `types` are the outbox
        event types whose commits wake it (None: every waking commit)."""
        self.store = store
        self.name = name
        self._step = step
        self._types = None if types is None else tuple(sorted(types))
        self._listening = threading.Lock()  # `retype` against `stop`
        self.stopping = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.store.on_commit(self._wake, self._types)
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def retype(self, types: Iterable[str] | None) -> None:
        """Be woken from now on by commits appending `types` (None: every
        waking commit); for a worker whose wants change while it runs."""
        new = None if types is None else tuple(sorted(types))
        with self._listening:
            if new != self._types:
                self._types = new
                if self._thread is not None and not self.stopping.is_set():
                    self.store.on_commit(self._wake, new)

    def stop(self, timeout: float) -> None:
        with self._listening:
            self.stopping.set()
            self.store.off_commit(self._wake)
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        """Run the step again now (or right after the one running)."""
        self._wake.set()

    def attempt(self, handout: Handout, key: int, attempt: Callable[[], None], what: str) -> None:
        """`handout.attempt` on a pool thread for a worker on this loop: an
        attempt not started when the worker stops is skipped (its row stays
        due for the next start), and the loop is woken after each, so the
        row's place goes to the next due one at once."""
        handout.attempt(key, lambda: None if self.stopping.is_set() else attempt(), what, self.wake)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self.stopping.is_set():
            self._wake.clear()  # set from here on: the step after this one runs at once
            try:
                wait = self._step()
            except Exception:
                log.exception("%s: step failed", self.name)
                wait = IDLE_WAIT
            self._wake.wait(wait)
