"""Invoices: create, get by payment hash, the three Alby lists, and the export."""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, request

from lnplugin import export, fiat, invoicing, lnurl
from lnplugin.alby import invoice_json
from lnplugin.api import context
from lnplugin.api.auth import READ_SCOPES, current_token, has_scope, require, require_one_of
from lnplugin.api.errors import APIError, node_down
from lnplugin.api.schemas import HEX64, MAX_MSAT, HoldCancel, HoldSettle, InvoiceCreate
from lnplugin.api.webhooks import guard_target
from lnplugin.nodes.base import InvoiceRequest, NodeInvoice
from lnplugin.store import idempotency, invoices, tokens
from lnplugin.store.models import StoredInvoice

bp = Blueprint("invoices", __name__)
log = logging.getLogger(__name__)

_FILTERS = {
    "q[created_at_gt]",
    "q[created_at_lt]",
    "q[since]",
    "q[before]",
    "q[lightning_address]",
    "q[boostagram]",
    "q[feed_guid]",
    "q[feed_id]",
    "q[item_guid]",
    "q[action]",
}


@bp.post("/invoices")
@require("invoices:create")
def create_invoice() -> Any:
    svc = context.service()
    raw = context.json_body()
    body = context.body_as(InvoiceCreate, raw)
    delta: int | None = None
    if body.min_cltv_expiry_delta is not None:
        try:  # the rule NWC's make_hold_invoice follows too
            delta = invoicing.check_cltv_delta(
                body.min_cltv_expiry_delta,
                svc.follower.hold_cancel_margin,
                hold=body.payment_hash is not None,
            )
        except invoicing.InvoicingError as exc:
            raise api_error(exc) from None
    if body.webhook is not None:
        guard_target(body.webhook, "webhook")  # before the node mints anything

    token = current_token()
    key = request.headers.get("Idempotency-Key")
    body_hash = ""  # only an Idempotency-Key needs it
    if key is not None:
        if not key or len(key) > 255:
            raise APIError(400, "Invalid request", {"Idempotency-Key": "must be 1-255 characters"})
        body_hash = hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()
        replay = _replay(svc.store.conn, token.id, key, body_hash)
        if replay is not None:
            return replay

    price = _price(body)
    invoice_request = InvoiceRequest(
        amount_msat=price.get("amount_msat", body.requested_msat),
        description=body.text,
        description_hash=body.description_hash,
        expiry=price.get("expiry", body.expiry),
        min_final_cltv_expiry_delta=delta,
    )
    try:
        minted = invoicing.mint(svc.follower, invoice_request, body.payment_hash)
    except invoicing.InvoicingError as exc:
        raise api_error(exc) from None

    fields = _row_fields(minted, body)
    fields.update(price.get("row", {}))
    fields.update(_display(minted.amount_msat, fields))
    try:
        with svc.store.transaction() as tx:
            row = invoicing.insert(tx, fields)
            tokens.made(tx, row.id, token.id)
            if key is not None:
                idempotency.remember(tx, token.id, key, body_hash, row.id, int(time.time()))
    except sqlite3.IntegrityError as exc:
        # A concurrent request with the same Idempotency-Key won the race.
        replay = _replay(svc.store.conn, token.id, key, body_hash) if key else None
        if replay is None:
            log_orphan(minted, exc)
            raise
        return replay
    except Exception as exc:
        log_orphan(minted, exc)
        raise
    return invoice_json(row, int(time.time()), context.public_base()), 201


def _price(body: InvoiceCreate) -> dict[str, Any]:
    """For a fiat-priced create: the msat at the current rate, the shorter
    default expiry, and the price columns; {} for a BTC-priced one."""
    currency = body.fiat_currency
    if currency is None:
        return {}
    svc = context.service()
    if not svc.fiat.enabled:
        # A setting, not an outage: a 503 with Retry-After would have clients
        # retry a request that can never succeed on this server.
        raise APIError(
            400,
            "Invalid request",
            {
                "currency": f"cannot be {currency}: fiat pricing is off (no --fiat-provider); "
                "send the amount in sats"
            },
        )
    try:
        rate = svc.fiat.rate(currency)
    except fiat.RatesUnavailable as exc:
        raise APIError(503, str(exc), headers={"Retry-After": str(exc.retry_after)}) from None
    amount = body.price or 0
    msat = fiat.to_msat(amount, currency, rate.value)
    if msat > MAX_MSAT:
        raise APIError(400, "Invalid request", {"amount": "is more than 21 million bitcoin"})
    expiry = body.expiry if "expiry" in body.model_fields_set else svc.settings.fiat_expiry
    return {
        "amount_msat": msat,
        "expiry": expiry,
        "row": {
            "price_currency": currency,
            "price_amount": amount,
            "price_rate": fiat.rate_text(rate.value),
            "price_rate_source": rate.source,
            "price_rate_at": int(rate.at),
        },
    }


