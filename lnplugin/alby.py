"""The Alby Wallet API wire shapes: the invoice object and the decoded invoice.

Internally everything is integer msat and unix seconds. Sats appear only in the
fields Alby defines in sats (`amount`, `value`), and timestamps are ISO 8601
UTC where Alby uses strings (`created_at`, `expires_at`, `settled_at`).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the store imports this module, so only for annotations
    from lnplugin.store.models import StoredInvoice


def iso(ts: int | None) -> str | None:
    """ISO 8601 UTC. Formatted by hand: lists render three per row, and this
    is twice as fast as datetime.strftime."""
    if ts is None:
        return None
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % time.gmtime(ts)[:6]  # noqa: UP031


def effective_state(state: str, expires_at: int, now: int) -> str:
    """EXPIRED once the expiry passed unpaid, whatever the node still says."""
    if state == "OPEN" and now >= expires_at:
        return "EXPIRED"
    if state == "OPEN":
        return "CREATED"
    return state


def public_links(inv: StoredInvoice, public_url: str | None) -> tuple[Any, Any, Any]:
    """The invoice's public QR code URLs (PNG, SVG) and checkout page URL.

    None without a public URL (nothing public is served then), for outgoing
    payments (they are not the payer's to show) and for keysends (no BOLT11
    to draw). The id in them is `public_id`, not `identifier`: see
    `store.invoices.new_public_id`.
    """
    if inv.type != "incoming" or not inv.payment_request:
        return None, None, None
    return links(inv.public_id, public_url)


def links(public_id: str | None, public_url: str | None) -> tuple[Any, Any, Any]:
    """`public_links` from the id alone: the QR code URLs (PNG, SVG) and the
    checkout page URL of the invoice whose `public_id` this is; None without
    a public URL or an id."""
    if not public_url or not public_id:
        return None, None, None
    page = f"{public_url.rstrip('/')}/pay/{public_id}"
    return f"{page}/qr.png", f"{page}/qr.svg", page


def invoice_json(inv: StoredInvoice, now: int, public_url: str | None = None) -> dict[str, Any]:
    """Alby's invoice object for a stored invoice, as of `now` (for the state).

    `public_url` (the `--public-url` setting) fills the QR code and checkout
    links. Outbox payloads are written without it; their readers fill the
    links in when they send them (`store.events.with_links`).
    """
    settled = inv.state == "SETTLED"
    qr_png, qr_svg, checkout = public_links(inv, public_url)
    amount_msat = inv.amount_msat or 0
    received = inv.amount_received_msat or 0
    sats = (received if settled and not amount_msat else amount_msat) // 1000
    records = json.loads(inv.custom_records) if inv.custom_records else {}
    return {
        "amount": sats,
        "amount_msat": amount_msat,
        "amount_received_msat": received,
        "boostagram": json.loads(inv.boostagram) if inv.boostagram else None,
        # A reason noted before a cancel the node has not done (yet) is not shown.
        "cancel_reason": inv.cancel_reason if inv.state == "CANCELED" else None,
        "checkout_url": checkout,
        "comment": inv.comment,
        "created_at": iso(inv.created_at),
        "creation_date": inv.created_at,
        "currency": "BTC",
        "custom_records": records,
        "description": inv.description,
        "description_hash": inv.description_hash,
        "destination": inv.destination,
        "expires_at": iso(inv.expires_at),
        "expiry": inv.expiry,
        "fee": (inv.fee_msat or 0) // 1000,
        "fee_msat": inv.fee_msat or 0,
        "fiat_currency": inv.fiat_currency,
        "fiat_in_cents": inv.fiat_in_cents,
        "identifier": inv.identifier,
        "is_keysend": bool(inv.is_keysend),
        "items": json.loads(inv.items) if inv.items else None,
        "keysend_message": inv.keysend_message,
        "lightning_address": inv.lightning_address,
        "memo": inv.description,
        "metadata": json.loads(inv.metadata) if inv.metadata else None,
        "payer_email": inv.payer_email,
        "payer_name": inv.payer_name,
        "payer_pubkey": inv.payer_pubkey,
        "payment_hash": inv.payment_hash,
        "payment_request": inv.payment_request,
        "preimage": inv.preimage if settled else None,
        "price": (
            {
                "currency": inv.price_currency,
                "amount": inv.price_amount,
                "rate": inv.price_rate,
                "rate_source": inv.price_rate_source,
                "rate_at": iso(inv.price_rate_at),
            }
            if inv.price_currency
            else None
        ),
        "qr_code_png": qr_png,
        "qr_code_svg": qr_svg,
        "r_hash_str": inv.payment_hash,
        "settle_deadline": inv.settle_deadline,
        "settled": settled,
        "settled_at": iso(inv.settled_at) if settled else None,
        "state": effective_state(inv.state, inv.expires_at, now),
        "type": inv.type,
        "value": sats,
        "viewed_at": iso(inv.viewed_at),
    }


def decoded_json(invoice: Any, payee_alias: str | None, now: int) -> dict[str, Any]:
    """Alby's DecodedInvoice shape (plus extensions) for a `lnplugin.bolt11.Invoice`."""
    amount_msat = invoice.amount_msat
    return {
        "currency": invoice.currency,
        "network": invoice.network,
        "created_at": invoice.timestamp,
        "expiry": invoice.expiry,
        "expires_at": invoice.timestamp + invoice.expiry,
        "is_expired": now >= invoice.timestamp + invoice.expiry,
        "payee": invoice.payee,
        "payee_alias": payee_alias,
        "msatoshi": amount_msat,
        "amount": amount_msat // 1000 if amount_msat is not None else None,
        "amount_msat": amount_msat,
        "description": invoice.description,
        "description_hash": invoice.description_hash,
        "payment_hash": invoice.payment_hash,
        "payment_secret": invoice.payment_secret,
        "payment_metadata": invoice.payment_metadata,
        "min_final_cltv_expiry": invoice.min_final_cltv_expiry_delta,
        "features": list(invoice.features),
        "route_hints": [
            [
                {
                    "pubkey": hop.pubkey,
                    "short_channel_id": hop.short_channel_id,
                    "fee_base_msat": hop.fee_base_msat,
                    "fee_proportional_millionths": hop.fee_proportional_millionths,
                    "cltv_expiry_delta": hop.cltv_expiry_delta,
                }
                for hop in route
            ]
            for route in invoice.route_hints
        ],
        "fallbacks": [
            {"type": fb.type, "address": fb.address, "version": fb.version, "hex": fb.program}
            for fb in invoice.fallbacks
        ],
        "signature": invoice.signature,
    }


__all__ = ["decoded_json", "invoice_json", "iso"]
