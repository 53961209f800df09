"""Store.transaction: writers queue on the process's writer lock, not in SQLite's
busy handler; nesting joins; a bounded wait gives up as SQLite would."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lnplugin.store import Store


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "lnplugin.sqlite")
    with store.transaction() as tx:
        tx.execute("CREATE TABLE t (writer TEXT)")
    yield store
    store.close()


def run(target) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def wrapped() -> None:
        try:
            target()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=wrapped)
    thread.start()
    return thread, errors


def test_two_threads_writing_at_once_both_commit_without_sqlites_busy_wait(store):
    # The second writer's connection gets no busy timeout at all: only the
    # in-process lock can make it wait for the first instead of failing with
    # "database is locked" when its BEGIN IMMEDIATE finds the file locked.
    first_inside = threading.Event()
    second_starting = threading.Event()

    def first() -> None:
        with store.transaction() as tx:
            tx.execute("INSERT INTO t VALUES ('first')")
            first_inside.set()
            assert second_starting.wait(5)
            time.sleep(0.2)  # let the second reach its BEGIN while this one holds the lock

    def second() -> None:
        store.conn.execute("PRAGMA busy_timeout = 0")
        assert first_inside.wait(5)
        second_starting.set()
        with store.transaction() as tx:
            tx.execute("INSERT INTO t VALUES ('second')")

    threads = [run(first), run(second)]
    for thread, errors in threads:
        thread.join(10)
        assert not thread.is_alive()
        assert errors == []
    rows = [r[0] for r in store.conn.execute("SELECT writer FROM t ORDER BY rowid")]
    assert rows == ["first", "second"]


def test_a_nested_transaction_joins_the_outer_one_without_waiting_on_itself(store):
    done = threading.Event()

    def nested() -> None:
        with store.transaction() as outer:
            outer.execute("INSERT INTO t VALUES ('outer')")
            with store.transaction() as inner:
                inner.execute("INSERT INTO t VALUES ('inner')")
        done.set()

    thread, errors = run(nested)
    thread.join(10)
    assert done.is_set() and errors == []
    assert store.conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 2


def test_a_second_store_on_the_same_file_queues_on_the_same_lock(store, tmp_path):
    other = Store(tmp_path / "lnplugin.sqlite")
    try:
        held = threading.Event()
        release = threading.Event()

        def holder() -> None:
            with store.transaction() as tx:
                tx.execute("INSERT INTO t VALUES ('store')")
                held.set()
                assert release.wait(5)

        def writer() -> None:
            other.conn.execute("PRAGMA busy_timeout = 0")
            assert held.wait(5)
            release.set()
            with other.transaction() as tx:
                tx.execute("INSERT INTO t VALUES ('other')")

        threads = [run(holder), run(writer)]
        for thread, errors in threads:
            thread.join(10)
            assert errors == []
        assert store.conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 2
    finally:
        other.close()


def test_a_limited_write_wait_gives_up_with_database_is_locked(store):
    # What the CLN htlc_accepted hook relies on: it must answer lightningd
    # soon, so it stops waiting for a long follower batch.
    held = threading.Event()
    gave_up = threading.Event()
    outcome: list[BaseException] = []

    def holder() -> None:
        with store.transaction() as tx:
            tx.execute("INSERT INTO t VALUES ('batch')")
            held.set()
            gave_up.wait(5)  # holds the lock until the other side has answered

    def hook() -> None:
        store.limit_write_wait(50)
        assert held.wait(5)
        try:
            with store.transaction() as tx:
                tx.execute("INSERT INTO t VALUES ('hook')")
        except sqlite3.OperationalError as exc:
            outcome.append(exc)
        gave_up.set()

    threads = [run(holder), run(hook)]
    for thread, errors in threads:
        thread.join(10)
        assert errors == []
    assert len(outcome) == 1 and "locked" in str(outcome[0])
    assert [r[0] for r in store.conn.execute("SELECT writer FROM t")] == ["batch"]
    # The lock is free again: this thread writes at once.
    with store.transaction() as tx:
        tx.execute("INSERT INTO t VALUES ('later')")


def _insert(writer: str):
    return lambda tx: tx.execute("INSERT INTO t VALUES (?)", (writer,))


def _writers(store: Store) -> list[str]:
    return [r[0] for r in store.conn.execute("SELECT writer FROM t ORDER BY rowid")]


def test_writes_deferred_while_the_lock_is_busy_come_first_in_the_next_transaction(store):
    # What the CLN hook does with a payment's records when it gave up waiting:
    # no later write of this process (the settlement) may commit before them.
    with store.transaction() as tx:  # the lock is busy: nothing can flush them
        tx.execute("INSERT INTO t VALUES ('batch')")
        store.write_later(_insert("records 1"), "first")
        store.write_later(_insert("records 2"), "second")
        assert store.deferred_writes == 2
    # The flusher thread or this transaction, whichever takes the lock
    # first: either way both come before the settlement, in order.
    with store.transaction() as tx:
        tx.execute("INSERT INTO t VALUES ('settlement')")
    assert _writers(store) == ["batch", "records 1", "records 2", "settlement"]
    assert store.deferred_writes == 0


def test_deferred_writes_survive_a_rolled_back_transaction_and_a_failing_one_is_dropped(
    store, caplog
):
    with store.transaction():  # hold the lock while queueing
        store.write_later(_insert("kept"), "kept")
        store.write_later(lambda tx: tx.execute("INSERT INTO nowhere VALUES (1)"), "the bad one")
        store.write_later(_insert("kept too"), "kept too")
    # The flusher thread or this rolled-back transaction takes the lock first;
    # rolled back, they stay queued: either way each is written once, in order.
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.execute("INSERT INTO t VALUES ('rolled back')")
        raise RuntimeError("boom")
    with store.transaction() as tx:
        tx.execute("INSERT INTO t VALUES ('after')")
    assert _writers(store) == ["kept", "kept too", "after"]
    assert store.deferred_writes == 0
    assert "could not store the bad one" in caplog.text


def test_close_writes_what_is_still_deferred(tmp_path):
    store = Store(tmp_path / "lnplugin.sqlite")
    with store.transaction() as tx:
        tx.execute("CREATE TABLE t (writer TEXT)")
        store.write_later(_insert("records"), "records")
    store.close()
    reopened = Store(tmp_path / "lnplugin.sqlite")
    try:
        assert _writers(reopened) == ["records"]
    finally:
        reopened.close()


def test_close_waits_for_a_transaction_that_ran_queued_writes(tmp_path, caplog):
    """`close` during shutdown while another thread's write transaction has
    run the queued writes but not committed yet: they are neither reported
    lost nor dropped, and that transaction's connection is not closed under it."""
    store = Store(tmp_path / "lnplugin.sqlite", busy_timeout=2)
    with store.transaction() as tx:
        tx.execute("CREATE TABLE t (writer TEXT)")
    inside, finish = threading.Event(), threading.Event()

    def writer() -> None:
        # This process's writer lock, held so that the flusher cannot take
        # the queued write: this thread's transaction runs it instead.
        with store._writer:
            store.write_later(_insert("records"), "the records")
            with store.transaction() as tx:
                assert [r[0] for r in tx.execute("SELECT writer FROM t")] == ["records"]
                inside.set()
                assert finish.wait(30)

    thread, errors = run(writer)
    assert inside.wait(30)
    closing, close_errors = run(store.close)
    # The flusher gives up (the lock is held past the busy timeout), and
    # `close` goes on to what is left.
    deadline = time.monotonic() + 30
    while store._flusher is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    finish.set()
    thread.join(30)
    closing.join(30)
    assert not errors and not close_errors
    assert "closing the store with the write lock still busy" not in caplog.text
    assert store.deferred_writes == 0
    reopened = Store(tmp_path / "lnplugin.sqlite")
    try:
        assert _writers(reopened) == ["records"]
    finally:
        reopened.close()


