"""Simulated payments on the embedded dev node (`admin` scope).

Registered only when the node declares `Feature.DEV_PAYMENTS` (the dev
node), so these routes do not exist on a real node.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint

from lnplugin.api import context
from lnplugin.api.auth import require
from lnplugin.api.errors import APIError
from lnplugin.api.schemas import DevKeysend, DevMine, DevPay
from lnplugin.boostagram import parse_record_value
from lnplugin.nodes.base import (
    DevPayments,
    Feature,
    InvoiceNotFound,
    InvoiceNotOpen,
    NodeError,
    NodeInvoice,
)
from lnplugin.nodes.dev import DevNode
from lnplugin.store import invoices

bp = Blueprint("dev", __name__, url_prefix="/dev")


def _payment_json(invoice: NodeInvoice) -> dict[str, Any]:
    return {
        "payment_hash": invoice.payment_hash,
        "state": invoice.state,
        "amount_received_msat": invoice.amount_received_msat,
        "settled_at": invoice.settled_at,
        "is_keysend": invoice.is_keysend,
    }


def _payer() -> DevPayments:
    """The node's simulated payments. The blueprint is only registered on
    nodes with `Feature.DEV_PAYMENTS`; checking again here is what makes the
    call typed (`DevPayments`), and keeps a 404 if that ever changes."""
    node = context.service().node
    if not node.has_feature(Feature.DEV_PAYMENTS) or not isinstance(node, DevPayments):
        raise APIError(404, f"the {node.kind} node cannot simulate payments")
    return node


def _wait_applied(payment_hash: str, state: str = "SETTLED", timeout: float = 2.0) -> None:
    """Answer after the follower stored the payment, so a client that reads
    right after paying sees it (the feed normally commits within ms).
    Waits on the store's commit notification rather than polling."""
    store = context.service().store
    deadline = time.monotonic() + timeout
    seen = store.commit_version
    while True:
        row = invoices.by_hash(store.conn, payment_hash, "incoming")
        left = deadline - time.monotonic()
        if (row is not None and row.state == state) or left <= 0:
            return
        seen = store.wait_for_commit(seen, min(left, 0.1))


@bp.post("/pay")
@require("admin")
def pay() -> Any:
    body = context.body_as(DevPay)
    payer = _payer()
    try:
        paid = payer.pay(body.payment_request or body.payment_hash or "", body.amount_msat)
    except InvoiceNotFound as exc:
        raise APIError(404, str(exc)) from None
    except InvoiceNotOpen as exc:
        raise APIError(409, str(exc)) from None
    except NodeError as exc:
        field = "amount_msat" if "amount" in str(exc) else "payment_request"
        raise APIError(400, "Invalid request", {field: str(exc)}) from None
    _wait_applied(paid.payment_hash, paid.state)  # ACCEPTED for a hold invoice
    return _payment_json(paid)


@bp.post("/mine")
@require("admin")
def mine() -> Any:
    """Move the simulated chain on, towards held invoices' settle deadlines."""
    body = context.body_as(DevMine)
    node = context.service().node
    if not isinstance(node, DevNode):
        raise APIError(404, f"the {node.kind} node has no simulated chain")
    return {"block_height": node.mine(body.blocks)}


@bp.post("/keysend")
@require("admin")
def keysend() -> Any:
    body = context.body_as(DevKeysend)
    records = {int(k): parse_record_value(v) for k, v in body.custom_records.items()}
    paid = _payer().keysend(body.amount_msat, records)
    _wait_applied(paid.payment_hash)
    return _payment_json(paid)
