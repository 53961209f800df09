"""What each NIP-47 method does once a request is authorised: the methods
offered and allowed by the connection's scopes, then `get_info`,
`make_invoice`, `lookup_invoice`, `list_transactions` and the hold invoice
methods, against the store and the node.

Kept apart from the worker (`worker.py`), which owns the threads, the relays,
who may ask and how often, and the exactly-once bookkeeping around a call.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from typing import Any

import nostr_sdk as ns

from lnplugin import invoicing
from lnplugin.follower import Follower
from lnplugin.nodes.base import Feature, HoldInvoices, InvoiceRequest, Node, NodeError
from lnplugin.nwc import protocol as p
from lnplugin.store import Store
from lnplugin.store import nwc as db
from lnplugin.store.models import StoredInvoice

HEX64 = re.compile(r"[0-9a-fA-F]{64}")
# What a BOLT11 invoice can carry: 21 million bitcoin, and a `d` field of at
# most 639 bytes of UTF-8 (the HTTP API's limits too, `api/schemas.py`).
MAX_MSAT = 21_000_000 * 100_000_000 * 1000
MAX_DESCRIPTION_BYTES = 639
MAX_EXPIRY = 31_536_000  # a year, in seconds
# SQLite's integers are 64-bit signed: a larger `from`, `until`, `limit` or
# `offset` would overflow the query.
MAX_INT64 = 2**63 - 1
# How each refusal of `lnplugin.invoicing` is answered, in NIP-47 codes.
_CODES: dict[type[invoicing.InvoicingError], str] = {
    invoicing.Unsupported: "NOT_IMPLEMENTED",
    invoicing.NotPermitted: "NOT_IMPLEMENTED",
    invoicing.NotFound: "NOT_FOUND",
    invoicing.NotReceivable: "NOT_FOUND",
    invoicing.NodeDown: "INTERNAL",
    invoicing.NodeRefused: "INTERNAL",
}


class Methods:
    """The NIP-47 methods on one node and store; `hold`: the node can hold
    invoices; `address_domain`: the domain of the Lightning Addresses served
    (`--public-url`'s), which completes `recipient_data`."""

    def __init__(
        self,
        store: Store,
        node: Node,
        follower: Follower,
        network: str,
        address_domain: str | None = None,
    ) -> None:
        self.store = store
        self.address_domain = address_domain
        self.node = node
        self.follower = follower
        self.network = network
        self.hold = node.has_feature(Feature.HOLD_INVOICES) and isinstance(node, HoldInvoices)

    def run(self, request: p.Request, connection: db.Connection, keys: ns.Keys) -> dict[str, Any]:
        """The body of the answer to an authorised request; raises `p.Refuse`
        for an error answer. `keys`: the connection's wallet key, which signs
        the answer `make_invoice` stores with its invoice."""
        allowed = p.methods_for(connection.scopes, self.hold)
        if request.method not in p.offered(self.hold)[0]:
            # NOT_IMPLEMENTED, as NIP-47 has it for a method a wallet does not
            # offer: RESTRICTED would tell the app its own key may not, which
            # a new connection would not mend. Nothing is asked of the node.
            why = ""
            if request.method in p.HOLD_METHODS:
                reason = self.node.unavailable.get(Feature.HOLD_INVOICES)
                why = f": the node cannot hold invoices{f' ({reason})' if reason else ''}"
            raise p.Refuse("NOT_IMPLEMENTED", f"{request.method} is not offered{why}")
        if request.method not in allowed:
            raise p.Refuse("RESTRICTED", f"this connection may not call {request.method}")
        if request.method == "get_info":
            return p.result("get_info", self._get_info(allowed, connection.scopes))
        if request.method == "make_invoice":
            return self._make_invoice(request, connection, keys)
        if request.method in p.HOLD_METHODS:
            try:
                return self._hold(request, connection, keys)
            except invoicing.InvoicingError as exc:
                raise p.Refuse(_CODES.get(type(exc), "OTHER"), exc.message) from None
        types = self._types(connection.scopes)
        params = request.params
        if request.method == "lookup_invoice":
            payment_hash, bolt11 = params.get("payment_hash"), params.get("invoice")
            for name, value in (("payment_hash", payment_hash), ("invoice", bolt11)):
                if value is not None and not isinstance(value, str):
                    raise p.Refuse("OTHER", f"{name} must be a string")
            if payment_hash is None and bolt11 is None:
                raise p.Refuse("OTHER", "payment_hash or invoice is required")
            # Hex and bech32 are case-insensitive: a BOLT11 scanned from a QR
            # code is often all upper case, and in a `lightning:` URI (the
            # checkout page's QR code is `LIGHTNING:<BOLT11>`). Stored, both
            # are lower case, without the scheme.
            inv = db.lookup(
                self.store.conn,
                types,
                payment_hash.lower() if payment_hash is not None else None,
                _bolt11(bolt11) if bolt11 is not None else None,
            )
            if inv is None:
                raise p.Refuse("NOT_FOUND", "no such invoice")
            return p.result("lookup_invoice", self._transaction(inv))
        return p.result("list_transactions", self._list(params, types))

    @staticmethod
    def _types(scopes: frozenset[str]) -> list[str]:
        types = []
        if "invoices:read" in scopes:
            types.append("incoming")
        if "transactions:read" in scopes:
            types.append("outgoing")
        return types

    def _list(self, params: dict[str, Any], types: list[str]) -> dict[str, Any]:
        def number(name: str) -> int | None:
            value = params.get(name)
            if value is None:
                return None
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_INT64:
                raise p.Refuse("OTHER", f"{name} must be a non-negative integer")
            return value

        unpaid = params.get("unpaid", False)
        if unpaid is not None and not isinstance(unpaid, bool):
            raise p.Refuse("OTHER", "unpaid must be true or false")
        wanted = params.get("type")
        if wanted is not None:
            if wanted not in ("incoming", "outgoing"):
                raise p.Refuse("OTHER", "type must be incoming or outgoing")
            if wanted not in types:
                raise p.Refuse("RESTRICTED", f"this connection may not list {wanted} payments")
            types = [wanted]
        rows = db.transactions(
            self.store.conn,
            types,
            since=number("from"),
            until=number("until"),
            limit=min(number("limit") or 20, p.MAX_PAGE),
            offset=number("offset") or 0,
            unpaid=bool(unpaid),
        )
        return {
            "transactions": p.fit_page("list_transactions", [self._transaction(r) for r in rows])
        }

    def _transaction(self, inv: StoredInvoice) -> dict[str, Any]:
        return p.transaction(inv, address_domain=self.address_domain)

    def _get_info(self, methods: list[str], scopes: frozenset[str]) -> dict[str, Any]:
        try:
            info = self.node.get_info()
        except NodeError:
            info = None
        # What is not known (the node's colour and block hash are not asked;
        # nothing of the node while it is unreachable) is left out rather than
        # sent as null where NIP-47 lists strings and numbers.
        found = {
            "alias": info.alias if info else None,
            "pubkey": info.pubkey if info else None,
            # NIP-47 names the networks mainnet, testnet, signet and regtest.
            "network": "mainnet" if self.network == "bitcoin" else self.network,
            "block_height": info.block_height if info else None,
            "methods": methods,
            "notifications": p.notifications_for(scopes, self.hold),
        }
        return {k: v for k, v in found.items() if v is not None}

    def _make_invoice(
        self, request: p.Request, connection: db.Connection, keys: ns.Keys
    ) -> dict[str, Any]:
        invoice_request, metadata = _invoice_request(request.params)
        try:
            minted = invoicing.mint(self.follower, invoice_request, None)
        except invoicing.InvoicingError as exc:
            raise p.Refuse(_CODES.get(type(exc), "OTHER"), exc.message) from None
        return self._store(request, connection, keys, minted, invoice_request, metadata, hold=False)

    def _store(
        self,
        request: p.Request,
        connection: db.Connection,
        keys: ns.Keys,
        minted: Any,
        asked: InvoiceRequest,
        metadata: dict[str, Any] | None,
        *,
        hold: bool,
    ) -> dict[str, Any]:
        """Store a minted invoice with its created event, its maker and the
        signed answer, in one transaction: a replay of the request finds the
        answer and can never mint a second one."""
        fields = invoicing.node_fields(minted, hold=hold, source="nwc")
        if minted.description is None:
            fields["description"] = asked.description
        fields["description_hash"] = minted.description_hash or asked.description_hash
        fields["metadata"] = json.dumps(metadata) if metadata else None
        with self.store.transaction() as tx:
            row = invoicing.insert(tx, fields)
            db.made(tx, row.id, connection.id)
            body = p.result(request.method, self._transaction(row))
            db.answer(tx, request.event_id, p.response_event(keys, request, body).as_json())
        return body

    # -- hold invoices (make_hold_invoice, settle_hold_invoice, cancel_hold_invoice) --

    def _hold(self, request: p.Request, connection: db.Connection, keys: ns.Keys) -> dict[str, Any]:
        params = request.params
        if request.method == "make_hold_invoice":
            invoice_request, metadata = _invoice_request(params)
            payment_hash = _hex64(params, "payment_hash")
            delta = params.get("min_cltv_expiry_delta")
            if delta is not None:
                try:
                    delta = invoicing.check_cltv_delta(delta, self.follower.hold_cancel_margin)
                except invoicing.BadParameter as exc:
                    raise p.Refuse("OTHER", f"min_cltv_expiry_delta {exc.message}") from None
                invoice_request = replace(invoice_request, min_final_cltv_expiry_delta=delta)
            minted = invoicing.mint(self.follower, invoice_request, payment_hash)
            return self._store(
                request, connection, keys, minted, invoice_request, metadata, hold=True
            )
        if request.method == "settle_hold_invoice":
            preimage = _hex64(params, "preimage")
            payment_hash = hashlib.sha256(bytes.fromhex(preimage)).hexdigest()
            given = params.get("payment_hash")  # not in NIP-47; checked when sent
            if given is not None and _hex64(params, "payment_hash") != payment_hash:
                raise p.Refuse("OTHER", "the preimage's SHA-256 is not payment_hash")
            # Settled already: a retry gets success again (`invoicing.settle`).
            invoicing.settle(self.follower, self._own_hold(connection, payment_hash), preimage)
            return p.result(request.method, {})
        found = self._own_hold(connection, _hex64(params, "payment_hash"))
        invoicing.cancel(self.follower, found, "canceled through Nostr Wallet Connect")
        return p.result(request.method, {})

    def _own_hold(self, connection: db.Connection, payment_hash: str) -> StoredInvoice:
        """A hold invoice this connection made. Any other is NOT_FOUND, so a
        payment hash (which every payer sees) is no handle on another app's."""
        try:
            found = invoicing.own_incoming(self.follower, payment_hash)
        except invoicing.InvoicingError:
            found = None
        if not (found and found.hold and db.made_by(self.store.conn, found.id, connection.id)):
            raise p.Refuse("NOT_FOUND", "no hold invoice of this connection has that payment hash")
        return found


def _bolt11(text: str) -> str:
    """A BOLT11 as stored: lower case, without a `lightning:` URI scheme."""
    bolt11 = text.strip().lower()
    return bolt11.removeprefix("lightning:")


def _hex64(params: dict[str, Any], name: str) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not HEX64.fullmatch(value):
        raise p.Refuse("OTHER", f"{name} must be 64 hex characters")
    return value.lower()


def _invoice_request(params: dict[str, Any]) -> tuple[InvoiceRequest, dict[str, Any] | None]:
    """make_invoice's and make_hold_invoice's shared parameters, checked."""
    amount = params.get("amount")
    if not isinstance(amount, int) or isinstance(amount, bool) or not 0 <= amount <= MAX_MSAT:
        raise p.Refuse("OTHER", f"amount (msat) must be an integer from 0 to {MAX_MSAT}")
    description = params.get("description")
    description_hash = params.get("description_hash")
    expiry = params.get("expiry") or 86400
    if description is not None:
        if not isinstance(description, str):
            raise p.Refuse("OTHER", "description must be a string")
        try:
            size = len(description.encode("utf-8"))
        except UnicodeEncodeError:  # a lone surrogate (\ud800) JSON lets through
            raise p.Refuse("OTHER", "description must be valid Unicode") from None
        if size > MAX_DESCRIPTION_BYTES:
            raise p.Refuse(
                "OTHER",
                f"description must be at most {MAX_DESCRIPTION_BYTES} bytes of UTF-8 (the BOLT11"
                " limit); send description_hash for a longer one",
            )
    if description_hash is not None and (
        not isinstance(description_hash, str) or not HEX64.fullmatch(description_hash)
    ):
        raise p.Refuse("OTHER", "description_hash must be 64 hex characters")
    if not isinstance(expiry, int) or isinstance(expiry, bool) or not 1 <= expiry <= MAX_EXPIRY:
        raise p.Refuse("OTHER", f"expiry must be 1 to {MAX_EXPIRY} seconds")
    metadata = params.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        # Often a JSON.stringify'd object: dropped, the app never learnt why
        # its metadata did not come back.
        raise p.Refuse("OTHER", "metadata must be an object")
    if metadata is not None and not p.metadata_fits(metadata):
        metadata = None  # NIP-47: over 4096 characters it MUST be dropped
    request = InvoiceRequest(
        amount_msat=amount or None,
        description=description,
        description_hash=description_hash.lower() if description_hash else None,
        expiry=expiry,
    )
    return request, metadata