def _display(amount_msat: int | None, fields: dict[str, Any]) -> dict[str, Any]:
    """Alby's `fiat_currency`/`fiat_in_cents`, fixed at creation.

    In `--display-currency` when set: the price itself when the invoice is
    priced in it, else the msat at the current rate (left null, not refused,
    when no rate is available: a BTC invoice does not need one). Without a
    display currency, a fiat-priced invoice shows its own price.
    """
    display = context.service().settings.display_currency
    priced_in = fields.get("price_currency")
    if display is None or display == priced_in:
        if priced_in is None:
            return {}
        return {"fiat_currency": priced_in, "fiat_in_cents": fields["price_amount"]}
    if not amount_msat:
        return {"fiat_currency": display, "fiat_in_cents": None}
    try:
        rate = context.service().fiat.rate(display)
    except fiat.RatesUnavailable as exc:
        log.info("no %s display price for a new invoice: %s", display, exc)
        return {}
    return {
        "fiat_currency": display,
        "fiat_in_cents": fiat.to_minor(amount_msat, display, rate.value),
    }


# How each refusal of `lnplugin.invoicing` is answered over HTTP.
_STATUS: dict[type[invoicing.InvoicingError], int] = {
    invoicing.Unsupported: 501,
    invoicing.NotPermitted: 501,
    invoicing.Exists: 409,
    invoicing.NotFound: 404,
    invoicing.NotReceivable: 409,
    invoicing.WrongState: 409,
    invoicing.NodeDown: 503,
    invoicing.NodeRefused: 502,
}


def api_error(exc: invoicing.InvoicingError) -> APIError:
    if isinstance(exc, invoicing.WrongPreimage):
        return APIError(400, "Invalid request", {"preimage": exc.message})
    if isinstance(exc, invoicing.BadParameter):
        return APIError(400, "Invalid request", {exc.field: exc.message})
    if isinstance(exc, invoicing.NodeDown):
        return node_down(exc.message)
    return APIError(_STATUS.get(type(exc), 400), exc.message)


@bp.post("/invoices/<payment_hash>/settle")
@require("invoices:create")
def settle_invoice(payment_hash: str) -> Any:
    """Settle an ACCEPTED hold invoice with the preimage of its hash."""
    follower = context.service().follower
    try:
        found = _yours(invoicing.own_incoming(follower, _hash_arg(payment_hash)))
        body = context.body_as(HoldSettle)
        settled = invoicing.settle(follower, found, body.preimage)
    except invoicing.InvoicingError as exc:
        raise api_error(exc) from None
    return invoice_json(settled, int(time.time()), context.public_base())


@bp.post("/invoices/<payment_hash>/cancel")
@require("invoices:create")
def cancel_invoice(payment_hash: str) -> Any:
    """Cancel an open or held invoice; the node refuses payments after it."""
    follower = context.service().follower
    try:
        found = _yours(invoicing.own_incoming(follower, _hash_arg(payment_hash)))
        context.body_as(HoldCancel)
        canceled = invoicing.cancel(follower, found, "canceled through the API")
    except invoicing.InvoicingError as exc:
        raise api_error(exc) from None
    return invoice_json(canceled, int(time.time()), context.public_base())


def _yours(found: StoredInvoice) -> StoredInvoice:
    """`found`, if the token may act on it: any invoice with `invoices:read`,
    else only one it minted. A payment hash is in every invoice a payer sees,
    and the answer is the whole invoice (payer data, metadata), so a token
    that may only create invoices is not handed others' by settling or
    canceling them; it hears "no such invoice", as for an unknown hash (and
    as an NWC connection does for another's hold invoice)."""
    token = current_token()
    if has_scope(token, "invoices:read") or tokens.made_by(
        context.service().store.conn, found.id, token.id
    ):
        return found
    raise invoicing.NotFound(f"No invoice with payment hash {found.payment_hash}")


