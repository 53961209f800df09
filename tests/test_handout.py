"""lnplugin/handout.py: a due row is out once at a time, and one whose
outcome could not be stored stays back for a while; the
senders pool does not hold a stop up."""

from __future__ import annotations

import threading
import time

from lnplugin.handout import Handout, Senders

ROWS = [1, 2, 3, 4]


def due(busy: set[int], free: int) -> list[int]:
    return [r for r in ROWS if r not in busy][:free]


def test_rows_go_out_up_to_the_pools_size_and_not_twice() -> None:
    handout = Handout(size=2, park=60)
    assert handout.take(due, lambda r: r) == [1, 2]
    assert handout.take(due, lambda r: r) == []  # no free thread
    handout.release(1)
    assert handout.take(due, lambda r: r) == [1]  # released: due again
    assert handout.out == {1, 2}


def test_a_row_whose_outcome_was_not_stored_is_parked_then_due_again() -> None:
    handout = Handout(size=4, park=0.2)
    assert handout.take(due, lambda r: r) == [1, 2, 3, 4]
    handout.release(3, parked=True)
    assert handout.busy() == {1, 2, 3, 4}
    assert handout.take(due, lambda r: r) == []
    time.sleep(0.25)
    assert handout.busy() == {1, 2, 4}
    assert handout.take(due, lambda r: r) == [3]


def test_senders_leave_a_call_that_outlasts_the_grace_and_drop_those_not_started() -> None:
    """A stop does not wait for an attempt stuck on its receiver (the next
    start sends its row again), nor start the calls still queued."""
    senders = Senders(1, "test-senders")
    stuck, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def attempt(name: str) -> None:
        ran.append(name)
        stuck.set()
        release.wait(30)

    senders.submit(attempt, "first")
    assert stuck.wait(30)
    senders.submit(attempt, "queued")
    senders.shutdown(grace=0.1)
    senders.submit(attempt, "after")
    release.set()
    senders.shutdown()  # the first call ends; nothing else runs
    assert ran == ["first"]
