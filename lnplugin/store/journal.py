"""The records journal: captured TLV records the store could not take yet, on disk.

Why: the CLN `htlc_accepted` hook waits at most a second for the SQLite
write lock, then answers `continue` anyway (a payment is never held for our
bookkeeping); lightningd settles the payment and never calls the hook for it
again. The records were then only in the plugin's memory
(`Store.write_later`), so a plugin killed or crashed before the lock freed
lost the boostagram for good, and the settlement was stored without it.
Answering `continue` acknowledges the payment, so the records must be on
disk first, in a way that needs no SQLite lock: one JSON line per capture
appended to `htlc-records.jsonl` in the data dir (0600, like the store).
A line leaves the file only once its write committed, or failed for good
(`forget`); the process that serves the data dir replays what is left
when it starts (`captured_records.replay_journal`), before its follower
can store a settlement.

Durability matches the store's own (`store.db`): each line reaches the
operating system with one `write` before the hook answers, so it survives a
kill or crash of the process, which is the failure this closes. It is
fsynced only when the store is (`synchronous=FULL`): with the default
`NORMAL` the store's last commits do not survive a power cut either, and an
fsync (1 ms at the median, 40+ ms at p99 on this kind of disk) would be paid
inside the hook while lightningd waits.

A crash in the middle of a `write` leaves a torn last line: its hook never
answered (the answer comes after the whole line is written), so lightningd
replays that HTLC, and the torn line is dropped. A line that cannot be read
otherwise is logged and dropped. The file is removed once every entry has
left it. Until then a forgotten entry's line may stay: the file is rewritten
(to a temporary file, then renamed over it) only once it holds more
forgotten lines than pending ones, so draining a long queue costs a few
rewrites, not one of the whole file per entry (n queued captures cost
about n²/2 lines rewritten, as the lock freed).
A forgotten line that a kill leaves behind is replayed at the next start,
which merges to the same row and changes nothing.

Only the process that serves the data dir may write the file: once it
gives the data dir up (`close`), appends are refused (the caller keeps the
capture in memory) and forgets leave the file alone, for the next server
replays what is in it, and its rewrites would drop a line it never read.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import threading
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from lnplugin.datadir import FILE_MODE
from lnplugin.datadir import RECORDS_JOURNAL as JOURNAL_FILE

log = logging.getLogger(__name__)

__all__ = ["JOURNAL_FILE", "Entry", "JournalClosed", "RecordsJournal", "read_entries"]
_HASH = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Entry:
    """One capture the store has not taken yet."""

    id: int
    payment_hash: str
    records: dict[int, bytes]


def _line(payment_hash: str, records: Mapping[int, bytes]) -> bytes:
    """One journal line: the hash and the records in Alby's wire form (base64)."""
    wire = {str(t): base64.b64encode(v).decode() for t, v in sorted(records.items())}
    return (json.dumps({"payment_hash": payment_hash, "records": wire}) + "\n").encode()


