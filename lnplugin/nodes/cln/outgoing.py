"""Core Lightning's completed outgoing payments, each once and whole.

lightningd keeps one `listsendpays` row per part (HTLC) of a payment, keyed
by (payment_hash, groupid, partid); one `pay`/`xpay` run is one groupid, and
its parts that failed stay in the group. `listpays` combines the parts of
one answer only, and with `limit` (which counts parts) a payment whose parts
straddle the limit comes back as two partial entries: the store keeps the
first, so its amount and fee would be too low for ever. So lnplugin reads
the parts itself (docs/cln.md#outgoing-payments):

1. `listsendpays status=complete`, paged by `index=updated` from the cursor
   (v23.11+; one unpaged answer from cursor 0 or on older nodes), only to
   learn which payment hashes have a part that completed;
2. for each such hash not settled already, `listsendpays payment_hash=H`,
   which lists every part of every group of H in one answer, whatever the
   page: the group with complete parts is the payment, its amount and fee
   the sum of its complete parts, once none of its parts is still pending
   (lightningd refuses any new part once one has completed, so a group
   with none pending never changes again);
3. the cursor never passes a complete part of a payment still waiting for
   a pending part: that part's completion gives it a new updated_index, but
   one that fails would not show in a `status=complete` listing, and a
   restart must find the payment again. So the cursor handed on stops below
   the first such part, and what lies after it is read again next time (the
   store keeps each payment once; the settled ones come from memory).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

from lnplugin.nodes.base import NodeError, OutgoingPayment

PAGE = 100  # listsendpays rows (parts) per page

Call = Callable[..., Any]


def msat(value: Any) -> int | None:
    """An msat amount as CLN reports it: int (>= v23.05) or "123msat" (older)."""
    if value is None or value == "any":
        return None
    if isinstance(value, bool):
        raise NodeError(f"not an msat amount: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.endswith("msat") and value[:-4].isdigit():
        return int(value[:-4])
    try:
        return int(value)  # pyln's Millisatoshi, numeric strings
    except (TypeError, ValueError):
        raise NodeError(f"not an msat amount: {value!r}") from None


def _index(row: dict[str, Any]) -> int:
    return int(row.get("updated_index") or 0)


def settled(parts: list[dict[str, Any]]) -> OutgoingPayment | None:
    """The completed payment among every part of one payment hash, or None
    while there is none, or while a part of the completed group is pending.

    Only `complete` parts of that group count (as `listpays status=complete`
    counts them); its failed parts carry the bolt11 and description when the
    old pay plugin gave them to a first part that failed."""
    groups: dict[int, list[dict[str, Any]]] = {}
    for part in parts:
        groups.setdefault(int(part.get("groupid") or 0), []).append(part)
    done = [g for g in groups.values() if any(p["status"] == "complete" for p in g)]
    if not done:
        return None
    # One group at most: lightningd refuses new parts once one has completed.
    group = min(done, key=lambda g: min(int(p.get("created_index") or p.get("id") or 0) for p in g))
    if any(p["status"] == "pending" for p in group):
        return None
    complete = [p for p in group if p["status"] == "complete"]
    sent = sum(msat(p.get("amount_sent_msat")) or 0 for p in complete)
    amounts = [msat(p.get("amount_msat")) for p in complete]
    amount = sent if None in amounts else sum(a for a in amounts if a is not None)
    first = min(group, key=lambda p: int(p.get("created_at") or 0))
    done_at = [int(p["completed_at"]) for p in complete if p.get("completed_at") is not None]

    def any_of(*keys: str) -> Any:
        for part in group + parts:  # this group's first, then any attempt's
            for key in keys:
                if part.get(key):
                    return part[key]
        return None

    return OutgoingPayment(
        payment_hash=first["payment_hash"],
        amount_msat=amount,
        fee_msat=max(0, sent - amount),
        created_at=int(first["created_at"]),
        settled_at=min(done_at) if done_at else None,
        cursor=0,
        preimage=next((p.get("payment_preimage") for p in complete), None),
        payment_request=any_of("bolt11", "bolt12") or "",
        destination=any_of("destination"),
        description=any_of("description"),
    )


class OutgoingHistory:
    """The listing behind `ClnNode.outgoing_payments` (see the module
    docstring). Keeps the payments it found settled, so one that a held
    cursor makes it read again costs no second look-up."""

    def __init__(self, call: Call) -> None:
        self._call = call
        self.page = PAGE
        self._settled: dict[str, tuple[OutgoingPayment, int]] = {}  # hash -> (payment, index)

    def payments(self, cursor: int, *, indexed: bool) -> Iterator[OutgoingPayment]:
        """Completed payments with a part completed after `cursor`, oldest
        first, each with the cursor that may be kept once it is stored.
        `indexed`: the node pages listsendpays (v23.11+)."""
        if indexed and cursor > 0:
            rows = self._complete_after(cursor)
        else:
            # Rows completed before a node's upgrade to 23.11 keep
            # updated_index 0, which no `start` can page past: one answer.
            rows = self._call("listsendpays", status="complete")["payments"]
        last = max([cursor, *(_index(r) for r in rows)])
        high: dict[str, int] = {}
        low: dict[str, int] = {}
        for row in rows:
            key = row["payment_hash"]
            high[key] = max(high.get(key, 0), _index(row))
            low[key] = min(low.get(key, _index(row)), _index(row))
        self._forget(cursor)
        found: list[tuple[int, OutgoingPayment]] = []
        held: list[int] = []
        for key in sorted(high, key=high.__getitem__):
            known = self._settled.get(key)
            payment = known[0] if known else self._look_up(key, high[key])
            if payment is None:
                held.append(low[key])
            else:
                found.append((high[key], payment))
        ceiling = max(0, min(held) - 1) if held else last
        found.sort(key=lambda f: (f[0], f[1].created_at))
        for position, payment in found:
            yield dataclasses.replace(payment, cursor=min(position, ceiling))

    def _complete_after(self, cursor: int) -> list[dict[str, Any]]:
        """Every complete part with an updated_index above `cursor`, page by
        page to the end (a page counts parts, so a short one is the end)."""
        rows: list[dict[str, Any]] = []
        start = cursor + 1
        while True:
            page = self._call(
                "listsendpays", index="updated", start=start, limit=self.page, status="complete"
            )["payments"]
            rows += page
            if len(page) < self.page:
                return rows
            start = max(start, *(_index(r) + 1 for r in page))

    def _look_up(self, payment_hash: str, index: int) -> OutgoingPayment | None:
        parts = self._call("listsendpays", payment_hash=payment_hash)["payments"]
        payment = settled(parts)
        if payment is not None:
            self._settled[payment_hash] = (payment, index)
        return payment

    def _forget(self, cursor: int) -> None:
        """Drop what the cursor has passed: it is stored, and never read again
        (payments without an updated_index are listed at every poll: kept)."""
        for key in [k for k, (_, i) in self._settled.items() if 0 < i <= cursor]:
            del self._settled[key]
