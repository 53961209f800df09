"""Minting, settling and canceling invoices: the rules both ways in share.

The HTTP API (`api/invoices.py`) and Nostr Wallet Connect (`nwc/worker.py`)
mint invoices, and settle and cancel hold invoices, through these functions,
so a hold invoice follows one set of rules whichever way it was asked for;
the LNURL-pay callback (`api/lnurlp.py`) mints and stores through them too.
Each caller turns `InvoicingError`s into its own answer (an HTTP status in
the Alby shape, a NIP-47 error code); the messages are written for people.

Settle and cancel go through the `Follower`, which calls the node and stores
the new state with its outbox event at once (see `Follower.settle`).
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from typing import Any

from lnplugin.alby import effective_state
from lnplugin.follower import Follower
from lnplugin.nodes.base import (
    Feature,
    HoldInvoices,
    InvoiceNotOpen,
    InvoiceRequest,
    InvoiceUpdate,
    Node,
    NodeError,
    NodeInvoice,
    NodePermissionDenied,
    NodeUnavailable,
    RequestNotSupported,
)
from lnplugin.store import events, invoices
from lnplugin.store.models import StoredInvoice

# The largest final CLTV delta an invoice may ask for: about two weeks of
# blocks, LND's own ceiling for an invoice's final CLTV delta.
MAX_CLTV_DELTA = 2016
# The smallest for a regular invoice: BOLT 11's default, and LND's floor
# (it refuses a smaller `cltv_expiry`). A hold invoice's must also be more
# than the hold cancel margin.
MIN_CLTV_DELTA = 18


class InvoicingError(Exception):
    """A refusal, with a message for the caller."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unsupported(InvoicingError):
    """The node has no hold invoices (HTTP 501, NIP-47 NOT_IMPLEMENTED)."""


class Exists(InvoicingError):
    """An invoice with that payment hash is already stored (409)."""


class NotFound(InvoicingError):
    """No invoice with that payment hash (404, NOT_FOUND)."""


class NotReceivable(InvoicingError):
    """An outgoing payment or a keysend: nothing lnplugin can settle or cancel (409)."""


class WrongPreimage(InvoicingError):
    """sha256(preimage) is not the invoice's payment hash (400)."""


class WrongState(InvoicingError):
    """Not in a state the operation applies to (409); `state` says which it is."""

    def __init__(self, message: str, state: str) -> None:
        super().__init__(message)
        self.state = state


class BadParameter(InvoicingError):
    """A parameter the node would take but lnplugin refuses (400); `field` names it."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class NotPermitted(InvoicingError):
    """lnplugin's credentials may not make the node call (501, NIP-47
    NOT_IMPLEMENTED): an LND macaroon baked without the hold invoice methods,
    say. Not the 502 of a refusal a retry could cure: the operator must give
    lnplugin another credential, and the message names the permission."""


class NodeDown(InvoicingError):
    """The node is unreachable (503, INTERNAL)."""


class NodeRefused(InvoicingError):
    """The node refused the call (502, INTERNAL)."""


def holder(node: Node) -> HoldInvoices:
    """The node's hold invoices, or `Unsupported` naming what it lacks."""
    if node.has_feature(Feature.HOLD_INVOICES) and isinstance(node, HoldInvoices):
        return node
    why = node.unavailable.get(Feature.HOLD_INVOICES)
    raise Unsupported(
        f"The {node.kind} node does not support hold invoices or cancel"
        + (f": {why}" if why else "")
    )


