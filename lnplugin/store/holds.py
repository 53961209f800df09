"""Settle and cancel decisions on hold invoices whose HTLCs lnplugin holds.

In Core Lightning plugin mode the node has no invoice for a hold invoice's
hash: lnplugin's plugin holds the HTLCs in `htlc_accepted` and answers them.
The decision is written here before any HTLC is answered, so an HTLC that
lightningd replays after a restart is answered the same way, and a lookup
after a crash between answering and storing the invoice's state still
finds the outcome, and a cancel's reason with it. A settle names the HTLCs
it answers: any other HTLC to the hash (a second payment) is failed, not
resolved with the preimage.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

# The two decisions there are; typed, so a decision is a node invoice state
# (`nodes.base.InvoiceState`) without a cast where it becomes one.
Decided = Literal["SETTLED", "CANCELED"]
# An HTLC as Core Lightning names it: (short_channel_id, id in that channel).
HtlcKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Decision:
    state: Decided
    preimage: str | None
    # The HTLCs a settle answered; None when not recorded (a cancel, or a
    # settle decided before they were kept), so any HTLC gets the decision.
    htlcs: frozenset[HtlcKey] | None = None
    # Why lnplugin canceled it (the invoice's `cancel_reason`); None for a
    # settle, and for a cancel decided before reasons were kept.
    reason: str | None = None

    def answers(self, key: HtlcKey) -> bool:
        """Whether this HTLC is one the decision was made for."""
        return self.htlcs is None or key in self.htlcs


def decide(
    tx: sqlite3.Connection,
    payment_hash: str,
    state: Decided,
    preimage: str | None,
    htlcs: Iterable[HtlcKey] | None = None,
    reason: str | None = None,
) -> None:
    """Record SETTLED (with the preimage and the HTLCs it answers) or
    CANCELED (with why, so a process that dies before the invoice is stored
    CANCELED leaves the reason to the next); the first decision stands."""
    keys = json.dumps(sorted([scid, n] for scid, n in htlcs)) if htlcs is not None else None
    tx.execute(
        "INSERT OR IGNORE INTO hold_decisions (payment_hash, state, preimage, decided_at, htlcs,"
        " reason) VALUES (?, ?, ?, ?, ?, ?)",
        (payment_hash, state, preimage, int(time.time()), keys, reason),
    )


def decision(conn: sqlite3.Connection, payment_hash: str) -> Decision | None:
    row = conn.execute(
        "SELECT state, preimage, htlcs, reason FROM hold_decisions WHERE payment_hash = ?",
        (payment_hash,),
    ).fetchone()
    if row is None:
        return None
    htlcs = frozenset((str(s), int(n)) for s, n in json.loads(row[2])) if row[2] else None
    return Decision(row[0], row[1], htlcs, row[3])
