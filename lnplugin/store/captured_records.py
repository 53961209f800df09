"""Custom TLV records captured out of band, keyed by payment hash.

Some nodes never show a keysend payment's custom records (boostagrams,
messages) in their invoice listing; Core Lightning is one, and its plugin
mode captures them from the `htlc_accepted` hook instead. Whatever captured
them calls `capture_in`; the follower joins them to the invoice row when the
settlement arrives (`get`), so whichever side comes second completes the
row. Nothing here knows which node fed it.

Rows are merged, never replaced: a multi-part payment carries records in
each part, and a node may replay a capture after a restart, so a second
capture of the same records must change nothing. (The table keeps its
original name, `htlc_records`, so existing stores need no migration.)
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING

from lnplugin.boostagram import records_from_json, records_to_json
from lnplugin.store import invoices

if TYPE_CHECKING:
    from pathlib import Path

    from lnplugin.store.db import Store
    from lnplugin.store.journal import Entry, RecordsJournal

log = logging.getLogger(__name__)


def get(conn: sqlite3.Connection, payment_hash: str) -> dict[int, bytes]:
    """The records captured for `payment_hash` ({} when none)."""
    row = conn.execute(
        "SELECT records FROM htlc_records WHERE payment_hash = ?", (payment_hash,)
    ).fetchone()
    return records_from_json(row[0]) if row else {}


def merge(
    tx: sqlite3.Connection,
    payment_hash: str,
    records: Mapping[int, bytes],
    now: int | None = None,
) -> dict[int, bytes]:
    """Add `records` to what is stored for the hash; returns the union.

    Writes only when something new arrived, so a replayed hook is a read.
    """
    stored = get(tx, payment_hash)
    merged = {**stored, **records}
    if merged != stored:
        tx.execute(
            "INSERT INTO htlc_records (payment_hash, records, received_at) VALUES (?, ?, ?) "
            "ON CONFLICT(payment_hash) DO UPDATE SET records = excluded.records",
            (payment_hash, records_to_json(merged), int(time.time()) if now is None else now),
        )
    return merged


def count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM htlc_records").fetchone()[0])


def any_captured(conn: sqlite3.Connection) -> bool:
    """Whether anything was ever captured; when not (every node that lists its
    records itself), the follower skips the per-invoice lookup."""
    return conn.execute("SELECT 1 FROM htlc_records LIMIT 1").fetchone() is not None


# A row in one of these states takes no more HTLCs: the node fails any that
# come for it.
_FINAL = frozenset({"SETTLED", "CANCELED", "EXPIRED"})


def capture_in(tx: sqlite3.Connection, payment_hash: str, records: dict[int, bytes]) -> bool:
    """Store captured records and, if the incoming invoice row exists, merge them in.

    The follower does the other half when the settlement arrives, so
    whichever of capture and settlement comes first, the row ends up with
    both. No event is appended: a node captures before the invoice is paid,
    so the settlement event already carries the records. Returns True when
    the invoice row changed.

    Nothing is captured for an invoice already stored as settled, canceled
    or expired. The node captures an HTLC before it decides on it, and the
    store follows the node, so an HTLC seen after the row became final is
    one the node fails: nobody paid for its records. Taking them would let
    anyone who knows the invoice's payment secret (it is in the BOLT11), or
    a keysend's preimage (every node on its route learns it), rewrite the
    boostagram of a paid invoice, or give one to an invoice paid without,
    for free and without an event.
    """
    row = invoices.by_hash(tx, payment_hash, "incoming")
    if row is not None and row.state in _FINAL:
        return False
    merged = merge(tx, payment_hash, records)
    if row is None:
        return False
    combined = {**records_from_json(row.custom_records), **merged}
    if records_to_json(combined) == row.custom_records:
        return False
    invoices.update(
        tx,
        row.id,
        invoices.record_fields(combined, tx, address_webhook=invoices.takes_address_webhook(row)),
    )
    return True


def _what(payment_hash: str) -> str:
    return f"TLV records for {payment_hash}"


def _queue(
    store: Store,
    payment_hash: str,
    records: dict[int, bytes],
    journal: RecordsJournal | None,
    entry_id: int | None,
) -> None:
    """`capture_in` as a deferred write; its journal entry, if any, is
    forgotten once that write has committed (or failed for good)."""
    store.write_later(
        lambda tx: capture_in(tx, payment_hash, records),
        _what(payment_hash),
        done=None if journal is None or entry_id is None else partial(journal.forget, entry_id),
        durable=entry_id is not None,
    )


def capture_later(store: Store, payment_hash: str, records: dict[int, bytes]) -> bool:
    """`capture_in` once the write lock frees, for a caller that cannot wait
    for it but acknowledges the records at once (the CLN hook answering
    `continue`). Returns whether they are on disk (`store.journal`).

    They are appended to the records journal first, so a process killed
    before the lock frees loses nothing: the next start replays them
    (`replay_journal`). Then they are queued in memory (`Store.write_later`),
    so they are written before anything else this process writes. When the
    journal cannot be written (disk full), they are queued all the same and
    the error logged: as before the journal, a crash before the lock frees
    would then lose them.
    """
    journal, entry_id = store.journal, None
    if journal is not None:
        try:
            entry_id = journal.append(payment_hash, records)
        except OSError as exc:
            log.error(
                "cannot keep %s on disk (%s: %s); kept in memory only until stored",
                _what(payment_hash),
                journal.path,
                exc.strerror or exc,
            )
    _queue(store, payment_hash, records, journal, entry_id)
    return entry_id is not None


def replay_journal(store: Store) -> int:
    """Queue what an earlier process left in the records journal; how many.

    Call it in the process that serves the data dir (it holds the lock),
    before the follower starts: queued writes run before anything else the
    process writes, the follower's settlements included, so each settlement
    still finds its records. `capture_in` merges, so an entry whose write
    committed just before a crash (its line not yet gone) changes nothing.
    """
    journal = store.journal
    if journal is None:
        return 0
    try:
        left = journal.leftovers()
    except OSError as exc:
        log.error("cannot read %s (%s); its records are not replayed", journal.path, exc)
        return 0
    if left:
        _log_replay(store, journal.path, left)
    for entry in left:
        _queue(store, entry.payment_hash, entry.records, journal, entry.id)
    return len(left)


def _log_replay(store: Store, path: Path, left: list[Entry]) -> None:
    """Say how many of the lines read are missing from the store.

    A line stays in the file after its write committed, until the file's
    next rewrite (`RecordsJournal.forget`), so a kill leaves stored lines
    beside unstored ones; counting them all as captures "an earlier run
    could not store" overstated what was at stake. Missing here means not
    all of its records are in `htlc_records` (one read per line, at start)."""
    with store.snapshot() as conn:
        missing = sum(
            1
            for entry in left
            if any(get(conn, entry.payment_hash).get(k) != v for k, v in entry.records.items())
        )
    why = "left in the file until its next rewrite; replaying them changes nothing"
    if missing == len(left):
        log.warning(
            "replaying %d capture(s) of TLV records an earlier run could not store (%s)",
            missing,
            path,
        )
    elif missing:
        log.warning(
            "replaying %d capture(s) of TLV records from %s: %d an earlier run could not "
            "store, %d already stored (%s)",
            len(left),
            path,
            missing,
            len(left) - missing,
            why,
        )
    else:
        log.info(
            "replaying %d capture(s) of TLV records from %s: all already stored (%s)",
            len(left),
            path,
            why,
        )
