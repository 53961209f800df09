"""The public LNURL routes: LUD-16 discovery, the LUD-06 callback, LUD-21
verify, and Podcasting 2.0 keysend addresses. No token: payers' wallets call
these, so every one is rate-limited per client address (`api/public.py`),
answers errors in LUD-06's `{"status": "ERROR", "reason": ...}`, and is
readable from a page of any origin (browser wallets and Nostr clients).

The callback is the only public route that makes the node do work (mint an
invoice), so it has a limit of its own (`--rate-limit-callback`) and checks
everything it can (amount range, comment length, payer data) before asking
the node. What it mints is an ordinary incoming invoice row, with the
comment, the payer data and the address's username, so lists, webhooks and
SSE treat it like any other. With `--zaps` the callback also takes a NIP-57
zap request (`nostr`, checked by `lnplugin/zaps.py`): the invoice then
commits to the request alone, which is stored beside it for its receipt
(`lnplugin/zapper.py`).
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, request

from lnplugin import invoicing, lnurl, zaps
from lnplugin.api import context, public
from lnplugin.api.errors import APIError, node_down
from lnplugin.api.invoices import log_orphan
from lnplugin.api.schemas import HEX64
from lnplugin.nodes.base import InvoiceRequest
from lnplugin.store import addresses, invoices, lnurl_auth
from lnplugin.store import zaps as zap_requests
from lnplugin.store.addresses import Address
from lnplugin.store.models import StoredInvoice

# Discovery, verify and keysend: cheap reads.
bp = Blueprint("lnurlp", __name__)
# The callback, which mints: a limit of its own.
mint_bp = Blueprint("lnurlp_callback", __name__)
# Where its routes live: a wallet's 404 or 405 there is answered in LUD-06's shape too.
PREFIXES = ("/.well-known/lnurlp/", "/.well-known/keysend/", "/lnurlp/")
for _bp in (bp, mint_bp):
    public.lnurl_errors(_bp)
    public.open_to_every_origin(_bp)
    public.never_stored(_bp)

INVOICE_EXPIRY = 3600  # seconds; a wallet pays right after the callback


def address(username: str) -> Address:
    """The address `username` names, in any case. Usernames are lower case
    (LUD-16, and `lnurl.USERNAME` keeps them so), but a phone capitalises
    the first letter a payer types, and not every wallet lowers it again
    before asking `/.well-known/lnurlp/Alice`; such a payer meant `alice`."""
    row = addresses.by_username(context.service().store.conn, username.lower())
    if row is None:
        raise APIError(404, f"No Lightning Address {username!r} here")
    return row


@bp.get("/.well-known/lnurlp/<username>")
def discover(username: str) -> Any:
    """LUD-06 step 3 for a LUD-16 address."""
    base = public.public_url()
    row = address(username)
    body: dict[str, Any] = {
        "tag": "payRequest",
        "callback": lnurl.callback_url(base, row.username),
        "minSendable": row.min_sendable_msat,
        "maxSendable": row.max_sendable_msat,
        "metadata": lnurl.metadata(row.username, row.description, row.image, base),
        "commentAllowed": row.comment_allowed,
    }
    if row.payer_data:
        requested = row.payer_data_request
        if "auth" in requested:
            # LUD-18: a fresh LUD-04 challenge in every answer, good for one payment.
            with context.service().store.transaction(wake=False) as tx:  # no waiter reads k1s
                k1 = lnurl_auth.issue(tx, row.username)
            requested["auth"] = {**requested["auth"], "k1": k1}
        body["payerData"] = requested
    zapper = context.service().zaps
    if zapper is not None and takes_zaps(row):
        # NIP-57 Appendix C: receipts for zaps to this address are signed by this key.
        body["allowsNostr"] = True
        body["nostrPubkey"] = zapper.pubkey
    return body


def takes_zaps(row: Address) -> bool:
    """Whether the address can take a zap: a zap invoice's description is the
    zap request alone (NIP-57), so payer data cannot be committed to, and an
    address that requires some is not offered zaps."""
    return not any(v.get("mandatory") for v in row.payer_data_request.values())


@mint_bp.get("/lnurlp/<username>/callback")
def callback(username: str) -> Any:
    """LUD-06 step 5: mint an invoice whose `h` commits to the metadata (and
    the payer data, LUD-18), with the comment (LUD-12) and a verify URL (LUD-21)."""
    base = public.public_url()
    row = address(username)
    amount = context.int_param("amount", request.args.get("amount"), None, 1)
    if amount is None:
        raise APIError(400, "amount is required (millisatoshi)")
    payer_text = request.args.get("payerdata") if row.payer_data else None
    zap = None
    nostr = request.args.get("nostr")
    zapper = context.service().zaps
    if nostr is not None and zapper is not None:
        if not takes_zaps(row):
            raise APIError(400, "this address takes no zaps (it asks for payer data)")
        try:
            zap = zaps.parse_request(nostr, amount)
        except zaps.ZapRequestError as exc:
            raise APIError(400, str(exc)) from None
        payer_text = None  # the description is the zap request alone (NIP-57)
    stored = mint(row, base, amount, request.args.get("comment") or None, payer_text, zap)
    body: dict[str, Any] = {
        "pr": stored.payment_request,
        "routes": [],
        # LUD-11: an address is meant to be kept and paid again.
        "disposable": False,
        "verify": lnurl.verify_url(base, stored.payment_hash),
    }
    if row.success_message:
        body["successAction"] = {"tag": "message", "message": row.success_message}
    return body


def mint(
    row: Address,
    base: str,
    amount: int,
    comment: str | None,
    payer_text: str | None,
    zap: zaps.ZapRequest | None = None,
) -> StoredInvoice:
    """Check a payment to `row` and mint its invoice on the node; APIError
    (400, 502, 503) says why not. The one mint path for an address: the
    callback and the checkout page's amount form (`api/checkout.py`) both
    come here, so a payer gets the same checks and the same `h` either way.
    The node call and the stored row go through `lnplugin.invoicing`, as
    `POST /invoices` and NWC's `make_invoice` do.
    """
    svc = context.service()
    if not row.min_sendable_msat <= amount <= row.max_sendable_msat:
        raise APIError(
            400,
            f"amount must be from {row.min_sendable_msat} to {row.max_sendable_msat} "
            f"millisatoshi (got {amount})",
        )
    if comment is not None and len(comment) > row.comment_allowed:
        raise APIError(
            400,
            f"comment must be at most {row.comment_allowed} characters (got {len(comment)})"
            if row.comment_allowed
            else "this address takes no comment",
        )
    payer: dict[str, Any] = {}
    if payer_text is not None:
        try:
            payer = lnurl.parse_payer_data(payer_text, row.payer_data_request)
        except lnurl.PayerDataError as exc:
            raise APIError(400, str(exc)) from None
    elif zap is None:
        missing = [k for k, v in row.payer_data_request.items() if v.get("mandatory")]
        if missing:
            raise APIError(400, f"payerdata.{missing[0]} is mandatory")
    auth = payer.get("auth") if "auth" in row.payer_data_request else None
    if auth is not None:
        # Its signature is checked (parse_payer_data); its k1 must be one this
        # address's discovery issued, unused and unexpired. Used up here, once
        # every other check has passed, so a refused amount does not burn it.
        with svc.store.transaction() as tx:
            fresh = lnurl_auth.consume(tx, auth["k1"], row.username)
        if not fresh:
            raise APIError(
                400,
                "payerdata.auth.k1 is not one this address issued, or it was used or has "
                "expired; ask the address again for a new one",
            )

    if zap is not None:
        described, digest = zap.text, zap.description_hash  # NIP-57: the zap request only
    else:
        metadata = lnurl.metadata(row.username, row.description, row.image, base)
        described, digest = (
            metadata + (payer_text or ""),
            lnurl.description_hash(metadata, payer_text),
        )
    invoice_request = InvoiceRequest(
        amount_msat=amount,
        # The text `h` commits to; nodes that need it (CLN's deschashonly) hash it.
        description=described,
        description_hash=digest,
        expiry=INVOICE_EXPIRY,
    )
    try:
        minted = invoicing.mint(svc.follower, invoice_request, None)
    except invoicing.NodeDown:
        # The detail (the node's address, say) is for the operator, not for payers.
        raise node_down("The node is unreachable, try again shortly") from None
    except invoicing.InvoicingError as exc:
        raise APIError(502, exc.message) from None

    asked = {k: v for k, v in payer.items() if k in row.payer_data_request}
    fields = invoicing.node_fields(minted, hold=False, source="lnurl")
    fields.update(
        {
            "description": row.description,
            "description_hash": digest,
            "comment": comment,
            # Under Alby's key for payer data (its invoice object's
            # `metadata.payer_data`), as received from the `payerdata` parameter.
            "metadata": json.dumps({"payer_data": payer}) if payer else None,
            # Only the kinds the address asked for become payer fields (LUD-18:
            # the rest is kept as received, in `metadata`, and hashed).
            "payer_name": asked.get("name"),
            "payer_email": asked.get("email"),
            "payer_pubkey": asked["pubkey"].lower() if asked.get("pubkey") else None,
            "webhook_url": row.webhook_url,
            "lightning_address": row.username,
        }
    )
    if zap is not None:
        # A zap's sender and comment, in the fields every invoice has, and the
        # request where Alby's invoice object has it (`metadata.zap_request`).
        fields["payer_pubkey"] = zap.sender
        fields["metadata"] = json.dumps({"zap_request": zap.event})
        if comment is None and zap.content:
            fields["comment"] = zap.content
    try:
        with svc.store.transaction() as tx:
            stored = invoicing.insert(tx, fields)
            if zap is not None:
                zap_requests.record_request(tx, stored.id, zap.text, zap.relays)
    except Exception as exc:
        log_orphan(minted, exc)
        raise
    return stored


@bp.get("/lnurlp/verify/<payment_hash>")
def verify(payment_hash: str) -> Any:
    """LUD-21. Only invoices minted through an address answer (an API
    invoice's state stays behind its token); the preimage only once settled."""
    public.public_url()
    found = None
    if HEX64.fullmatch(payment_hash):
        found = invoices.by_hash(context.service().store.conn, payment_hash.lower(), "incoming")
    if found is None or found.source != "lnurl":
        raise APIError(404, "Not found")
    settled = found.state == "SETTLED"
    return {
        "status": "OK",
        "settled": settled,
        "preimage": found.preimage if settled else None,
        "pr": found.payment_request,
    }


@bp.get("/.well-known/keysend/<username>")
def keysend(username: str) -> Any:
    """The node and the TLV record a Podcasting 2.0 app sends a keysend with
    (`<podcast:valueRecipient>`); keysends carrying it are the address's."""
    public.public_url()
    row = address(username)
    info = context.service().node_info()
    if info is None or not info.pubkey:
        raise node_down("The node is unreachable, try again shortly")
    return {
        "status": "OK",
        "tag": "keysend",
        "pubkey": info.pubkey,
        "customData": [
            {
                "customKey": str(row.keysend_custom_key),
                "customValue": row.keysend_custom_value,
            }
        ],
    }
