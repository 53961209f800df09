"""The records journal (`store.journal`): captures the CLN hook acknowledged
while the store was busy, on disk until their write commits, replayed by
the next start. The plugin process itself, killed with such a capture
pending, is in tests/test_cln_plugin.py."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from lnplugin.config import load_settings
from lnplugin.service import Service
from lnplugin.store import Store, captured_records
from lnplugin.store.journal import JOURNAL_FILE, RecordsJournal, read_entries
from tests.e2e import wait_for

GOOD = "11" * 32
BAD = "ff" * 32
OTHER = "22" * 32
RECORDS = {7629169: b'{"message":"great episode"}', 34349334: b"hello"}


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def store(data_dir: Path) -> Iterator[Store]:
    opened = Store(data_dir / "lnplugin.sqlite")
    yield opened
    opened.close()


def _journal(data_dir: Path) -> Path:
    return data_dir / JOURNAL_FILE


def _flush(store: Store) -> None:
    """Any write transaction runs the queued writes first."""
    with store.transaction():
        pass


def _stored(store: Store, payment_hash: str) -> dict[int, bytes]:
    return captured_records.get(store.conn, payment_hash)


def test_a_torn_last_line_is_dropped_and_the_lines_before_it_replayed(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A previous process wrote one whole entry, then died in the middle of
    # the next line's write (before its hook could answer).
    RecordsJournal(_journal(data_dir)).append(GOOD, RECORDS)
    with _journal(data_dir).open("ab") as handle:
        handle.write(b'{"payment_hash": "' + OTHER.encode()[:20])

    journal = RecordsJournal(_journal(data_dir))
    with caplog.at_level(logging.WARNING, logger="lnplugin.store.journal"):
        (left,) = journal.leftovers()
    assert "torn last line" in caplog.text
    assert (left.payment_hash, left.records) == (GOOD, RECORDS)
    # The torn piece is gone from the file, so the next entry gets a line of its own.
    journal.append(OTHER, {696969: b"acct"})
    lines = _journal(data_dir).read_bytes().split(b"\n")
    assert lines.pop() == b""
    assert [json.loads(line)["payment_hash"] for line in lines] == [GOOD, OTHER]

    # The store's side: replayed at start, written, then gone from the journal.
    store = Store(data_dir / "lnplugin.sqlite")
    try:
        assert captured_records.replay_journal(store) == 2
        _flush(store)
        assert _stored(store, GOOD) == RECORDS
        assert _stored(store, OTHER) == {696969: b"acct"}
        wait_for(lambda: not _journal(data_dir).exists(), "the journal emptied")
        assert store.deferred_writes == 0
    finally:
        store.close()


def test_an_entry_whose_write_fails_for_good_is_logged_and_dropped_not_replayed_again(
    data_dir: Path, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    # A write that can never succeed (here the database refuses the row), and
    # a line that is not an entry at all, between two good ones.
    with store.transaction() as tx:
        tx.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON htlc_records "
            f"WHEN NEW.payment_hash = '{BAD}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    written = RecordsJournal(_journal(data_dir))
    written.append(BAD, RECORDS)
    with _journal(data_dir).open("ab") as handle:
        handle.write(b'{"payment_hash": "not a hash", "records": {}}\n')
    written.append(GOOD, RECORDS)

    with caplog.at_level(logging.WARNING):
        assert captured_records.replay_journal(store) == 2
        _flush(store)
        wait_for(lambda: not _journal(data_dir).exists(), "the journal emptied")
    assert "line 2: unreadable entry" in caplog.text
    assert f"could not store TLV records for {BAD} (refused); dropped" in caplog.text
    assert _stored(store, GOOD) == RECORDS and _stored(store, BAD) == {}
    assert store.deferred_writes == 0

    # The next start has nothing left to replay, and logs nothing again.
    store.close()
    caplog.clear()
    reopened = Store(data_dir / "lnplugin.sqlite")
    try:
        with caplog.at_level(logging.WARNING):
            assert captured_records.replay_journal(reopened) == 0
            _flush(reopened)
        assert "could not store" not in caplog.text
        assert reopened.deferred_writes == 0
    finally:
        reopened.close()


def test_a_capture_stays_on_disk_until_its_write_commits(data_dir: Path, store: Store) -> None:
    holder = sqlite3.connect(data_dir / "lnplugin.sqlite", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process's write lock
        assert captured_records.capture_later(store, GOOD, RECORDS) is True
        assert _journal(data_dir).stat().st_mode & 0o777 == 0o600
        (line,) = _journal(data_dir).read_text().splitlines()
        assert json.loads(line)["payment_hash"] == GOOD
        assert store.deferred_writes == 1
        assert holder.execute("SELECT COUNT(*) FROM htlc_records").fetchone() == (0,)
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    # The flusher writes it once the lock frees; only then does it leave the file.
    wait_for(lambda: store.deferred_writes == 0 and not _journal(data_dir).exists(), "flushed")
    assert _stored(store, GOOD) == RECORDS


def test_a_journal_that_cannot_be_written_still_queues_the_records(
    data_dir: Path, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """Disk full, or the file made unwritable: the hook still answers, the
    records are kept in memory as before, and the error says so."""
    _journal(data_dir).mkdir()  # not a file: opening it for writing fails
    holder = sqlite3.connect(data_dir / "lnplugin.sqlite", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with caplog.at_level(logging.ERROR):
            assert captured_records.capture_later(store, GOOD, RECORDS) is False
        assert f"cannot keep TLV records for {GOOD} on disk" in caplog.text
        assert store.deferred_writes == 1
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    wait_for(lambda: store.deferred_writes == 0, "flushed")
    assert _stored(store, GOOD) == RECORDS


def test_a_capture_that_meets_a_full_disk_stays_queued_and_on_disk(
    data_dir: Path, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """The disk filled up between the hook's answer and the lock freeing. The
    write that would have stored the records failed with the whole
    transaction; dropping it then let the caller's retry store the
    settlement without them, and the replay at the next start may not add
    records to a paid row: the boostagram was lost. It stays queued (first
    again) and on disk until there is room."""
    big = {7629169: b"x" * 50_000}  # needs new pages, which a full disk has none of
    with store._writer:  # this process's writer lock: the flusher waits for this thread
        assert captured_records.capture_later(store, GOOD, big) is True
        pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
        store.conn.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full
        with caplog.at_level(logging.ERROR), pytest.raises(sqlite3.OperationalError):
            _flush(store)
        assert store.deferred_writes == 1
        assert [json.loads(line)["payment_hash"] for line in _journal(data_dir).open()] == [GOOD]
        assert "kept queued" in caplog.text
        store.conn.execute("PRAGMA max_page_count = 1073741823")  # room again
        _flush(store)
    assert _stored(store, GOOD) == big
    wait_for(lambda: not _journal(data_dir).exists(), "the journal emptied")
    assert store.deferred_writes == 0


def test_forgetting_many_queued_entries_rewrites_the_file_a_bounded_number_of_times(
    data_dir: Path,
) -> None:
    """The store was busy long enough for many captures to queue; when the
    lock frees, their writes commit one by one and each is forgotten. Each
    forget rewrote the whole file: n entries cost n rewrites of up to n
    lines, quadratic in the queue. What the rewrites write in all stays
    within a small multiple of the file itself."""
    journal = RecordsJournal(_journal(data_dir))
    ids = [journal.append(f"{n:064x}", RECORDS) for n in range(300)]
    full = _journal(data_dir).stat().st_size
    rewritten, size = 0, full
    for entry_id in ids:
        journal.forget(entry_id)
        now = _journal(data_dir).stat().st_size if _journal(data_dir).exists() else 0
        if 0 < now < size:  # smaller: rewritten (appends only grow it)
            rewritten += now
        size = now
    assert not _journal(data_dir).exists()  # the last forget removed it
    assert rewritten <= 2 * full, f"rewrote {rewritten} bytes for a file of {full}"


def test_entries_a_forget_left_in_the_file_replay_to_the_same_rows(
    data_dir: Path, store: Store
) -> None:
    """A forgotten entry may stay in the file until the next rewrite; the
    process killed before it, the next start replays it, which merges to
    the same row and changes nothing."""
    journal = RecordsJournal(_journal(data_dir))
    with store.transaction() as tx:
        captured_records.capture_in(tx, GOOD, RECORDS)
    first = journal.append(GOOD, RECORDS)  # written (above), then forgotten
    journal.append(OTHER, {696969: b"acct"})  # still queued when the process died
    journal.forget(first)
    store.close()
    reopened = Store(data_dir / "lnplugin.sqlite")
    try:
        assert captured_records.replay_journal(reopened) >= 1
        _flush(reopened)
        assert _stored(reopened, GOOD) == RECORDS
        assert _stored(reopened, OTHER) == {696969: b"acct"}
        assert captured_records.count(reopened.conn) == 2
        wait_for(lambda: not _journal(data_dir).exists(), "the journal emptied")
    finally:
        reopened.close()


def test_the_replay_warning_counts_only_the_captures_not_yet_stored(
    data_dir: Path, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """Lines a forget left behind are read and replayed too, but they were
    stored: the warning said "replaying 3 captures ... could not store" for
    one capture that was missing."""
    third = "33" * 32
    journal = RecordsJournal(_journal(data_dir))
    with store.transaction() as tx:
        captured_records.capture_in(tx, GOOD, RECORDS)
        captured_records.capture_in(tx, third, {696969: b"acct"})
    journal.append(GOOD, RECORDS)
    journal.append(third, {696969: b"acct"})
    journal.append(OTHER, {696969: b"acct"})  # still queued when the process died
    store.close()
    reopened = Store(data_dir / "lnplugin.sqlite")
    try:
        with caplog.at_level(logging.INFO, logger="lnplugin.store.captured_records"):
            assert captured_records.replay_journal(reopened) == 3
        (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert warning.getMessage() == (
            f"replaying 3 capture(s) of TLV records from {_journal(data_dir)}: "
            "1 an earlier run could not store, 2 already stored (left in the file "
            "until its next rewrite; replaying them changes nothing)"
        )
        _flush(reopened)
        wait_for(lambda: not _journal(data_dir).exists(), "the journal emptied")
    finally:
        reopened.close()

    # Only stored lines left (the kill came after every write): nothing is
    # missing, so no warning, one line at info.
    journal = RecordsJournal(_journal(data_dir))
    journal.append(GOOD, RECORDS)
    caplog.clear()
    again = Store(data_dir / "lnplugin.sqlite")
    try:
        with caplog.at_level(logging.INFO, logger="lnplugin.store.captured_records"):
            assert captured_records.replay_journal(again) == 1
        assert [r.levelno for r in caplog.records] == [logging.INFO]
        assert caplog.records[0].getMessage() == (
            f"replaying 1 capture(s) of TLV records from {_journal(data_dir)}: "
            "all already stored (left in the file until its next rewrite; replaying "
            "them changes nothing)"
        )
        _flush(again)
    finally:
        again.close()


def test_a_service_that_stopped_no_longer_writes_the_journal(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The CLN plugin's runtime stopped (the node turned out to be on another
    network, or lightningd is shutting down) while its hook still runs. The
    data dir is no longer its: another process may serve it and have read the
    journal already, so a line the stopped one appended was never replayed,
    and the server's next rewrite dropped it. A capture after the stop is
    still stored once the lock frees, from memory, as with a journal that
    cannot be written."""
    settings = load_settings({"data_dir": str(data_dir)}, environ={})
    stopped = Service.build(settings)
    stopped.start()
    stopped.stop()
    serving = Service.build(settings)
    serving.start()
    try:
        holder = sqlite3.connect(settings.db_path, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            with caplog.at_level(logging.ERROR):
                assert captured_records.capture_later(stopped.store, GOOD, RECORDS) is False
            assert captured_records.capture_later(serving.store, OTHER, RECORDS) is True
            lines = _journal(data_dir).read_text().splitlines()
            assert [json.loads(line)["payment_hash"] for line in lines] == [OTHER]
            assert f"cannot keep TLV records for {GOOD} on disk" in caplog.text
            holder.execute("ROLLBACK")
        finally:
            holder.close()
        wait_for(lambda: stopped.store.deferred_writes == 0, "the stopped store's queue")
        wait_for(lambda: not _journal(data_dir).exists(), "the journal emptied")
        assert _stored(serving.store, GOOD) == RECORDS
        assert _stored(serving.store, OTHER) == RECORDS
    finally:
        serving.stop()
        stopped.store.close()


def test_another_process_reads_the_entries_without_touching_the_file(data_dir: Path) -> None:
    """`lnplugin backup` reads the server's journal: a torn last line (an append
    in progress) and an unreadable line are passed over, the file is left as it is."""
    RecordsJournal(_journal(data_dir)).append(GOOD, RECORDS)
    with _journal(data_dir).open("ab") as handle:
        handle.write(b"not json\n")
        handle.write(b'{"payment_hash": "' + OTHER.encode()[:20])
    before = _journal(data_dir).read_bytes()
    assert read_entries(_journal(data_dir)) == [(GOOD, RECORDS)]
    assert _journal(data_dir).read_bytes() == before
    assert read_entries(data_dir / "absent.jsonl") == []
