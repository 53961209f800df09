"""Hold invoices on Core Lightning, in plugin mode only.

Core Lightning has no hold invoices of its own, and its `invoice` command
needs the preimage. So lnplugin builds the BOLT11 for the client's payment
hash itself, has the node sign it (`signinvoice`, which stores nothing), and
holds the payment in the `htlc_accepted` hook, which only a plugin sees:
the hook's answer is kept back (`HoldBook.on_htlc`) until the invoice is
settled (answer `resolve` with the preimage) or canceled (answer `fail`).
Because the node has no invoice for the hash, HTLCs that no plugin resolves
are refused by lightningd, so nothing can pay the invoice behind our back.

The decision is stored (`store.holds`, a settle with the HTLCs it answers,
a cancel with why lnplugin made it) before any HTLC is answered:
lightningd replays unanswered HTLCs after a restart and they are answered
from it, any other HTLC to a settled hash is failed, and a lookup after a
crash between answering and storing the invoice's new state still finds
the outcome, and the reason. Held HTLCs themselves are not
stored: lightningd replays them, and the invoice becomes ACCEPTED again;
one whose replayed parts do not add up (`_mpp_timed_out`) can no longer be
settled, and is CANCELED. A plugin that dies alone has its held HTLCs failed
by lightningd, never replayed: `expect_replays` cancels those invoices.
Standalone mode (`ClnNode`) sees no HTLCs and declares no hold ability.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from lnplugin import bolt11
from lnplugin.nodes.base import (
    CURRENCY_BY_NETWORK,
    Feature,
    InvoiceNotFound,
    InvoiceNotOpen,
    InvoiceRequest,
    InvoiceState,
    InvoiceUpdate,
    NodeError,
    NodeInvoice,
    queued_updates,
)
from lnplugin.nodes.cln.node import ClnNode, msat, to_invoice
from lnplugin.nodes.cln.plugin import capture, is_forward
from lnplugin.store import Store, holds, invoices
from lnplugin.store.models import StoredInvoice

log = logging.getLogger("lnplugin.cln_plugin")

# The CLTV delta hold invoices ask for (LND's default): how long the payer's
# HTLC may stay held. CLN's own invoices ask for 18.
HOLD_CLTV_DELTA = 80
# Invoice features: var_onion_optin, payment_secret and basic_mpp (optional
# bits 8, 14, 17), as in CLN's own invoices: the hook takes a payment in parts,
# and a payer may split one only when the invoice says so (BOLT 11).
HOLD_FEATURES = (8, 14, 17)
# `delinvoice` errors (Core Lightning's doc/schemas): no invoice with that
# label; the invoice's status is not the one named.
_NO_SUCH_INVOICE = 905
_STATUS_CHANGED = 906
# Seconds the parts of a multi-part payment may wait for the rest: lightningd
# fails its own invoices' incomplete sets after 70 s (`htlc_set.c`), as BOLT 4
# asks of a final node, with `mpp_timeout` (23, no data).
MPP_TIMEOUT = 70.0
CLOSE_WAIT = 5.0  # seconds `close` waits for a timer still running
MPP_TIMED_OUT: dict[str, str] = {"result": "fail", "failure_message": "0017"}
# Why lnplugin cancels an ACCEPTED hold invoice whose held HTLCs are gone
# (the invoice and its canceled event say it): it can no longer be settled.
REPLAY_INCOMPLETE = (
    "canceled by lnplugin: the held HTLCs Core Lightning replayed after its restart "
    "did not add up to the payment within {timeout:g} s and were failed back (mpp_timeout)"
)
NOT_REPLAYED = (
    "canceled by lnplugin: Core Lightning replayed none of the held HTLCs "
    "within {timeout:g} s of its restart"
)
PLUGIN_RESTARTED = (
    "canceled by lnplugin: Core Lightning failed the held HTLCs back when the "
    "plugin stopped while lightningd ran on"
)
Answer = Callable[[dict[str, Any]], None]


def _failure(amount_msat: int, height: int) -> dict[str, Any]:
    """BOLT 4 incorrect_or_unknown_payment_details (PERM|15) with the HTLC
    amount (u64) and our block height (u32): what a node answers for a
    payment it refuses."""
    data = amount_msat.to_bytes(8, "big") + height.to_bytes(4, "big")
    return {"result": "fail", "failure_message": "400f" + data.hex()}


@dataclass
class _Held:
    parts: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)  # amount, expiry
    answers: dict[tuple[str, int], Answer] = field(default_factory=dict)
    accepted: bool = False
    set_total: int | None = None  # the total the payer's onions name; one for every part
    timer: threading.Timer | None = None  # fails the parts unless the set completes first
    replay: bool = False  # replayed by lightningd for an invoice stored ACCEPTED

    @property
    def total(self) -> int:
        return sum(amount for amount, _ in self.parts.values())

    @property
    def deadline(self) -> int:
        return min(expiry for _, expiry in self.parts.values())


class ClnHoldNode(ClnNode):
    """`ClnNode` in plugin mode: also `HoldInvoices`, fed by the hook."""

    features = ClnNode.features | {Feature.HOLD_INVOICES}
    unavailable = {}
    mpp_timeout = MPP_TIMEOUT  # seconds; tests shorten it

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.store: Store | None = None  # attached once the service has opened it
        self._held: dict[str, _Held] = {}
        self._held_lock = threading.Lock()
        self._updates: queue.Queue[InvoiceUpdate] = queue.Queue()
        self._timers: set[threading.Timer] = set()  # started, not yet finished
        self._timers_lock = threading.Lock()

    def attach(self, store: Store) -> None:
        self.store = store

    def _later(self, seconds: float, fn: Callable[..., None], *args: Any) -> threading.Timer:
        """`fn(*args)` on a timer thread that `close` waits for: a timer still
        writing its decision when the service closes the store under it used
        the connection as it was closed (a segfault in sqlite3, seen in tests)."""

        def run() -> None:
            try:
                fn(*args)
            finally:
                with self._timers_lock:
                    self._timers.discard(timer)

        timer = threading.Timer(seconds, run)
        timer.daemon = True
        with self._timers_lock:
            self._timers.add(timer)
        timer.start()
        return timer

    def _cancel_timer(self, timer: threading.Timer) -> None:
        timer.cancel()
        with self._timers_lock:
            self._timers.discard(timer)

    def close(self) -> None:
        """Close the node, then stop every timer: those not yet due never run,
        and one running is waited for (bounded), so nothing of this node uses
        the store once it is closed."""
        super().close()
        with self._timers_lock:
            timers = list(self._timers)
        for timer in timers:
            timer.cancel()
        for timer in timers:
            if timer is not threading.current_thread():
                timer.join(CLOSE_WAIT)
        with self._timers_lock:
            self._timers.difference_update(timers)

    # ------------------------------------------------------------ HoldInvoices
    def create_hold_invoice(self, request: InvoiceRequest, payment_hash: str) -> NodeInvoice:
        """Build the invoice, signed by a throwaway key, and have the node sign it."""
        if self.network is None:
            raise NodeError("the network is unknown; cannot build a hold invoice")
        now = int(time.time())
        secret = secrets.token_hex(32)
        unsigned = bolt11.encode(
            currency=CURRENCY_BY_NETWORK[self.network],
            amount_msat=request.amount_msat,
            timestamp=now,
            payment_hash=payment_hash,
            payment_secret=secret,
            private_key=secrets.token_bytes(32),
            description=(request.description or "") if request.description_hash is None else None,
            description_hash=request.description_hash,
            expiry=request.expiry,
            min_final_cltv_expiry_delta=request.min_final_cltv_expiry_delta or HOLD_CLTV_DELTA,
            features=HOLD_FEATURES,
        )
        signed = self._call("signinvoice", invstring=unsigned)["bolt11"]
        return NodeInvoice(
            payment_hash=payment_hash,
            payment_request=signed,
            state="OPEN",
            amount_msat=request.amount_msat,
            created_at=now,
            expiry=request.expiry,
            description=request.description,
            description_hash=request.description_hash,
            payment_secret=secret,
        )

    def settle_invoice(self, preimage: str) -> NodeInvoice:
        payment_hash = hashlib.sha256(bytes.fromhex(preimage)).hexdigest()
        row, _ = self._hold_row(payment_hash)
        with self._held_lock:
            # Read under the lock, which every decision is made under: one
            # read before it could miss a cancel (or settle) made meanwhile.
            decided = self._decision(payment_hash)
            held = self._held.get(payment_hash) if decided is None else None
            if decided is None:
                if held is None or not held.accepted:
                    raise InvoiceNotOpen(f"invoice {payment_hash} is still open (not paid yet)")
                self._decide(payment_hash, "SETTLED", preimage, held.parts)
                del self._held[payment_hash]
        if decided is not None:
            if decided.state == "SETTLED":
                return self._as(row, "SETTLED", preimage=decided.preimage)
            raise InvoiceNotOpen(f"invoice {payment_hash} is canceled")
        assert held is not None
        for answer in held.answers.values():
            answer({"result": "resolve", "payment_key": preimage})
        return self._as(row, "SETTLED", preimage=preimage, received=held.total)

    def cancel_invoice(self, payment_hash: str, reason: str | None = None) -> NodeInvoice:
        """Hold invoices: fail held HTLCs, `reason` stored with the decision;
        regular ones: `delinvoice`, after which the node refuses a payment
        (it has no invoice for the hash)."""
        try:
            row, _ = self._hold_row(payment_hash)
        except InvoiceNotFound:
            return self._cancel_regular(payment_hash)
        with self._held_lock:
            # As in `settle_invoice`: a settle made since a read outside the
            # lock must not be answered CANCELED (the payer's money is taken).
            decided = self._decision(payment_hash)
            if decided is None:
                self._decide(payment_hash, "CANCELED", None, reason=reason)
            held = self._held.pop(payment_hash, None) if decided is None else None
        if decided is not None:
            if decided.state == "SETTLED":
                raise InvoiceNotOpen(f"invoice {payment_hash} is settled and cannot be canceled")
            return self._as(row, "CANCELED", reason=decided.reason)
        if held is not None:
            height = self._height()
            for key, answer in held.answers.items():
                answer(_failure(held.parts[key][0], height))
        return self._as(row, "CANCELED", reason=reason)

    def hold_updates(self) -> Iterator[InvoiceUpdate]:
        return queued_updates(self._updates, self._closed)

    def lookup_invoice(self, payment_hash: str) -> NodeInvoice | None:
        """The node's invoice; for a hold invoice (which the node does not
        have), its decided or held state, or None while it waits for payment."""
        found = super().lookup_invoice(payment_hash)
        if found is not None or self.store is None:
            return found
        try:
            row, _ = self._hold_row(payment_hash)
        except InvoiceNotFound:
            return None
        with self._held_lock:  # the decision and the held set as of one moment
            decided = self._decision(payment_hash)
            held = self._held.get(payment_hash)
            if decided is None and held is not None and held.accepted:
                return self._as(row, "ACCEPTED", received=held.total, deadline=held.deadline)
        if decided is not None:
            return self._as(row, decided.state, preimage=decided.preimage, reason=decided.reason)
        return None

    def expect_replays(self, startup: bool) -> None:
        """Cancel the ACCEPTED hold invoices whose held HTLCs are gone, as the
        plugin starts: they can no longer be settled, and a shop must not
        see them as paid and held.

        lightningd answers a plugin's pending hook calls itself when the
        plugin dies while it runs on (`destroy_plugin`: the error
        PLUGIN_TERMINATED, then the next plugin or its own checks, which
        fail an HTLC for a hash it has no invoice for), and replays only the
        HTLCs still unanswered when it starts (`htlcs_resubmit`, right after
        every plugin's `init`). So a plugin started into a running lightningd
        (`startup` false) holds nothing: every such invoice is canceled now.
        At lightningd's start the HTLCs are replayed: an invoice none of
        whose HTLCs came within `mpp_timeout` is canceled then (one whose
        HTLCs came only in part is `_mpp_timed_out`'s)."""
        assert self.store is not None
        with self.store.snapshot() as conn:
            hashes = [r.payment_hash for r in invoices.accepted(conn, 1_000_000) if r.hold]
        if not hashes:
            return
        if not startup:
            self._cancel_unheld(hashes, PLUGIN_RESTARTED)
            return
        reason = NOT_REPLAYED.format(timeout=self.mpp_timeout)
        self._later(self.mpp_timeout, self._cancel_unheld, hashes, reason)

    def _cancel_unheld(self, hashes: Iterable[str], reason: str) -> None:
        """Cancel each of these (ACCEPTED) invoices that holds no HTLC and is
        undecided; nothing once the node is closed (the plugin stopping)."""
        for payment_hash in hashes:
            if self._closed.is_set():
                return
            try:
                with self._held_lock:
                    if payment_hash in self._held or self._decision(payment_hash) is not None:
                        continue
                    self._decide(payment_hash, "CANCELED", None, reason=reason)
            except Exception:  # the store closing under a late timer, say
                log.exception("hold invoice %s: could not store the cancel", payment_hash)
                continue
            log.warning("hold invoice %s %s", payment_hash, reason)
            self._lost(payment_hash, reason)

    def _lost(self, payment_hash: str, reason: str) -> None:
        """Report CANCELED, with `reason` (stored with the decision too, for a
        lookup after a restart), for an invoice decided CANCELED because its
        held HTLCs are gone (the follower stores it, with the canceled event,
        once: a later report of it is a duplicate)."""
        try:
            row, _ = self._hold_row(payment_hash)
        except InvoiceNotFound:
            return
        self._updates.put(InvoiceUpdate(self._as(row, "CANCELED", reason=reason), 0))

    # ------------------------------------------------------------ the hook
    def on_htlc(self, onion: Mapping[str, Any], htlc: Mapping[str, Any], answer: Answer) -> bool:
        """Take an incoming HTLC for a hold invoice: hold it (answered later by
        settle or cancel), or answer it now from a decision already made or
        with a failure. False when it is not for a hold invoice (continue).

        A settle decision answers the HTLCs it was made for (lightningd
        replays them after a restart) with the preimage, and fails any other
        (a second payment of the paid invoice, which a node refuses too)."""
        if self.store is None or is_forward(onion):
            return False
        payment_hash = str(htlc["payment_hash"]).lower()
        try:
            row, decided = self._hold_row(payment_hash)
        except InvoiceNotFound:
            return False
        amount = msat(htlc.get("amount_msat")) or 0
        key = (str(htlc.get("short_channel_id")), int(htlc.get("id", 0)))
        if decided is not None:
            self._answer_decided(decided, key, amount, answer)
            return True
        expiry = int(htlc.get("cltv_expiry", 0))
        set_total = msat(onion.get("total_msat")) or amount
        # lightningd replays the HTLCs of a payment taken before a restart:
        # they were checked when they came, and blocks may have passed since.
        replay = row.state == "ACCEPTED"
        height = None if replay else _tip(htlc) or self._height()
        accepted: NodeInvoice | None = None
        with self._held_lock:
            # A settle or cancel decided since the read above (decisions are
            # made under this lock): held now, this HTLC would wait for an
            # answer no one is left to give, until the payer's channel closes.
            decided = self._decision(payment_hash)
            held = self._held.setdefault(payment_hash, _Held()) if decided is None else _Held()
            if decided is not None:
                refused = False  # answered below, as decided
            elif not self._takes(row, held, key, onion, set_total, expiry, height, replay):
                if not held.parts:
                    del self._held[payment_hash]
                refused = True
            else:
                refused = False
                held.parts[key] = (amount, expiry)
                held.answers[key] = answer
                held.set_total = set_total
                held.replay = held.replay or replay
                if not held.accepted and held.total >= set_total:
                    held.accepted = True
                    accepted = self._as(
                        row, "ACCEPTED", received=held.total, deadline=held.deadline
                    )
                    if held.timer is not None:
                        self._cancel_timer(held.timer)
                elif not held.accepted and held.timer is None:
                    held.timer = self._later(
                        self.mpp_timeout, self._mpp_timed_out, payment_hash, held
                    )
        if decided is not None:
            self._answer_decided(decided, key, amount, answer)
            return True
        if refused:
            answer(_failure(amount, height if height is not None else self._height()))
            return True
        # The records of a part taken (a refused part pays nothing), stored
        # before the ACCEPTED update so its event carries them, as on lnd.
        capture(self.store, onion, htlc)
        if accepted is not None:
            self._updates.put(InvoiceUpdate(accepted, 0))
        return True  # held; or more parts to come (a multi-part payment)

    @staticmethod
    def _takes(
        row: StoredInvoice,
        held: _Held,
        key: tuple[str, int],
        onion: Mapping[str, Any],
        set_total: int,
        expiry: int,
        height: int | None,
        replay: bool,
    ) -> bool:
        """Whether an HTLC joins the invoice's held set: the checks a node
        makes of a payment to its own invoice (lnd's `updateMpp`, BOLT 4's
        final-node rules), since lightningd makes none for a hash it has no
        invoice for."""
        if onion.get("payment_secret") != row.payment_secret:
            return False
        if key in held.parts:
            return True  # the same HTLC again: its answer is replaced
        if held.accepted:
            # The set is complete; another part is another payment, which
            # the settle would take without counting it (lnd: not open).
            return False
        if held.set_total is not None and set_total != held.set_total:
            return False  # the parts disagree on the payment's total
        if row.amount_msat and not row.amount_msat <= set_total <= 2 * row.amount_msat:
            return False  # pays too little, or over twice the amount (BOLT 4)
        if replay:
            return True
        # Past the expiry no new payment is taken; one stored ACCEPTED was
        # taken before it, and lightningd is replaying its HTLCs (above).
        if row.expires_at <= time.time():
            return False
        # The HTLC must leave at least the invoice's CLTV delta to settle or
        # cancel it in: a shorter one could be claimed back on chain first.
        return height is None or height == 0 or expiry >= height + _cltv_delta(row)

    def _mpp_timed_out(self, payment_hash: str, held: _Held) -> None:
        """Fail the parts of a set still incomplete `mpp_timeout` after its
        first part came. Held on, they would wait for a settle or cancel
        that may never come (a payer who gave up; the invoice expiring, after
        which it cannot be canceled) until their CLTV expiry, when the peer
        that sent them closes the channel to take them back on chain."""
        with self._held_lock:
            if self._held.get(payment_hash) is not held or held.accepted:
                return  # completed, settled or canceled meanwhile
            del self._held[payment_hash]
            # Replayed parts of an invoice stored ACCEPTED: with them failed
            # it can no longer be settled, so it is canceled (decided first,
            # as every answer is), not left ACCEPTED for the safety cancel.
            # lnd never turns an ACCEPTED invoice back to OPEN either.
            lost = held.replay
            reason = REPLAY_INCOMPLETE.format(timeout=self.mpp_timeout)
            if lost:
                try:
                    self._decide(payment_hash, "CANCELED", None, reason=reason)
                except Exception:  # the parts are failed all the same: never held on
                    log.exception("hold invoice %s: could not store the cancel", payment_hash)
                    lost = False
        log.info(
            "hold invoice %s: %d part(s) of a multi-part payment failed after %g s "
            "without the rest (mpp_timeout)",
            payment_hash,
            len(held.answers),
            self.mpp_timeout,
        )
        for answer in held.answers.values():
            answer(MPP_TIMED_OUT)
        if lost:
            self._lost(payment_hash, reason)

    # ------------------------------------------------------------ helpers
    def _answer_decided(
        self, decided: holds.Decision, key: holds.HtlcKey, amount: int, answer: Answer
    ) -> None:
        """Answer an HTLC of a decided invoice: the preimage for one the
        settle was made for, a failure for any other."""
        if decided.state == "SETTLED" and decided.answers(key):
            answer({"result": "resolve", "payment_key": decided.preimage})
        else:
            answer(_failure(amount, self._height()))

    def _decision(self, payment_hash: str) -> holds.Decision | None:
        assert self.store is not None
        with self.store.snapshot() as conn:
            return holds.decision(conn, payment_hash)

    def _hold_row(self, payment_hash: str) -> tuple[StoredInvoice, holds.Decision | None]:
        if self.store is None:
            raise InvoiceNotFound(f"no hold invoice with payment hash {payment_hash}")
        with self.store.snapshot() as conn:
            row = invoices.by_hash(conn, payment_hash, "incoming")
            if row is None or not row.hold:
                raise InvoiceNotFound(f"no hold invoice with payment hash {payment_hash}")
            return row, holds.decision(conn, payment_hash)

    def _decide(
        self,
        payment_hash: str,
        state: holds.Decided,
        preimage: str | None,
        htlcs: Iterable[holds.HtlcKey] | None = None,
        *,
        reason: str | None = None,
    ) -> None:
        assert self.store is not None
        with self.store.transaction() as tx:
            holds.decide(tx, payment_hash, state, preimage, htlcs, reason)

    def _height(self) -> int:
        try:
            return int(self.get_info().block_height or 0)
        except NodeError:
            return 0

    def _cancel_regular(self, payment_hash: str, *, again: bool = True) -> NodeInvoice:
        """`delinvoice` names the status it expects, so a payment landing
        between the listing and the delete is refused by lightningd (906)
        rather than deleted; the invoice is then listed again (once): paid,
        it cannot be canceled (409), as when the payment came first."""
        rows = self._call("listinvoices", payment_hash=payment_hash.lower())["invoices"]
        if not rows:
            raise InvoiceNotFound(f"no invoice with payment hash {payment_hash}")
        row = rows[0]
        if row["status"] == "paid":
            raise InvoiceNotOpen(f"invoice {payment_hash} is settled and cannot be canceled")
        try:
            self._call("delinvoice", label=row["label"], status=row["status"])
        except NodeError as exc:
            if again and exc.code in (_STATUS_CHANGED, _NO_SUCH_INVOICE):
                return self._cancel_regular(payment_hash, again=False)
            raise
        return dataclasses.replace(to_invoice(row), state="CANCELED")

    @staticmethod
    def _as(
        row: StoredInvoice,
        state: InvoiceState,
        *,
        preimage: str | None = None,
        received: int | None = None,
        deadline: int | None = None,
        reason: str | None = None,
    ) -> NodeInvoice:
        settled = state == "SETTLED"
        return NodeInvoice(
            payment_hash=row.payment_hash,
            payment_request=row.payment_request,
            state=state,
            amount_msat=row.amount_msat,
            created_at=row.created_at,
            expiry=row.expiry,
            description=row.description,
            description_hash=row.description_hash,
            amount_received_msat=received if received is not None else row.amount_received_msat,
            settled_at=int(time.time()) if settled else None,
            preimage=preimage if settled else None,
            payment_secret=row.payment_secret,
            settle_deadline=deadline if deadline is not None else row.settle_deadline,
            cancel_reason=reason if state == "CANCELED" else None,
        )


def _tip(htlc: Mapping[str, Any]) -> int | None:
    """lightningd's block height as the hook gives it: `cltv_expiry_relative`
    is `cltv_expiry` minus the height it had when it called. Asking
    `getinfo` instead costs a call per HTLC, and one that fails would leave
    no height to check the HTLC's CLTV against."""
    try:
        return int(htlc["cltv_expiry"]) - int(htlc["cltv_expiry_relative"])
    except (KeyError, TypeError, ValueError):
        return None


def _cltv_delta(row: StoredInvoice) -> int:
    """The `min_final_cltv_expiry_delta` the invoice asked payers for."""
    try:
        return bolt11.decode(row.payment_request).min_final_cltv_expiry_delta
    except bolt11.Bolt11Error:
        return HOLD_CLTV_DELTA