def _hash_arg(payment_hash: str) -> str:
    if not HEX64.fullmatch(payment_hash):
        raise APIError(400, "Invalid request", {"payment_hash": "must be 64 hex characters"})
    return payment_hash.lower()


def log_orphan(minted: NodeInvoice, exc: BaseException) -> None:
    """The node has the invoice but the store does not (the write failed, e.g.
    the database stayed locked): name it so the operator can find it on the node."""
    log.error(
        "invoice %s was created on the node but not stored (%s); the client got an error "
        "and the node still holds the invoice",
        minted.payment_hash,
        exc,
    )


def _row_fields(minted: NodeInvoice, body: InvoiceCreate) -> dict[str, Any]:
    fields = invoicing.node_fields(minted, hold=body.payment_hash is not None, source="api")
    if minted.description is None:
        fields["description"] = body.text
    fields["description_hash"] = minted.description_hash or body.description_hash
    fields.update(
        comment=body.comment,
        metadata=json.dumps(body.metadata) if body.metadata is not None else None,
        payer_name=body.payer_name,
        payer_email=body.payer_email,
        payer_pubkey=body.payer_pubkey,
        webhook_url=body.webhook,
        items=json.dumps([i.model_dump() for i in body.items]) if body.items else None,
    )
    return fields


def _replay(conn: sqlite3.Connection, token_id: int, key: str, body_hash: str) -> Any:
    row = idempotency.lookup(conn, token_id, key)
    if row is None:
        return None
    if row.body_hash != body_hash:
        raise APIError(409, "Idempotency-Key was already used with a different request body")
    stored = invoices.by_id(conn, row.invoice_id)
    if stored is None:  # the key is written with its invoice, and invoices are never deleted
        raise RuntimeError(f"idempotency key {key!r} points at missing invoice {row.invoice_id}")
    replayed = {"Idempotent-Replayed": "true"}
    return invoice_json(stored, int(time.time()), context.public_base()), 201, replayed


@bp.get("/invoices/<payment_hash>")
@require("invoices:read")
def get_invoice(payment_hash: str) -> Any:
    """An outgoing payment also needs `transactions:read`, as its list does:
    otherwise a token made for receiving could read what the node paid."""
    found = context.readable_invoice(payment_hash)
    return invoice_json(found, int(time.time()), context.public_base())


def _int_arg(name: str, default: int | None, low: int, high: int | None) -> int | None:
    return context.int_param(name, request.args.get(name), default, low, high)


def _identifier_arg(name: str) -> str | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    if not raw or len(raw) > 64:
        raise APIError(400, "Invalid request", {name: "must be an invoice identifier"})
    return raw


def _address_arg() -> str | None:
    """`q[lightning_address]`: a username, or `user@domain` (the part before @ is used)."""
    raw = request.args.get("q[lightning_address]")
    if raw is None:
        return None
    username = raw.partition("@")[0]
    if not lnurl.USERNAME.fullmatch(username):
        raise APIError(
            400, "Invalid request", {"q[lightning_address]": "must be a Lightning Address username"}
        )
    return username


def _bool_arg(name: str) -> bool | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    if raw.lower() not in ("true", "false"):
        raise APIError(400, "Invalid request", {name: "must be true or false"})
    return raw.lower() == "true"


def _text_arg(name: str) -> str | None:
    """A boostagram field to match exactly (a guid or an action)."""
    raw = request.args.get(name)
    if raw is None:
        return None
    if not raw or len(raw) > 512:
        raise APIError(400, "Invalid request", {name: "must be 1-512 characters"})
    return raw


def _feed_id_arg() -> int | None:
    """`q[feed_id]`: a PodcastIndex feed id, the boostagram's `feedID` (an integer)."""
    raw = request.args.get("q[feed_id]")
    if raw == "":  # as the other boost filters: given, but empty, is a mistake
        raise APIError(400, "Invalid request", {"q[feed_id]": "must be an integer"})
    return _int_arg("q[feed_id]", None, 0, None)


