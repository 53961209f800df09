"""The worker pool the asyncio server runs the Flask app on
(`lnplugin.run.asgi.Workers`): a job's value or exception reaches the
awaiting task, threads start on demand up to the bound, jobs queued behind
a busy worker wait for it rather than wake another while jobs keep
finishing, a job that stalls has another worker take the queue, a task that
stops waiting never sees its job's outcome, and closing the pool cancels
the jobs not started and lets every thread end."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from lnplugin.run.asgi import Workers


def test_a_job_returns_its_value_on_the_loop() -> None:
    pool = Workers(2, "test-workers")

    async def main() -> tuple[str, str]:
        loop = asyncio.get_running_loop()
        value = await pool.run(loop, lambda a, b: a + b, "x", "y")
        return value, threading.current_thread().name

    value, thread = asyncio.run(main())
    pool.close()
    assert value == "xy"
    assert thread == "MainThread"  # the future settles on the loop's thread
    assert [t.name for t in pool.threads] == ["test-workers_0"]


def test_a_job_that_raises_raises_in_the_awaiting_task() -> None:
    pool = Workers(1, "test-workers")

    def boom() -> None:
        raise ValueError("no")

    def stop() -> None:
        raise StopIteration  # an asyncio future cannot hold this one as it is

    async def main() -> None:
        loop = asyncio.get_running_loop()
        with pytest.raises(ValueError, match="no"):
            await pool.run(loop, boom)
        with pytest.raises(RuntimeError, match="StopIteration"):
            await pool.run(loop, stop)
        assert await pool.run(loop, lambda: 1) == 1  # the worker goes on

    asyncio.run(main())
    pool.close()


def test_threads_start_on_demand_up_to_the_bound() -> None:
    pool = Workers(3, "test-workers")
    release = threading.Event()
    running = []

    def job(n: int) -> int:
        running.append(threading.current_thread().name)
        release.wait(5)
        return n

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        futures = [pool.run(loop, job, n) for n in range(6)]
        while len(running) < 3:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert len(running) == 3  # three threads, three jobs waiting for them
        release.set()
        return list(await asyncio.gather(*futures))

    assert asyncio.run(main()) == list(range(6))
    assert len(pool.threads) == 3
    pool.close()


def test_idle_threads_are_reused() -> None:
    pool = Workers(8, "test-workers")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for n in range(20):
            assert await pool.run(loop, lambda n=n: n) == n

    asyncio.run(main())
    assert len(pool.threads) == 1
    pool.close()


class Clock:
    """A clock the test moves: whether a worker counts as waiting (on one job
    for over the pool's stall) then never depends on the host's speed."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_jobs_queued_at_once_run_one_after_another_on_one_worker() -> None:
    # Python runs one thread at a time: a second worker would only take
    # turns with the first (and switch with it at every SQLite call).
    pool = Workers(8, "test-workers", stall=0.01, clock=Clock())

    async def main() -> set[str]:
        loop = asyncio.get_running_loop()
        futures = [pool.run(loop, lambda: threading.current_thread().name) for _ in range(50)]
        return set(await asyncio.gather(*futures))

    assert asyncio.run(main()) == {"test-workers_0"}
    assert len(pool.threads) == 1
    pool.close()


def blocking(result: str) -> tuple[Callable[[], str], threading.Event, threading.Event]:
    """A job that says it started, then holds its worker until released."""
    started, release = threading.Event(), threading.Event()

    def job() -> str:
        started.set()
        release.wait(5)
        return result

    return job, started, release


def test_a_job_waiting_on_something_does_not_hold_the_queue() -> None:
    # The job ahead waits (the node, a lock, the disk) past the stall: the
    # next job gets a worker of its own rather than waiting behind it.
    clock = Clock()
    pool = Workers(4, "test-workers", stall=0.01, clock=clock)
    slow, started, release = blocking("slow")

    async def main() -> tuple[str, str, bool]:
        loop = asyncio.get_running_loop()
        first = pool.run(loop, slow)
        await loop.run_in_executor(None, started.wait, 5)
        clock.now += 1  # the slow job has been at it for a second
        quick = await asyncio.wait_for(
            pool.run(loop, lambda: threading.current_thread().name), timeout=4
        )
        still_waiting = not first.done()
        release.set()
        return await first, quick, still_waiting

    slow_result, quick_thread, still_waiting = asyncio.run(main())
    pool.close()
    assert slow_result == "slow"
    assert still_waiting  # the quick job did not wait for the slow one
    assert quick_thread == "test-workers_1"


def test_a_queue_behind_a_job_that_started_waiting_gets_a_worker_per_job() -> None:
    # Six jobs queue behind a quick-looking job, which then waits on
    # something: the loop's check wakes a worker for each of them at once
    # (six calls to a slow node in flight, not one more per stall). Each
    # job waits for all six to be running, so one worker at a time would
    # never finish them.
    clock = Clock()
    pool = Workers(8, "test-workers", stall=0.01, clock=clock)
    slow, started, release = blocking("slow")
    together = threading.Barrier(6, timeout=4)

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        first = pool.run(loop, slow)
        await loop.run_in_executor(None, started.wait, 5)
        queued = [pool.run(loop, together.wait) for _ in range(6)]
        await asyncio.sleep(0.05)  # several checks: the slow job still counts as running
        assert all(not f.done() for f in queued) and len(pool.threads) == 1
        clock.now += 1  # now it has waited for a second
        try:
            return sorted(await asyncio.gather(*queued))
        finally:
            release.set()
            await first

    assert asyncio.run(main()) == [0, 1, 2, 3, 4, 5]
    assert len(pool.threads) == 7
    pool.close()


def test_the_stall_check_follows_the_pool_to_a_new_loop() -> None:
    # A check armed on a loop that then closed never runs; the next loop
    # arms its own, so a queue behind a waiting job there still gets a worker.
    clock = Clock()
    pool = Workers(4, "test-workers", stall=0.01, clock=clock)

    async def arm_and_leave() -> None:
        loop = asyncio.get_running_loop()
        gate = threading.Event()
        futures: list[asyncio.Future[Any]] = [
            pool.run(loop, gate.wait, 5),
            pool.run(loop, lambda: None),
        ]
        gate.set()
        await asyncio.gather(*futures)

    asyncio.run(arm_and_leave())
    slow, started, release = blocking("slow")

    async def stalled() -> tuple[str, bool]:
        loop = asyncio.get_running_loop()
        first = pool.run(loop, slow)
        await loop.run_in_executor(None, started.wait, 5)
        quick = pool.run(loop, lambda: "quick")  # queued: the slow job looks quick yet
        clock.now += 1
        answer = await asyncio.wait_for(quick, timeout=4)
        still_waiting = not first.done()
        release.set()
        await first
        return answer, still_waiting

    assert asyncio.run(stalled()) == ("quick", True)  # not after the slow job let go
    pool.close()


def test_a_task_that_stops_waiting_is_not_handed_the_outcome() -> None:
    pool = Workers(1, "test-workers")
    slow, started, release = blocking("late")

    async def main() -> str:
        loop = asyncio.get_running_loop()
        future = pool.run(loop, slow)
        await loop.run_in_executor(None, started.wait, 5)
        future.cancel()
        release.set()
        return await pool.run(loop, lambda: "next")  # settles after the cancelled one

    assert asyncio.run(main()) == "next"
    pool.close()


def test_close_cancels_jobs_not_started_and_ends_the_threads() -> None:
    pool = Workers(1, "test-workers")
    blocker, started, release = blocking("done")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        first = pool.run(loop, blocker)
        queued = pool.run(loop, lambda: "never")
        await loop.run_in_executor(None, started.wait, 5)
        pool.close()
        release.set()
        assert await first == "done"  # the running job finishes
        with pytest.raises(asyncio.CancelledError):
            await queued
        with pytest.raises(RuntimeError):
            pool.run(loop, lambda: None)

    asyncio.run(main())
    deadline = time.monotonic() + 5
    while any(t.is_alive() for t in pool.threads) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(t.is_alive() for t in pool.threads)


def test_the_environ_from_request_headers_is_the_same_every_time() -> None:
    """Header names are turned into environ keys once and remembered: the
    second request with the same names gets the same environ as the first
    (repeated headers joined, names with `_` dropped, the last
    Content-Type/Length kept)."""
    from lnplugin.run.asgi import _environ

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/health",
        "raw_path": b"/health",
        "query_string": b"a=1",
        "headers": [
            (b"host", b"example.test"),
            (b"x-forwarded-for", b"1.1.1.1"),
            (b"x-forwarded-for", b"2.2.2.2"),
            (b"x_api_key", b"smuggled"),
            (b"content-type", b"text/plain"),
            (b"content-type", b"application/json"),
        ],
    }
    loop = asyncio.new_event_loop()
    try:
        first = _environ(scope, b"", loop)
        second = _environ(scope, b"", loop)
    finally:
        loop.close()
    for environ in (first, second):
        assert environ["HTTP_HOST"] == "example.test"
        assert environ["HTTP_X_FORWARDED_FOR"] == "1.1.1.1,2.2.2.2"
        assert "HTTP_X_API_KEY" not in environ
        assert environ["CONTENT_TYPE"] == "application/json"
        assert environ["QUERY_STRING"] == "a=1"
        assert environ["CONTENT_LENGTH"] == "0"  # none declared: the body read, measured
    assert {k: v for k, v in first.items() if k != "wsgi.input"} == {
        k: v for k, v in second.items() if k != "wsgi.input"
    }
