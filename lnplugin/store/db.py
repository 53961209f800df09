"""SQLite connections: WAL, a busy timeout, one connection per thread.

Writers take `BEGIN IMMEDIATE` so two writers never deadlock on a lock
upgrade. Within the process they first queue on one writer lock per database
file: SQLite's busy handler sleeps in growing steps (up to 100 ms) and polls,
so eight API threads contending for the write lock waited up to a second for
a lock that was free for most of that time; a Python lock hands over at the
moment of release. Reads never take it (WAL readers do not block). The busy
timeout still covers writers in other processes (the CLI, a second server).

Durability: `synchronous=NORMAL` in WAL mode. A commit is in the WAL file (the
operating system's cache) before it is acknowledged, so it survives a crash
or kill of the process; it is not fsynced at each commit, so a power cut or
kernel crash may lose the last commits (never corrupt the file). FULL fsynced
every commit inside the writer lock: on this kind of disk fsync is ~1 ms at
the median but 40+ ms at p99, and eight queued writers paid each slow one.
`Store(path, synchronous="FULL")` restores power-cut durability.

Checkpoints (copying the WAL back into the database file, with fsyncs) run in
a background thread instead of inside whichever commit crossed SQLite's
1,000-page threshold, which stalled that request and every writer queued
behind it. The thread runs while commits arrive and exits when idle.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from lnplugin.datadir import DataDirError, ensure_dir, lock_holder, private_database
from lnplugin.store import events
from lnplugin.store.journal import JOURNAL_FILE, RecordsJournal
from lnplugin.store.migrations import MIGRATIONS, SchemaTooNew, current_version, migrate
from lnplugin.store.revocations import RevocationMark

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000
# How often the background checkpointer runs while commits arrive. Short
# enough that the WAL stays small (a few hundred commits at most), long enough
# that one checkpoint's fsyncs cover many commits.
CHECKPOINT_INTERVAL = 0.2

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


WAL_SIZE_LIMIT = 64 * 1024 * 1024  # bytes a WAL file keeps after it restarts


class StoreError(Exception):
    """The database file cannot be opened or is damaged; one line naming the file
    and what to do, for the command line to print instead of a traceback."""


def open_error(path: Path | str, exc: sqlite3.Error | OSError) -> StoreError:
    """A `StoreError` for an SQLite or OS failure while opening the database `path`."""
    reason = str(exc) if isinstance(exc, sqlite3.Error) else (exc.strerror or str(exc))
    return StoreError(f"cannot open {path} ({reason}): {_advice(exc, reason)}")


def read_error(exc: sqlite3.Error) -> StoreError:
    """A `StoreError` for an SQLite failure after the store opened (a damaged
    page is only found when a query reaches it)."""
    return StoreError(
        f"the store (lnplugin.sqlite in the data dir) failed ({exc}): {_advice(exc, str(exc))}"
    )


def _advice(exc: sqlite3.Error | OSError, reason: str) -> str:
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
        return "it is damaged; restore it from a backup, or move it aside to start empty"
    if "locked" in reason or "busy" in reason:
        return "another process holds a write lock on it; try again when it has finished"
    return (
        "check that this user can create and write it and its directory "
        "(the data dir: --data-dir / LNPLUGIN_DATA_DIR)"
    )


class Checkpointer:
    """Copies a WAL file back into its database in a background thread.

    Left to SQLite, the commit that crosses 1,000 WAL pages checkpoints in its
    own thread, fsyncs and all, while its caller (and every writer queued on
    the same lock) waits. Here `poke()` after a commit is enough: a thread
    checkpoints every `interval` seconds while commits arrive and exits when
    they stop, so an idle process keeps no thread. Connections writing the
    file set `PRAGMA wal_autocheckpoint = 0`.
    """

    def __init__(self, path: str, interval: float = CHECKPOINT_INTERVAL) -> None:
        self.path = path
        self.interval = interval
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._due = False
        self._conn: sqlite3.Connection | None = None
        self._stop = threading.Event()

    @property
    def running(self) -> bool:
        with self._lock:
            return self._thread is not None

    def poke(self) -> None:
        """Note that the WAL grew; start the thread if it is not running."""
        with self._lock:
            self._due = True
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="lnplugin-checkpoint", daemon=True
                )
                self._thread.start()

    def _loop(self) -> None:
        """PASSIVE never waits for readers or writers: it copies what it can and
        the rest goes next round. It takes no writer lock, so commits proceed
        while it writes and fsyncs the database file."""
        while True:
            stopping = self._stop.wait(self.interval)
            with self._lock:
                # Stopping with commits pending is fine: closing the last
                # connection checkpoints the whole WAL.
                if stopping or not self._due:
                    self._thread = None
                    return
                self._due = False
                if self._conn is None:
                    self._conn = sqlite3.connect(
                        self.path, isolation_level=None, check_same_thread=False
                    )
                conn = self._conn
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as exc:  # the next round retries; the WAL stays valid
                log.warning("WAL checkpoint of %s failed: %s", self.path, exc)

    def close(self) -> None:
        """Stop the thread and close its connection; a later `poke` starts afresh."""
        self._stop.set()
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join()
        self._stop.clear()
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(sqlite3.Error):
                conn.close()


def _refuse_migrating_a_served_store(path: str, conn: sqlite3.Connection) -> None:
    """Raise `StoreError` when the store at `path` needs migrating and another
    process serves its data dir (holds the lock, `datadir.lock_holder`).

    Why: every command opens the store, and opening migrates it. A newer
    lnplugin's `token list` run before the older server was restarted
    migrated the store under that server, which went on writing into a
    schema it does not know. The server that takes the lock migrates it."""
    version, latest = current_version(conn), max(MIGRATIONS)
    if version >= latest or path == ":memory:":
        return
    pid = lock_holder(Path(path).parent)
    if pid is not None:
        raise StoreError(
            f"the store at {path} needs migrating from schema {version} to {latest}, but a "
            f"server (pid {pid}) is running on it: restart that server with this version "
            "first (it migrates the store as it starts)"
        )


def is_lock_contention(exc: BaseException) -> bool:
    """Whether `exc` is a writer that gave up waiting for the write lock (held in
    this process or another), rather than a store that cannot be written."""
    text = str(exc)
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


@dataclass(eq=False, slots=True)
class _Deferred:
    """One `write_later` write; compared by identity (`eq=False`), so the
    transaction that ran it removes exactly it from the queue, whatever else
    came or went."""

    write: Callable[[sqlite3.Connection], object]
    what: str
    done: Callable[[], None] | None
    durable: bool
    held_up: bool = False  # its failure for want of room is logged


def _out_of_room(exc: BaseException) -> bool:
    """SQLITE_FULL / SQLITE_IOERR (primary code in the low byte): the disk,
    not the write, failed; the same write succeeds once there is room."""
    return isinstance(exc, sqlite3.Error) and (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in (
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_IOERR,
    )


def _outbox_head(conn: sqlite3.Connection) -> int:
    """The outbox's last sequence number (as `events.last_seq`)."""
    return int(conn.execute("SELECT MAX(seq) FROM events").fetchone()[0] or 0)