class _LookHook:
    """The store's deferred-write lock, running `then` once, on the flusher
    thread, just after the flusher looked at the queue and found it empty:
    the moment a `write_later` from another thread (the CLN hook) can land."""

    def __init__(self, store: Store, then) -> None:
        self.lock = threading.Lock()
        self.store = store
        self.then = then
        self.fired = False

    def __enter__(self) -> _LookHook:
        self.lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.lock.release()
        looked = sys._getframe(1).f_code.co_name == "_flush_deferred"
        if looked and not self.fired and not self.store._deferred:
            self.fired = True
            self.then()


def test_a_write_deferred_as_the_flusher_finds_the_queue_empty_is_still_flushed(store):
    # The flusher saw an empty queue and is on its way out when the hook
    # queues another payment's records: they must not wait, unwritten (and
    # lost if the process dies), for some later write of this process.
    hook = _LookHook(store, lambda: store.write_later(_insert("late"), "late"))
    store._deferred_lock = hook
    store.write_later(_insert("first"), "first")
    deadline = time.monotonic() + 10
    while (not hook.fired or store.deferred_writes) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert hook.fired
    assert store.deferred_writes == 0, "queued with no flusher to write it"
    assert _writers(store) == ["first", "late"]


def test_a_failed_transaction_rolls_back_and_frees_the_lock_for_others(store):
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.execute("INSERT INTO t VALUES ('lost')")
        raise RuntimeError("boom")

    def other() -> None:
        store.conn.execute("PRAGMA busy_timeout = 0")
        with store.transaction() as tx:
            tx.execute("INSERT INTO t VALUES ('kept')")

    thread, errors = run(other)
    thread.join(10)
    assert errors == []
    assert [r[0] for r in store.conn.execute("SELECT writer FROM t")] == ["kept"]