def check_cltv_delta(delta: object, hold_cancel_margin: int, *, hold: bool = True) -> int:
    """The `min_cltv_expiry_delta` a client asked for, checked; the one rule
    for HTTP (`POST /invoices`) and NWC (`make_hold_invoice`).

    A hold invoice's final CLTV delta must outlast lnplugin's safety cancel,
    or the invoice would be canceled as soon as it is paid; a regular
    invoice's must be at least BOLT 11's default. Both at most
    `MAX_CLTV_DELTA`.
    """
    if not isinstance(delta, int) or isinstance(delta, bool):
        raise BadParameter("must be an integer (blocks)", "min_cltv_expiry_delta")
    if hold and not hold_cancel_margin < delta <= MAX_CLTV_DELTA:
        raise BadParameter(
            f"must be more than the hold cancel margin ({hold_cancel_margin} blocks, which "
            f"lnplugin keeps before a held invoice's deadline) and at most {MAX_CLTV_DELTA}",
            "min_cltv_expiry_delta",
        )
    if not hold and not MIN_CLTV_DELTA <= delta <= MAX_CLTV_DELTA:
        raise BadParameter(
            f"must be between {MIN_CLTV_DELTA} and {MAX_CLTV_DELTA} blocks",
            "min_cltv_expiry_delta",
        )
    return delta


def mint(follower: Follower, request: InvoiceRequest, hold_hash: str | None) -> NodeInvoice:
    """Have the node mint a regular invoice, or a hold invoice for `hold_hash`.

    The caller stores the result (with `node_fields`) in its own transaction,
    next to whatever it keeps with it. Failed node calls are counted for
    `/metrics` under `create_invoice`.
    """
    hold = holder(follower.node) if hold_hash is not None else None
    if hold_hash is not None and invoices.by_hash(follower.store.conn, hold_hash, "incoming"):
        raise Exists(f"An invoice with payment hash {hold_hash} exists")
    try:
        if hold is not None and hold_hash is not None:
            return hold.create_hold_invoice(request, hold_hash)
        return follower.node.create_invoice(request)
    except RequestNotSupported as exc:  # the request's fault, not the node's
        raise BadParameter(str(exc), exc.field) from None
    except NodeUnavailable as exc:
        follower.node_errors["create_invoice"] += 1
        raise NodeDown(f"The node is unreachable, try again shortly ({exc})") from None
    except NodePermissionDenied as exc:
        follower.node_errors["create_invoice"] += 1
        raise _not_permitted(exc) from None
    except NodeError as exc:
        follower.node_errors["create_invoice"] += 1
        raise NodeRefused(f"The node refused to create the invoice: {exc}") from None


def node_fields(minted: NodeInvoice, *, hold: bool, source: str) -> dict[str, Any]:
    """The stored row's columns that come from the node's answer."""
    return {
        "type": "incoming",
        "payment_hash": minted.payment_hash,
        "payment_request": minted.payment_request,
        "state": "OPEN",
        "amount_msat": minted.amount_msat,
        "description": minted.description,
        "description_hash": minted.description_hash,
        "created_at": minted.created_at,
        "expiry": minted.expiry,
        "expires_at": minted.expires_at,
        "preimage": minted.preimage,
        "payment_secret": minted.payment_secret,
        "hold": int(hold),
        "source": source,
    }


def insert(tx: sqlite3.Connection, fields: dict[str, Any]) -> StoredInvoice:
    """Store a new invoice with its `invoice.incoming.created` outbox event."""
    invoice_id = invoices.insert(tx, fields)
    row = invoices.by_id(tx, invoice_id)
    assert row is not None
    events.append(tx, events.INCOMING_CREATED, row)
    return row


def own_incoming(follower: Follower, payment_hash: str) -> StoredInvoice:
    """The invoice this node receives for `payment_hash` (lowercase hex)."""
    found = invoices.by_hash(follower.store.conn, payment_hash)
    if found is None:
        raise NotFound(f"No invoice with payment hash {payment_hash}")
    if found.type != "incoming" or found.is_keysend:
        raise NotReceivable("Only invoices this node receives can be settled or canceled")
    return found