def parse_list_query(name: invoices.ListName) -> invoices.ListQuery:
    unknown = [k for k in request.args if k.startswith("q[") and k not in _FILTERS]
    if unknown:
        raise APIError(
            400,
            "Invalid request",
            {k: "unknown filter; use " + ", ".join(sorted(_FILTERS)) for k in unknown},
        )
    return invoices.ListQuery(
        name=name,
        created_at_gt=_int_arg("q[created_at_gt]", None, 0, None),
        created_at_lt=_int_arg("q[created_at_lt]", None, 0, None),
        since=_identifier_arg("q[since]"),
        before=_identifier_arg("q[before]"),
        lightning_address=_address_arg(),
        boostagram=_bool_arg("q[boostagram]"),
        feed_guid=_text_arg("q[feed_guid]"),
        feed_id=_feed_id_arg(),
        item_guid=_text_arg("q[item_guid]"),
        action=_text_arg("q[action]"),
        page=_int_arg("page", 1, 1, None) or 1,
        items=_int_arg("items", 25, 1, invoices.MAX_ITEMS) or 25,
    )


def _list(name: invoices.ListName) -> Any:
    query = parse_list_query(name)
    try:
        rows = invoices.list_page(context.service().store.conn, query)
    except invoices.CursorNotFound as exc:
        raise APIError(
            400, "Invalid request", {exc.field: "no invoice with that identifier in this list"}
        ) from None
    now = int(time.time())
    base = context.public_base()
    return [invoice_json(row, now, base) for row in rows]


@bp.get("/invoices/incoming")
@require("invoices:read")
def list_incoming() -> Any:
    return _list("incoming")


@bp.get("/invoices/outgoing")
@require("transactions:read")
def list_outgoing() -> Any:
    return _list("outgoing")


@bp.get("/invoices")
@require("invoices:read", "transactions:read")
def list_all() -> Any:
    return _list("all")


# The scopes an export needs, per `type`: those of the list it mirrors.
_EXPORT_SCOPES = {
    "incoming": ("invoices:read",),
    "outgoing": ("transactions:read",),
    None: ("invoices:read", "transactions:read"),
}


@bp.get("/invoices/export")
@require_one_of(*READ_SCOPES)
def export_invoices() -> Any:
    """Every invoice as CSV or JSON Lines, streamed in batches (see `lnplugin.export`).

    Scopes follow the lists: `type=incoming` needs `invoices:read`,
    `type=outgoing` `transactions:read`, and both directions need both.
    """
    errors: dict[str, str] = {}
    fmt = request.args.get("format", "csv")
    if fmt not in export.FORMATS:
        errors["format"] = "must be csv or jsonl"
    type_ = request.args.get("type")
    if type_ is not None and type_ not in export.TYPES:
        errors["type"] = "must be incoming or outgoing"
    since: int | None = None
    if (raw_since := request.args.get("since")) is not None:
        try:
            since = export.parse_since(raw_since)
        except export.SinceError as exc:
            errors["since"] = str(exc)
    # As `lnplugin export --spreadsheet-safe`: a dashboard's CSV download
    # for a spreadsheet needs it as much as the command line's.
    safe = request.args.get("spreadsheet_safe", "false").lower()
    if safe not in ("true", "false"):
        errors["spreadsheet_safe"] = "must be true or false"
    elif safe == "true" and fmt != "csv":
        errors["spreadsheet_safe"] = "is for CSV only (format=csv)"
    if errors:
        raise APIError(400, "Invalid request", errors)
    token = current_token()
    missing = [s for s in _EXPORT_SCOPES[type_] if not has_scope(token, s)]
    if missing:
        raise APIError(403, f"Token lacks scope: {', '.join(missing)}")
    kind: export.Format = "jsonl" if fmt == "jsonl" else "csv"
    store = context.service().store

    def chunks() -> Iterator[str]:
        # Its own connection: the body goes on from other worker threads.
        with store.reader() as conn:
            yield from export.stream(
                conn, kind, type_=type_, since=since, spreadsheet_safe=safe == "true"
            )

    filename = f"lnplugin-invoices.{fmt}"
    return Response(
        chunks(),
        mimetype=None,
        content_type=export.MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