def _types_after(conn: sqlite3.Connection, seq: int) -> frozenset[str]:
    """The types of the outbox events past `seq` (those of the open
    transaction), and `events.HAS_INVOICE_WEBHOOK` when one of them is of
    an invoice with its own webhook URL."""
    rows = conn.execute(
        "SELECT DISTINCT e.type, i.webhook_url IS NOT NULL FROM events e"
        " LEFT JOIN invoices i ON i.id = e.invoice_id WHERE e.seq > ?",
        (seq,),
    ).fetchall()
    types = {row[0] for row in rows}
    if any(row[1] for row in rows):
        types.add(events.HAS_INVOICE_WEBHOOK)
    return frozenset(types)


class Store:
    """Owns the database file; hands each thread its own connection."""

    def __init__(
        self,
        path: Path | str,
        *,
        synchronous: str = "NORMAL",
        busy_timeout: float | None = None,
        checkpoint_interval: float | None = CHECKPOINT_INTERVAL,
    ) -> None:
        """Raises `StoreError` (or `DataDirError` for its directory) when the file
        cannot be opened, written or migrated, or needs migrating while another
        process serves it. `checkpoint_interval=None` leaves checkpoints to
        SQLite (in the committing thread)."""
        self.path = str(path)
        self._synchronous = synchronous
        self.checkpointer = (
            Checkpointer(self.path, checkpoint_interval)
            if checkpoint_interval is not None and self.path != ":memory:"
            else None
        )
        self._busy_ms = BUSY_TIMEOUT_MS if busy_timeout is None else int(busy_timeout * 1000)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._writer = _writer_lock(self.path)
        # Bumped after every write commit in this process; SSE streams and the
        # webhook worker wait on it instead of polling.
        self._commits = threading.Condition()
        self.commit_version = 0
        # Events set after waking commits (`on_commit`), with the outbox event
        # types each waits for (None: any). Replaced whole, never changed in place.
        self._listeners: dict[threading.Event, frozenset[str] | None] = {}
        # Writes accepted while the write lock was busy (`write_later`), in
        # order; written by the next write transaction of this process, or by
        # the flusher thread.
        self._deferred: deque[_Deferred] = deque()
        self._deferred_lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        self._closing = threading.Event()
        # Captured records the hook could not write yet, on disk
        # (`captured_records.capture_later`); None for an in-memory store.
        self.journal = (
            RecordsJournal(Path(self.path).parent / JOURNAL_FILE, fsync=synchronous == "FULL")
            if self.path != ":memory:"
            else None
        )
        # Changed by every token revocation, so a server can keep verified
        # tokens in memory (`tokens.LiveTokens`); None for an in-memory store.
        self.revocations = (
            RevocationMark(Path(self.path).parent) if self.path != ":memory:" else None
        )
        try:
            if self.path != ":memory:":
                ensure_dir(Path(self.path).parent)
                private_database(Path(self.path))
            with self.transaction() as tx:
                _refuse_migrating_a_served_store(self.path, tx)
                migrate(tx)
        except DataDirError:
            raise
        except StoreError:
            self.close()
            raise
        except SchemaTooNew as exc:
            self.close()
            raise StoreError(f"cannot open {path}: {exc}") from None
        except (OSError, sqlite3.Error) as exc:
            self.close()
            raise open_error(self.path, exc) from None

    def _open(self) -> sqlite3.Connection:
        """A connection for reads: autocommit, rows by name, the busy timeout."""
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=self._busy_ms / 1000
        )
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        return conn

    def _connect(self) -> sqlite3.Connection:
        """A thread's connection (`conn`): `_open`'s, set up for writing too."""
        conn = self._open()
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
        # A WAL that grew under a burst (a checkpoint cannot restart it while
        # readers keep using its frames) is cut back to this once it restarts,
        # rather than keeping its largest size for the life of the process.
        conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        if self.checkpointer is not None:
            conn.execute("PRAGMA wal_autocheckpoint = 0")  # the checkpointer thread does it
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
        lightningd holds the HTLC until the hook answers, so a payment must not
        wait behind a long follower batch; the hook hands what it could not
        write to `write_later` instead.
        """
        self._local.write_wait = ms / 1000
        self.conn.execute(f"PRAGMA busy_timeout = {int(ms)}")

    def write_later(
        self,
        write: Callable[[sqlite3.Connection], object],
        what: str,
        *,
        done: Callable[[], None] | None = None,
        durable: bool = False,
    ) -> None:
        """Have `write(tx)` done as soon as the write lock is free, in order.

        For a caller that must answer at once and must not lose what it was
        given, such as the CLN `htlc_accepted` hook when the lock is busy for
        longer than it may wait (`limit_write_wait`): the records of a payment
        lightningd is about to settle. Queued writes are done at the start of
        the next write transaction of this process, before anything else it
        writes, so no later write (the follower storing the settlement, say)
        can commit before them; a background thread takes the lock for them
        when no other writer comes. `close` does what is left. Each runs in a
        savepoint: one that fails is logged (`what` names it) and dropped
        without undoing the rest.

        The queue is in memory only: a process killed before the lock frees
        loses it. A caller that must not lose the write keeps a copy on disk
        first (`durable=True`: the records journal, `captured_records.
        capture_later`) and passes `done`, called once the write has left the
        queue for good (its transaction committed, with it or, when it
        failed, without it) to drop that copy; never before the commit.
        """
        with self._deferred_lock:
            self._deferred.append(_Deferred(write, what, done, durable))
            self._start_flusher()

    def _start_flusher(self) -> None:
        """Start the flusher thread unless it runs (hold `_deferred_lock`)."""
        if self._flusher is None:
            self._flusher = threading.Thread(
                target=self._flush_deferred, name="lnplugin-deferred-writes", daemon=True
            )
            self._flusher.start()

    @property
    def deferred_writes(self) -> int:
        """How many `write_later` writes wait for the write lock."""
        with self._deferred_lock:
            return len(self._deferred)

    def _run_deferred(self, conn: sqlite3.Connection) -> list[_Deferred]:
        """Do the queued writes inside the caller's transaction; those that ran.

        They leave the queue only once that transaction commits (the caller
        hands them to `_deferred_committed`): rolled back, they stay for the
        next one."""
        with self._deferred_lock:
            queued = list(self._deferred)
        for item in queued:
            conn.execute("SAVEPOINT deferred_write")
            try:
                item.write(conn)
            except Exception as exc:
                if _out_of_room(exc):
                    # Disk full or an I/O error: not this write's fault, and
                    # the caller's own writes meet it too. It stays queued,
                    # first again, and the caller fails: dropped here, the
                    # caller's retry stored the settlement without its
                    # records, which no later replay may add to a paid row.
                    self._report_kept(item, exc)
                    raise
                if not conn.in_transaction:
                    # SQLite undid the whole transaction for another reason
                    # (out of memory, a damaged database): drop this write,
                    # keep the others, fail the caller. A durable copy
                    # stays, for the next start.
                    kept = "; kept on disk for the next start" if item.durable else ""
                    log.error("could not store %s (%s); dropped%s", item.what, exc, kept)
                    with self._deferred_lock, suppress(ValueError):
                        self._deferred.remove(item)
                    raise
                log.error("could not store %s (%s); dropped", item.what, exc)
                conn.execute("ROLLBACK TO deferred_write")
            conn.execute("RELEASE deferred_write")
        return queued

    @staticmethod
    def _report_kept(item: _Deferred, exc: BaseException) -> None:
        """Log, once per write, that a disk that is full (or failing) holds it up."""
        if item.held_up:
            return
        item.held_up = True
        log.error("could not store %s yet (%s); kept queued, tried again first", item.what, exc)

    def _deferred_committed(self, ran: list[_Deferred]) -> None:
        """Take the writes a committed transaction ran out of the queue: by
        identity, since `close` may have emptied it meanwhile and the hook
        queued more, which a count of them would have taken instead."""
        gone = set(ran)
        with self._deferred_lock:
            self._deferred = deque(item for item in self._deferred if item not in gone)

    @staticmethod
    def _deferred_done(ran: list[_Deferred]) -> None:
        """Tell the callers of committed writes (after the writer lock is
        released: dropping a disk copy is file work no writer need wait for)."""
        for item in ran:
            if item.done is None:
                continue
            try:
                item.done()
            except Exception as exc:  # the disk copy stays; replaying it changes nothing
                log.warning("stored %s, but could not note it (%s)", item.what, exc)

    def _flush_deferred(self) -> None:
        """The flusher thread: take the write lock (the full busy timeout, again
        and again) until the queue is empty; once the store is closing, one
        more try only."""
        try:
            while True:
                with self._deferred_lock:
                    if not self._deferred:
                        # Under the lock `write_later` looks at it under:
                        # one that queues after this starts a flusher anew.
                        self._flusher = None
                        return
                try:
                    with self.transaction():
                        pass  # `transaction` does the queued writes first
                except sqlite3.Error as exc:
                    if self._closing.is_set():
                        return
                    # Contention has already waited out the busy timeout.
                    contended = is_lock_contention(exc)
                    # A full disk is logged once per write (`_report_kept`),
                    # not at every retry while it stays full.
                    if not contended and not _out_of_room(exc):
                        log.warning("deferred store writes failed (%s); retrying", exc)
                    self._closing.wait(0.05 if contended else 1.0)
        finally:
            with self._deferred_lock:
                if self._flusher is threading.current_thread():
                    self._flusher = None
            self._release_thread_conn()

    def _release_thread_conn(self) -> None:
        """Close this thread's connection (a thread that is about to end)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            return
        self._local.conn = None
        with self._lock:
            if conn in self._all:
                self._all.remove(conn)
        with suppress(sqlite3.Error):
            conn.close()

    @contextmanager
    def transaction(self, wake: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction: everything inside commits together or not at all.

        Holds the process's writer lock for this file from before `BEGIN
        IMMEDIATE` until after COMMIT/ROLLBACK. Nested use joins the outer
        transaction (it already holds the lock). Never open a transaction while
        holding a lock another writer may take inside its own transaction.

        Its commit wakes the threads in `wait_for_commit` (the event hub, the
        webhook, rss::payment and NWC workers). `wake=False` is for a hot
        transaction that writes only bookkeeping none of them reads (an NWC
        request's claim, a signed request's nonce, an LNURL-auth k1, the
        workers' own delivery, fetch and notification rows, which each worker
        goes on with itself): waking four threads for a claim cost an NWC
        `make_invoice` about 1.2 ms of its ~7. A quiet transaction that did
        append outbox events wakes them all the same (two reads of the
        outbox's head, ~10 µs), so `wake=False` can make nothing late.
        """
        conn = self.conn
        if conn.in_transaction:  # nested use joins the outer transaction
            yield conn
            return
        wait = getattr(self._local, "write_wait", self._busy_ms / 1000)
        if not self._writer.acquire(timeout=wait):
            raise sqlite3.OperationalError("database is locked")
        ran: list[_Deferred] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            changes = conn.total_changes
            # A listener that waits for some event types only needs to know
            # which this transaction appends: its outbox head before and after.
            typed = any(types is not None for types in self._listeners.values())
            head = _outbox_head(conn) if typed or not wake else None
            ran = self._run_deferred(conn) if self._deferred else []
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            changed = conn.total_changes != changes
            # The outbox event types written (None: not looked at).
            appended = _types_after(conn, head) if changed and head is not None else None
            wake = wake or bool(appended)
            conn.execute("COMMIT")
            if ran:
                self._deferred_committed(ran)
        finally:
            if conn.in_transaction:  # a failed COMMIT: never leave it open past the lock
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            self._writer.release()
        if ran:
            self._deferred_done(ran)
        # A transaction that wrote no row wakes no one: a waiter whose own
        # bookkeeping found nothing to do would otherwise wake itself (and
        # every other waiter) again at once, and loop.
        if not changed:
            return
        if wake:
            with self._commits:
                self.commit_version += 1
                self._commits.notify_all()
            for event, types in self._listeners.items():
                # A commit that appended no event (a delivery made due again,
                # say) still wakes every listener, as it always did.
                if types is None or not appended or types & appended:
                    event.set()
        if self.checkpointer is not None:
            self.checkpointer.poke()

    def on_commit(self, event: threading.Event, types: Iterable[str] | None = None) -> None:
        """Set `event` after every commit that wakes `wait_for_commit` callers,
        or, with `types`, only after those that appended one of those outbox
        event types or none at all.

        Why: a worker that waits on its own event needs no thread of its own
        turning commits into wake-ups (each such hop cost two context
        switches a commit), and one that reads only some events (rss::payment
        fetches follow settlements, NWC notifications settlements and
        accepted holds) is not woken by every invoice created. It still
        finds everything past its cursor when it runs, woken by its events
        or by its idle timeout.
        """
        with self._commits:
            self._listeners = {
                **self._listeners,
                event: None if types is None else frozenset(types),
            }

    def off_commit(self, event: threading.Event) -> None:
        with self._commits:
            self._listeners = {e: t for e, t in self._listeners.items() if e is not event}

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
    def reader(self) -> Iterator[sqlite3.Connection]:
        """A connection of its own, for reads that a streamed response goes on
        with from other threads, closed on exit.

        Why: `conn` belongs to a thread. A response body too long for one
        piece is pulled on whichever worker thread is free next
        (`lnplugin.run.asgi`), while the thread that began it serves other
        requests with its own connection, writes included. A body that read
        through that connection from elsewhere ran its SELECTs inside
        another request's transaction: that transaction's BEGIN or COMMIT
        failed ("another row available", "no transaction is active", false
        "store is busy" 503s), and its own reads could see a stale snapshot.
        """
        conn = self._open()
        try:
            yield conn
        finally:
            conn.close()

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
        """Close every connection, after the writes `write_later` still holds
        (one more wait of up to the busy timeout for the lock; what cannot be
        written then is logged: as lost, or as kept on disk for the next start).

        It waits for this process's write transaction in progress, if any,
        before it looks at what is left: that transaction may have run
        queued writes it has not committed yet, which are neither lost nor
        to be dropped."""
        self._closing.set()
        with self._deferred_lock:
            if self._deferred:
                self._start_flusher()
            flusher = self._flusher
        if flusher is not None and flusher is not threading.current_thread():
            flusher.join()
        # Only with something left: nothing else can be misreported, and a
        # close must not wait on another Store's long transaction for nothing.
        held = bool(self.deferred_writes) and self._writer.acquire(timeout=self._busy_ms / 1000)
        try:
            with self._deferred_lock:
                left, self._deferred = list(self._deferred), deque()
        finally:
            if held:
                self._writer.release()
        self._log_unwritten(left)
        if self.checkpointer is not None:
            self.checkpointer.close()
        if self.revocations is not None:
            self.revocations.close()
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            with suppress(sqlite3.Error):
                conn.close()
        self._local = threading.local()
        self._closing.clear()  # a closed Store opens connections again when used

    @staticmethod
    def _log_unwritten(left: list[_Deferred]) -> None:
        kept = [item.what for item in left if item.durable]
        lost = [item.what for item in left if not item.durable]
        if kept:
            log.warning(
                "closing the store with the write lock still busy: %s kept on disk, "
                "stored at the next start",
                "; ".join(kept),
            )
        if lost:
            log.error("closing the store with the write lock still busy: lost %s", "; ".join(lost))