def _parse(raw: bytes) -> tuple[str, dict[int, bytes]]:
    """The hash and records of one line; ValueError when it is not one we wrote."""
    try:
        data = json.loads(raw)
        payment_hash, wire = data["payment_hash"], data["records"]
        if not isinstance(payment_hash, str) or not _HASH.fullmatch(payment_hash):
            raise ValueError("no payment hash")
        if not isinstance(wire, dict) or not wire:
            raise ValueError("no records")
        return payment_hash, {int(t): base64.b64decode(v, validate=True) for t, v in wire.items()}
    except (KeyError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(str(exc) or type(exc).__name__) from None


def read_entries(path: Path | str) -> list[tuple[str, dict[int, bytes]]]:
    """The hash and records of each entry in the journal at `path`, read only.

    For another process than the one that serves the data dir (`lnplugin
    backup`): it reads the file, never writes it. A rewrite replaces the
    file whole (a rename), so this reads one version of it; a torn last line
    (an append in progress: its hook has not answered yet) and unreadable
    lines are passed over, as the server drops them."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    entries = []
    for raw in data.split(b"\n")[:-1]:  # the last piece is b"" or a torn line
        with suppress(ValueError):
            entries.append(_parse(raw))
    return entries


class JournalClosed(OSError):
    """An append after this process gave the data dir up (`RecordsJournal.close`)."""


class RecordsJournal:
    """`htlc-records.jsonl`: append, forget once written, read back at start.

    Only the process that serves the data dir (holds its lock) may use it:
    a second process's rewrite would drop the first one's new lines. The
    file is read the first time it is used (`leftovers`, `append`), so an
    entry a previous process left is never rewritten away. `close` ends
    that use when the process gives the data dir up; `leftovers`, called
    when it claims the data dir again, starts it anew.
    """

    def __init__(self, path: Path | str, *, fsync: bool = False) -> None:
        self.path = Path(path)
        self._fsync = fsync
        self._lock = threading.Lock()
        self._pending: dict[int, bytes] | None = None  # None: the file is not read yet
        self._dead = 0  # lines in the file that were forgotten, left for the next rewrite
        self._closed = False
        self._left: list[Entry] = []
        self._next_id = 1

    @property
    def pending(self) -> int:
        """How many entries are in the file (read so far)."""
        with self._lock:
            return len(self._pending or {})

    def leftovers(self) -> list[Entry]:
        """The entries an earlier process left, once (later calls: []).

        After `close` (this process gave the data dir up and claims it again)
        the file is read anew: another process may have served it meanwhile."""
        with self._lock:
            if self._closed:
                self._closed, self._pending, self._dead, self._left = False, None, 0, []
            self._read()
            left, self._left = self._left, []
            return left

    def append(self, payment_hash: str, records: Mapping[int, bytes]) -> int:
        """Write one entry before the caller acknowledges it; its id for `forget`.

        Raises OSError (disk full, permissions) with the file as it was, and
        `JournalClosed` once this process no longer serves the data dir."""
        line = _line(payment_hash, records)
        with self._lock:
            if self._closed:
                raise JournalClosed("this process no longer serves the data dir")
            pending = self._read()
            self._append(line)
            entry_id = self._next_id
            self._next_id += 1
            pending[entry_id] = line
            return entry_id

    def forget(self, entry_id: int) -> None:
        """Take an entry out of the file: its write committed, or failed for good.

        The line itself may stay until enough have left to rewrite the file
        (see the module's docstring). Raises OSError when the file cannot be
        rewritten; the entry then stays and is replayed at the next start,
        which merges to the same row. After `close`, the file is left alone."""
        with self._lock:
            if self._closed:
                return
            pending = self._read()
            if pending.pop(entry_id, None) is None:
                return
            self._dead += 1
            if not pending or self._dead > len(pending):
                self._rewrite(pending)

    def close(self) -> None:
        """This process gives the data dir up: from now on `append` raises
        `JournalClosed` and `forget` leaves the file to the next server."""
        with self._lock:
            self._closed = True

    # -- file handling, under `_lock` -------------------------------------

    def _read(self) -> dict[int, bytes]:
        """The pending entries, reading the file the first time."""
        if self._pending is not None:
            return self._pending
        with suppress(FileNotFoundError):
            os.unlink(self._tmp)  # a rewrite a crash interrupted: the file itself is whole
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
        lines = data.split(b"\n")
        torn = lines.pop()  # b"" when the file ends with a newline
        if torn:
            log.warning(
                "%s: dropped a torn last line (a capture cut off by a crash before "
                "its HTLC was answered; lightningd sends that HTLC again)",
                self.path,
            )
        pending: dict[int, bytes] = {}
        for number, raw in enumerate(lines, 1):
            try:
                payment_hash, records = _parse(raw)
            except ValueError as exc:
                log.error("%s line %d: unreadable entry (%s); dropped", self.path, number, exc)
                continue
            entry = Entry(self._next_id, payment_hash, records)
            self._next_id += 1
            pending[entry.id] = raw + b"\n"
            self._left.append(entry)
        self._pending = pending
        if torn or len(pending) != len(lines):
            self._rewrite(pending)  # so the next line is not appended to a torn one
        return pending

    @property
    def _tmp(self) -> Path:
        return self.path.with_name(self.path.name + ".tmp")

    def _open(self, path: Path, flags: int) -> int:
        fd = os.open(path, flags | os.O_WRONLY | os.O_CREAT, FILE_MODE)
        if os.fstat(fd).st_mode & 0o077:  # an older file an operator loosened
            os.fchmod(fd, FILE_MODE)
        return fd

    def _write_all(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if self._fsync:
            os.fsync(fd)

    def _append(self, line: bytes) -> None:
        fd = self._open(self.path, os.O_APPEND)
        try:
            size = os.fstat(fd).st_size
            try:
                self._write_all(fd, line)
            except OSError:
                with suppress(OSError):  # leave no partial line for the next one to join
                    os.ftruncate(fd, size)
                raise
        finally:
            os.close(fd)

    def _rewrite(self, pending: Mapping[int, bytes]) -> None:
        """Replace the file by the pending lines (atomically), or remove it."""
        if not pending:
            with suppress(FileNotFoundError):
                os.unlink(self.path)
            self._dead = 0
            return
        fd = self._open(self._tmp, os.O_TRUNC)
        try:
            self._write_all(fd, b"".join(pending.values()))
        finally:
            os.close(fd)
        os.replace(self._tmp, self.path)
        self._dead = 0
        if self._fsync:  # the rename itself
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