def test_a_commit_is_in_the_file_when_the_process_is_killed_right_after_it(tmp_path):
    # The durability the store promises (synchronous=NORMAL in WAL mode): an
    # acknowledged commit survives SIGKILL of the process, with no clean close.
    path = tmp_path / "lnplugin.sqlite"
    script = (
        "import os, signal, sys\n"
        "from lnplugin.store import Store\n"
        "store = Store(sys.argv[1])\n"
        "with store.transaction() as tx:\n"
        "    tx.execute('CREATE TABLE t (writer TEXT)')\n"
        "    tx.execute(\"INSERT INTO t VALUES ('before the kill')\")\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(path)], timeout=60)
    assert proc.returncode == -signal.SIGKILL
    store = Store(path)
    try:
        rows = store.conn.execute("SELECT writer FROM t").fetchall()
        assert [tuple(row) for row in rows] == [("before the kill",)]
        assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    finally:
        store.close()


def test_the_wal_is_checkpointed_off_the_commit_path_so_it_stops_growing(store):
    # Commits never checkpoint (wal_autocheckpoint = 0): the background thread
    # does, and exits once it has caught up. After that the next writes reuse
    # the WAL from its start, so a second batch like the first leaves the file
    # the size it was; with no checkpointer it would double.
    assert store.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    wal = Path(store.path + "-wal")

    def batch() -> None:
        for n in range(200):
            with store.transaction() as tx:
                tx.execute("INSERT INTO t VALUES (?)", ("x" * 2000 + str(n),))

    def caught_up() -> None:
        deadline = time.monotonic() + 30
        assert store.checkpointer is not None
        while store.checkpointer.running:
            assert time.monotonic() < deadline, "the checkpointer never went idle"
            time.sleep(0.05)

    batch()
    caught_up()
    size = wal.stat().st_size
    batch()
    caught_up()
    assert wal.stat().st_size <= size
    assert store.conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 400


def test_a_commit_that_wrote_rows_wakes_waiters_and_one_that_wrote_none_does_not(store):
    # The outbox readers wait for commits and then write their own
    # bookkeeping; if that bookkeeping, finding nothing to do, counted as a
    # commit, each reader would wake itself again at once and spin.
    seen = store.commit_version
    with store.transaction() as tx:
        tx.execute("SELECT COUNT(*) FROM t").fetchone()
        tx.execute("DELETE FROM t WHERE writer = 'nobody'")
    assert store.commit_version == seen
    started = time.monotonic()
    assert store.wait_for_commit(seen, 0.2) == seen
    assert time.monotonic() - started >= 0.15  # it waited: nothing woke it

    with store.transaction() as tx:
        tx.execute("INSERT INTO t VALUES ('one')")
    assert store.wait_for_commit(seen, 5) == seen + 1


def test_a_commit_made_with_wake_false_is_kept_but_wakes_no_waiter(store):
    # For hot bookkeeping no waiter reads (an NWC request's claim): the rows
    # are committed all the same, and waiters find them when they next look.
    seen = store.commit_version
    with store.transaction(wake=False) as tx:
        tx.execute("INSERT INTO t VALUES ('quiet')")
    assert store.commit_version == seen
    assert store.wait_for_commit(seen, 0.2) == seen
    assert [r["writer"] for r in store.conn.execute("SELECT writer FROM t")] == ["quiet"]


def test_a_wal_grown_while_a_reader_held_it_is_cut_back_once_it_restarts(tmp_path, monkeypatch):
    """A reader holding an old snapshot keeps the WAL from restarting, so a
    burst of writes grows the file; once the reader is gone and the WAL has
    been checkpointed, the next write restarts it and the file is cut back
    to the limit rather than keeping its largest size."""
    from lnplugin.store import db

    monkeypatch.setattr(db, "WAL_SIZE_LIMIT", 256 * 1024)
    store = Store(tmp_path / "lnplugin.sqlite")
    try:
        with store.transaction() as tx:
            tx.execute("CREATE TABLE t (writer TEXT)")
        wal = Path(store.path + "-wal")
        reader = sqlite3.connect(store.path, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM t").fetchone()  # pins the snapshot
        for n in range(400):
            with store.transaction() as tx:
                tx.execute("INSERT INTO t VALUES (?)", ("x" * 2000 + str(n),))
        grown = wal.stat().st_size
        assert grown > 4 * db.WAL_SIZE_LIMIT
        reader.execute("COMMIT")
        reader.close()
        store.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        with store.transaction() as tx:  # restarts the WAL from its start
            tx.execute("INSERT INTO t VALUES ('after')")
        assert wal.stat().st_size <= db.WAL_SIZE_LIMIT
        assert store.conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 401
    finally:
        store.close()
