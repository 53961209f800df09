"""SQLite connections: WAL, a busy timeout, one connection per thread.

Writers take `BEGIN IMMEDIATE` so two writers never deadlock on a lock
upgrade. Within the process they first queue on one writer lock per database
file: SQLite's busy handler sleeps in growing steps (up to 100 ms) and polls,
so eight API threads contending for the write lock waited up to a second for
a lock that was free for most of that time; a Python lock hands over at the
moment of release. Reads never take it (WAL readers do not block). The busy
timeout still covers writers in other processes (the CLI, a second server).
`synchronous=FULL` because an acknowledged invoice or settlement must survive
a power cut, not only a process crash.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import sqlite_utils

from lnplugin.datadir import DataDirError, ensure_dir, private_database
from lnplugin.store.migrations import migrate

BUSY_TIMEOUT_MS = 10_000

# One writer lock per database file, shared by every Store on it in this
# process. Re-entrant so a thread that already holds it (a nested
# `transaction`, or a second Store on the same file) never waits on itself.
_WRITER_LOCKS: dict[str, threading.RLock] = {}
_WRITER_LOCKS_GUARD = threading.Lock()


def _writer_lock(path: str) -> threading.RLock:
    if path == ":memory:":  # every connection is its own database
        return threading.RLock()
    key = str(Path(path).resolve())
    with _WRITER_LOCKS_GUARD:
        return _WRITER_LOCKS.setdefault(key, threading.RLock())


class StoreError(Exception):
    """The database file cannot be opened or is damaged; one line naming the file
    and what to do, for the command line to print instead of a traceback."""


def open_error(path: Path | str, exc: sqlite3.Error | OSError) -> StoreError:
    """A `StoreError` for an SQLite or OS failure while opening the database `path`."""
    reason = str(exc) if isinstance(exc, sqlite3.Error) else (exc.strerror or str(exc))
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
        advice = "it is damaged; restore it from a backup, or move it aside to start empty"
    elif "locked" in reason or "busy" in reason:
        advice = "another process holds a write lock on it; try again when it has finished"
    else:
        advice = "check that this user can create and write it and its directory"
    return StoreError(f"cannot open {path} ({reason}): {advice}")


class Store:
    """Owns the database file; hands each thread its own connection."""

    def __init__(
        self, path: Path | str, *, synchronous: str = "FULL", busy_timeout: float | None = None
    ) -> None:
        """Raises `StoreError` (or `DataDirError` for its directory) when the file
        cannot be opened, written or migrated."""
        self.path = str(path)
        self._synchronous = synchronous
        self._busy_ms = BUSY_TIMEOUT_MS if busy_timeout is None else int(busy_timeout * 1000)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._writer = _writer_lock(self.path)
        # Bumped after every write commit in this process; SSE streams and the
        # webhook worker wait on it instead of polling.
        self._commits = threading.Condition()
        self.commit_version = 0
        try:
            if self.path != ":memory:":
                ensure_dir(Path(self.path).parent)
                private_database(Path(self.path))
            with self.transaction() as tx:
                migrate(sqlite_utils.Database(tx))
        except DataDirError:
            raise
        except (OSError, sqlite3.Error) as exc:
            self.close()
            raise open_error(self.path, exc) from None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=self._busy_ms / 1000
        )
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        # Switching a new file to WAL takes an exclusive lock and does not
        # always go through the busy handler, so a second process opening the
        # same new file at the same moment retries here.
        for attempt in range(50):
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError:
                if attempt == 49:
                    raise
                time.sleep(0.02)
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        with self._lock:
            self._all.append(conn)
        return conn

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection, for reads (autocommit, snapshot per statement)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def limit_write_wait(self, ms: int) -> None:
        """Make this thread's writes give up after `ms` milliseconds of waiting
        for the write lock (in-process and SQLite's) with "database is locked",
        instead of the store's busy timeout (`--busy-timeout`).

        For a caller that must not stall, such as the CLN `htlc_accepted` hook:
        lightningd holds the HTLC until the hook answers, so losing the
        records is better than holding a payment behind a long follower batch.
        """
        self._local.write_wait = ms / 1000
        self.conn.execute(f"PRAGMA busy_timeout = {int(ms)}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: everything inside commits together or not at all.

        Holds the process's writer lock for this file from before `BEGIN
        IMMEDIATE` until after COMMIT/ROLLBACK. Nested use joins the outer
        transaction (it already holds the lock). Never open a transaction while
        holding a lock another writer may take inside its own transaction.
        """
        conn = self.conn
        if conn.in_transaction:  # nested use joins the outer transaction
            yield conn
            return
        wait = getattr(self._local, "write_wait", self._busy_ms / 1000)
        if not self._writer.acquire(timeout=wait):
            raise sqlite3.OperationalError("database is locked")
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            if conn.in_transaction:  # a failed COMMIT: never leave it open past the lock
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            self._writer.release()
        with self._commits:
            self.commit_version += 1
            self._commits.notify_all()

    def wait_for_commit(
        self, seen: int, timeout: float, stop: threading.Event | None = None
    ) -> int:
        """Block until a commit newer than `seen` (or the timeout); returns the version.

        With `stop`, returns at once when it is set. It is checked under the
        same lock `wake_waiters` takes, so a thread that sets `stop` and then
        calls `wake_waiters` can never be missed by a waiter about to sleep.
        """
        with self._commits:
            if self.commit_version == seen and not (stop is not None and stop.is_set()):
                self._commits.wait(timeout)
            return self.commit_version

    def wake_waiters(self) -> None:
        """Wake every `wait_for_commit` caller now, e.g. so a stopping thread exits
        (set its `stop` event first)."""
        with self._commits:
            self._commits.notify_all()

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction, so several queries see one consistent state."""
        conn = self.conn
        if conn.in_transaction:
            yield conn
            return
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            with suppress(sqlite3.Error):
                conn.close()
        self._local = threading.local()