def settle(follower: Follower, found: StoredInvoice, preimage: str) -> StoredInvoice:
    """Settle the ACCEPTED hold invoice `found` with `preimage` (64 hex).

    A settled one is returned as it is: the preimage proves the caller's,
    and a client whose answer was lost (a dropped connection, a crash) can
    retry, as with LND's SettleInvoice. One within the hold cancel margin
    of its deadline is canceled instead (`Follower.cancel_if_due`)."""
    if hashlib.sha256(bytes.fromhex(preimage)).hexdigest() != found.payment_hash:
        raise WrongPreimage("its SHA-256 is not this invoice's payment hash")
    holder(follower.node)
    if found.state == "SETTLED":
        return found
    if found.state != "ACCEPTED":
        raise WrongState(_not_accepted(found), found.state)
    try:
        try:
            late = follower.cancel_if_due(found)
        except NodePermissionDenied as exc:
            raise WrongState(
                "Too late to settle: the invoice is within the hold cancel margin of its "
                f"settle deadline, and lnplugin may not cancel it ({exc})",
                found.state,
            ) from None
        if late is not None:
            raise WrongState(f"Too late to settle: the invoice was {late}", "CANCELED")
        follower.settle(preimage)
    except InvoiceNotOpen as exc:
        if not _settled_meanwhile(follower, found.payment_hash):
            raise WrongState(f"The node did not settle the invoice: {exc}", found.state) from None
    except NodeError as exc:  # unreachable, or the node no longer knows it
        raise _node_error(exc) from None
    return fresh(follower, found.payment_hash)


def _settled_meanwhile(follower: Follower, payment_hash: str) -> bool:
    """Whether the node refused a settle because the invoice is settled
    already: another request (a client retrying while its first request
    still ran) settled it after this one read it ACCEPTED. The preimage is
    checked, so it is the same settle, answered as a retry is (LND's own
    SettleInvoice succeeds again; the dev node and Core Lightning refuse).
    The node's state is stored now, as `Follower.settle` would have (a
    duplicate of the other request's, which adds no event)."""
    try:
        current = follower.node.lookup_invoice(payment_hash)
    except NodeError:
        return False  # the node's refusal stands
    if current is None or current.state != "SETTLED":
        return False
    follower.apply([InvoiceUpdate(current, 0)])
    return True


def cancel(follower: Follower, found: StoredInvoice, reason: str) -> StoredInvoice:
    """Cancel `found` (open or ACCEPTED) on the node; a canceled one is returned as is.

    An expired one is final as it is (its `expired` event is, or will be, out):
    canceling it would send `canceled` after it, for an invoice nobody could pay."""
    holder(follower.node)
    if found.state == "SETTLED":
        raise WrongState("The invoice is settled and cannot be canceled", found.state)
    if found.state == "CANCELED":
        return found
    if effective_state(found.state, found.expires_at, int(time.time())) == "EXPIRED":
        raise WrongState("The invoice has expired; there is nothing to cancel", "EXPIRED")
    try:
        follower.cancel(found.payment_hash, reason)
    except InvoiceNotOpen as exc:
        raise WrongState(f"The node did not cancel the invoice: {exc}", found.state) from None
    except NodeError as exc:
        raise _node_error(exc) from None
    return fresh(follower, found.payment_hash)


def fresh(follower: Follower, payment_hash: str) -> StoredInvoice:
    row = invoices.by_hash(follower.store.conn, payment_hash, "incoming")
    if row is None:  # checked before the node call; rows are never deleted
        raise NotFound("Invoice not found")
    return row


def _not_accepted(found: StoredInvoice) -> str:
    if found.state == "OPEN":
        return "The hold invoice is not paid yet (CREATED); it can be settled once ACCEPTED"
    # A client settling an invoice the safety cancel (or anyone) canceled is
    # told why, not just that it is canceled.
    why = f" ({found.cancel_reason})" if found.state == "CANCELED" and found.cancel_reason else ""
    return f"The invoice is {found.state}{why}; only an ACCEPTED hold invoice can be settled"


def _node_error(exc: NodeError) -> InvoicingError:
    if isinstance(exc, NodeUnavailable):
        return NodeDown(f"The node is unreachable, try again shortly ({exc})")
    if isinstance(exc, NodePermissionDenied):
        return _not_permitted(exc)
    return NodeRefused(f"The node refused: {exc}")


def _not_permitted(exc: NodePermissionDenied) -> NotPermitted:
    return NotPermitted(f"lnplugin's credentials for the node do not allow this: {exc}")
