"""`lnplugin backup`: a consistent copy of the store while the server runs.

Copying `lnplugin.sqlite` with `cp` while lnplugin writes can capture a file
that is half one transaction and half another, and misses whatever is still
in the `-wal` file. SQLite's online backup API reads the database through a
read transaction instead: in WAL mode that transaction sees one committed
state (every invoice acknowledged before it began, nothing half-written) and
never blocks the server's writers. The copy is made in one step, so it is
never restarted by a write landing mid-copy.

The copy is written beside its destination under a temporary name, created
0600 (it holds preimages and webhook secrets, like the store), switched out
of WAL mode so it is one self-contained file, checked with `quick_check`,
fsynced, and only then renamed into place: a crash or a full disk leaves
either the old file or no file, never a torn backup under the final name.

The CLN plugin acknowledges a payment's keysend records before they are in
the store when its write lock is busy: they wait in the records journal
(`htlc-records.jsonl`, `journal.py`) until it frees. The backup reads that
file first and stores its entries in the copy, as the server will in the
store, so a restore does not lose them (the node does not keep them, and the
follower re-reads the settlement from the node). Read before the store, an
entry either is still in the file or was stored by then, and is in the copy.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from lnplugin.datadir import owned_file, written_in_whole
from lnplugin.store import captured_records
from lnplugin.store.db import BUSY_TIMEOUT_MS
from lnplugin.store.journal import JOURNAL_FILE, read_entries
from lnplugin.store.migrations import read_only_uri


class BackupError(Exception):
    """The backup could not be made; one line saying why."""


@dataclass(frozen=True, slots=True)
class BackupResult:
    path: Path
    bytes: int
    invoices: int
    schema_version: int
    queued_records: int = 0  # the CLN plugin's queued keysend records taken in


def backup(source: Path, target: Path, *, force: bool = False) -> BackupResult:
    """Copy the database `source` to `target` consistently, online.

    Refuses an existing `target` unless `force`; the source must exist (a
    missing one would otherwise be created empty by `sqlite3.connect`).
    """
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise BackupError(f"no lnplugin store at {source}; check --data-dir (LNPLUGIN_DATA_DIR)")
    if target.exists() and not force:
        raise BackupError(f"{target} exists; choose another file or pass --force to replace it")
    if target.resolve() == source.resolve():
        raise BackupError(f"{target} is the store itself")
    if owned_file(source.parent, target):
        raise BackupError(f"{target} is one of the data dir's own files; choose another")
    if not target.parent.exists():
        raise BackupError(f"{target.parent} does not exist; create it first")
    if not target.parent.is_dir():
        raise BackupError(f"{target.parent} is not a directory")
    try:
        queued = read_entries(source.parent / JOURNAL_FILE)  # before the store: see above
    except OSError as exc:
        raise BackupError(
            f"cannot read {source.parent / JOURNAL_FILE}: {exc.strerror or exc}"
        ) from None
    try:
        with written_in_whole(target) as partial:
            src = sqlite3.connect(read_only_uri(source), uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
            try:
                dst = sqlite3.connect(partial, isolation_level=None)
                try:
                    src.backup(dst)  # pages=-1: the whole database in one step, one snapshot
                    _take_in(dst, queued)
                    # The copy inherits WAL mode; make it one file that opens anywhere.
                    dst.execute("PRAGMA journal_mode = DELETE")
                    verdict = dst.execute("PRAGMA quick_check").fetchone()[0]
                    if verdict != "ok":
                        raise BackupError(f"the copy failed its integrity check: {verdict}")
                    count = dst.execute("SELECT COUNT(*) FROM invoices").fetchone()[0]
                    version = dst.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
                finally:
                    dst.close()
            finally:
                src.close()
    except sqlite3.Error as exc:
        raise BackupError(f"cannot back up {source}: {exc}") from None
    except OSError as exc:
        raise BackupError(f"cannot write {target}: {exc.strerror or exc}") from None
    return BackupResult(target, target.stat().st_size, int(count), int(version or 0), len(queued))


def _take_in(copy: sqlite3.Connection, queued: list[tuple[str, dict[int, bytes]]]) -> None:
    """Store the journal's queued captures in the copy, as the server's
    queued writes will in the store (merged: one stored already changes nothing)."""
    if not queued:
        return
    copy.execute("BEGIN IMMEDIATE")
    try:
        for payment_hash, records in queued:
            captured_records.capture_in(copy, payment_hash, records)
    except sqlite3.Error as exc:
        copy.execute("ROLLBACK")
        raise BackupError(
            f"cannot store the keysend records queued in {JOURNAL_FILE} in the copy: {exc}"
        ) from None
    copy.execute("COMMIT")
