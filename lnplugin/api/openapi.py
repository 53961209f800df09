"""The OpenAPI 3.1 document, built by apispec from the running app.

Where each part comes from, so the document cannot drift from the code:

- paths and methods: the app's URL map (every rule must have an entry in
  `OPERATIONS`, or `build` raises, and a test fails);
- request bodies: JSON Schema of the same pydantic models that validate them
  (`lnplugin.api.schemas`, `TicketCreate`, `EndpointCreate`);
- required scopes: read from the `auth.require` decorator of each view;
- responses: the models at the end of `schemas.py`, checked against real
  answers by the schemathesis test.

What is written here by hand is only what code cannot say: summaries, query
parameters read from `request.args`, which statuses each route answers, and
the shape of one Server-Sent Event (`EVENT_SCHEMAS`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from apispec import APISpec
from flask import Flask
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode

from lnplugin import __version__
from lnplugin.api import schemas
from lnplugin.api.auth import TICKET_ENDPOINTS
from lnplugin.api.context import MAX_PARAM_INT
from lnplugin.api.events import MAX_EVENT_ID
from lnplugin.api.info import STATUS_KEY_HEADER
from lnplugin.api.invoices import _FILTERS
from lnplugin.api.tickets import TicketCreate
from lnplugin.api.webhooks import EndpointCreate
from lnplugin.store.events import EVENT_TYPES
from lnplugin.store.invoices import MAX_ITEMS

REF = "#/components/schemas/{model}"
_CONVERTER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")

# Response models (serialization schemas) and request models (validation schemas).
RESPONSE_MODELS: tuple[type[BaseModel], ...] = (
    schemas.Error,
    schemas.Invoice,
    schemas.DecodedInvoice,
    schemas.Delivery,
    schemas.Endpoint,
    schemas.DevPayment,
    schemas.Info,
    schemas.Health,
    schemas.Ticket,
    schemas.LightningAddress,
    schemas.NwcConnection,
    schemas.LnurlError,
    schemas.LnurlPayRequest,
    schemas.LnurlInvoice,
    schemas.LnurlVerify,
    schemas.LnurlKeysend,
)
REQUEST_MODELS: tuple[type[BaseModel], ...] = (
    schemas.InvoiceCreate,
    schemas.DevPay,
    schemas.DevKeysend,
    schemas.DevMine,
    schemas.HoldSettle,
    schemas.AddressCreate,
    schemas.AddressUpdate,
    schemas.NwcConnectionCreate,
    schemas.DecodeBody,
    schemas.AddressPayForm,
    EndpointCreate,
    TicketCreate,
)

PATH_PARAMS: dict[str, dict[str, Any]] = {
    "payment_hash": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
    "endpoint_id": {"type": "string", "minLength": 1, "maxLength": 100},
    "event_id": {"type": "string", "minLength": 1, "maxLength": 100},
    "invoice": {"type": "string", "minLength": 1, "maxLength": 7089},
    "username": {"type": "string", "minLength": 1, "maxLength": 64},
    "connection_id": {"type": "integer", "minimum": 1, "maximum": MAX_PARAM_INT},
}
_INT = {"type": "integer", "minimum": 0, "maximum": MAX_PARAM_INT}
_IDENTIFIER = {"type": "string", "minLength": 1, "maxLength": 64}
_BOOST_TEXT = {"type": "string", "minLength": 1, "maxLength": 512}
# Every filter but the created_at ones: its schema and what it matches.
_TEXT_FILTERS: dict[str, tuple[dict[str, Any], str]] = {
    "q[since]": (_IDENTIFIER, "an invoice identifier: only newer invoices"),
    "q[before]": (_IDENTIFIER, "an invoice identifier: only older invoices"),
    "q[lightning_address]": (_IDENTIFIER, "a Lightning Address or its username"),
    "q[boostagram]": (
        {"type": "string", "enum": ["true", "false"]},
        "true: only invoices with a boostagram (TLV or rss::payment); false: only without",
    ),
    "q[feed_guid]": (_BOOST_TEXT, "the boostagram's podcast guid (`guid`)"),
    "q[feed_id]": (_INT, "the boostagram's PodcastIndex feed id (`feedID`)"),
    "q[item_guid]": (_BOOST_TEXT, "the boostagram's episode guid (`episode_guid`)"),
    "q[action]": (_BOOST_TEXT, "the boostagram's action: boost, stream, auto, ..."),
}
LIST_QUERY = [
    *(
        {"name": name, "in": "query", "schema": _INT, "description": "unix seconds, exclusive"}
        for name in sorted(f for f in _FILTERS if "created_at" in f)
    ),
    *(
        {
            "name": name,
            "in": "query",
            "schema": _TEXT_FILTERS[name][0],
            "description": _TEXT_FILTERS[name][1],
        }
        for name in sorted(f for f in _FILTERS if "created_at" not in f)
    ),
    {
        "name": "page",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PARAM_INT},
    },
    {
        "name": "items",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ITEMS},
    },
]
ITEMS_QUERY = [
    {"name": "items", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}
]
RESUME = [
    {
        "name": "Last-Event-ID",
        "in": "header",
        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_EVENT_ID},
        "description": "resume after this event id (what EventSource sends on reconnect)",
    },
    {
        "name": "last_event_id",
        "in": "query",
        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_EVENT_ID},
        "description": "the same, for clients that cannot set headers",
    },
]
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": "a retry with the same key and body returns the first invoice "
    "(header Idempotent-Replayed: true); another body with the same key is 409",
}
RETRY_AFTER = {
    "Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "string"}}
}
RATE_LIMIT = {
    "X-RateLimit-Limit": {
        "description": "requests this token may make in the window",
        "schema": {"type": "string"},
    },
    "X-RateLimit-Remaining": {
        "description": "requests left in the window",
        "schema": {"type": "string"},
    },
    "X-RateLimit-Reset": {
        "description": "unix seconds when the window ends",
        "schema": {"type": "string"},
    },
}
REQUEST_ID = {
    "X-Request-Id": {
        "description": "the request's id (the client's own when plain and short), as logged",
        "schema": {"type": "string"},
    }
}

# One Server-Sent Event, as the OpenAPI media type registry models it (an
# object of its fields; comments, such as heartbeats, are not events). Before
# OpenAPI 3.2's `itemSchema`, tools such as schemathesis read `schema` of
# `text/event-stream` as the schema of each event, so that is what it holds.
_EVENT_FIELDS = {
    "id": {"type": "string", "description": "what a reconnect sends back as Last-Event-ID"},
    "retry": {"type": "integer", "description": "milliseconds to wait before reconnecting"},
}
EVENT_SCHEMAS: dict[str, dict[str, Any]] = {
    "InvoiceEvent": {
        "type": "object",
        "description": "One event of an invoice stream. `data` is JSON: `type` (the event "
        "name), `timestamp` (ISO 8601 UTC) and `data`, the invoice as GET /invoices/{hash} "
        "answers it.",
        "required": ["id", "event", "data"],
        "properties": {
            **_EVENT_FIELDS,
            "event": {"type": "string", "enum": list(EVENT_TYPES)},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {
                    "type": "object",
                    "required": ["type", "timestamp", "data"],
                    "properties": {
                        "type": {"type": "string", "enum": list(EVENT_TYPES)},
                        "timestamp": {"type": "string"},
                        "data": {"$ref": REF.format(model="Invoice")},
                    },
                },
            },
        },
    },
    "StateEvent": {
        "type": "object",
        "description": "One event of a checkout page's stream: the invoice's state only.",
        "required": ["id", "event", "data"],
        "properties": {
            **_EVENT_FIELDS,
            "event": {"type": "string", "enum": ["state"]},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {
                    "type": "object",
                    "required": ["state"],
                    "properties": {
                        "state": {
                            "type": "string",
                            "enum": ["CREATED", "ACCEPTED", "SETTLED", "EXPIRED", "CANCELED"],
                        }
                    },
                },
            },
        },
    },
}

ERROR_TEXT = {
    400: "invalid input; `errors` names each field",
    401: "no token, an invalid or revoked one, or (a signing token) a missing, stale, "
    "replayed or wrong request signature; `errors` names the header",
    403: "the token lacks a scope",
    404: "not found",
    409: "conflict",
    429: "too many requests (per token; per client address on public routes); see Retry-After",
    501: "the node cannot do this (e.g. hold invoices on standalone Core Lightning), or "
    "lnplugin's credentials for it may not (an LND macaroon without the method)",
    413: "body over 64 KiB",
    502: "the node refused",
    503: "unavailable for now (node unreachable, store busy, stream limit); see Retry-After",
}


@dataclass(frozen=True)
class Op:
    summary: str
    ok: int = 200
    response: str | None = None  # a component name, "[Name]" for an array of it
    body: type[BaseModel] | None = None
    params: list[dict[str, Any]] = field(default_factory=list)
    errors: tuple[int, ...] = ()
    content_type: str = "application/json"
    # further media types the success answer may carry (same schema), e.g. an export's formats
    more_content_types: tuple[str, ...] = ()
    public: bool = False
    # public, but a token (any scope) is read if sent and shows more
    optional_token: bool = False
    extra_ok: dict[int, str] = field(default_factory=dict)
    ok_headers: dict[str, Any] = field(default_factory=dict)
    # the component errors answer with: Alby's shape, or LUD-06's on public LNURL routes;
    # None with error_content_type text/html: the checkout pages' error page
    error_model: str | None = "Error"
    error_content_type: str = "application/json"
    body_content_type: str = "application/json"


def _page(
    summary: str, content_type: str, *, errors: tuple[int, ...] = (404, 429, 503), **more: Any
) -> Op:
    """An operation of the checkout pages: public (no token), answering in
    `content_type`, and its errors with the HTML error page, never the JSON
    error shape, since a browser shows what it gets (see `error_model`)."""
    return Op(
        summary,
        public=True,
        content_type=content_type,
        errors=errors,
        error_model=None,
        error_content_type="text/html",
        **more,
    )


def _lnurl(
    summary: str, response: str, *, errors: tuple[int, ...] = (404, 429, 503), **more: Any
) -> Op:
    """An operation of the LNURL-pay routes: public (no token), and its errors
    in LUD-06's shape (`{"status": "ERROR", "reason": ...}`), which wallets
    read, not the Alby one."""
    return Op(summary, 200, response, public=True, errors=errors, error_model="LnurlError", **more)


_READ = (400, 401, 403, 404)
OPERATIONS: dict[str, Op] = {
    "invoices.create_invoice": Op(
        "Create an incoming invoice on the node",
        201,
        "Invoice",
        schemas.InvoiceCreate,
        [IDEMPOTENCY_KEY],
        # 501: a hold invoice (`payment_hash`) on a node that cannot hold, or
        # lnplugin's LND macaroon may not make invoices (`invoicing.Unsupported`,
        # `NotPermitted`), as settle and cancel answer.
        (400, 401, 403, 409, 413, 501, 502, 503),
        ok_headers={
            "Idempotent-Replayed": {
                "description": "`true` when this answers a repeated Idempotency-Key",
                "schema": {"type": "string"},
            }
        },
    ),
    "invoices.get_invoice": Op("One invoice by payment hash", 200, "Invoice", errors=_READ),
    "invoices.list_incoming": Op(
        "Incoming invoices, newest first", 200, "[Invoice]", params=LIST_QUERY, errors=_READ
    ),
    "invoices.list_outgoing": Op(
        "Outgoing payments, newest first", 200, "[Invoice]", params=LIST_QUERY, errors=_READ
    ),
    "invoices.list_all": Op(
        "Incoming and outgoing, newest first", 200, "[Invoice]", params=LIST_QUERY, errors=_READ
    ),
    "invoices.settle_invoice": Op(
        "Settle an ACCEPTED hold invoice with its preimage",
        200,
        "Invoice",
        schemas.HoldSettle,
        errors=(400, 401, 403, 404, 409, 413, 501, 502, 503),
    ),
    "invoices.cancel_invoice": Op(
        "Cancel an open or held invoice",
        200,
        "Invoice",
        errors=(400, 401, 403, 404, 409, 501, 502, 503),
    ),
    "invoices.export_invoices": Op(
        "Every invoice as CSV or JSON Lines, streamed",
        200,
        params=[
            {
                "name": "format",
                "in": "query",
                "schema": {"type": "string", "enum": ["csv", "jsonl"], "default": "csv"},
            },
            {
                "name": "type",
                "in": "query",
                "schema": {"type": "string", "enum": ["incoming", "outgoing"]},
                "description": "one direction only (default: both)",
            },
            {
                "name": "since",
                "in": "query",
                "schema": {"type": "string"},
                "description": "unix seconds, or an ISO 8601 date or date and time (UTC)",
            },
            {
                "name": "spreadsheet_safe",
                "in": "query",
                "schema": {"type": "string", "enum": ["true", "false"], "default": "false"},
                "description": "CSV only: put a ' before cells starting with = + - @ "
                "(tab, CR), so a spreadsheet shows them instead of running a formula",
            },
        ],
        errors=(400, 401, 403),
        content_type="text/csv",
        more_content_types=("application/x-ndjson",),
    ),
    "lightning_addresses.create": Op(
        "Create a Lightning Address",
        201,
        "LightningAddress",
        schemas.AddressCreate,
        errors=(400, 401, 403, 409, 413),
    ),
    "lightning_addresses.list_addresses": Op(
        "Lightning Addresses", 200, "[LightningAddress]", errors=(401, 403)
    ),
    "lightning_addresses.get": Op(
        "One Lightning Address", 200, "LightningAddress", errors=(401, 403, 404)
    ),
    "lightning_addresses.patch": Op(
        "Change a Lightning Address (only the fields sent)",
        200,
        "LightningAddress",
        schemas.AddressUpdate,
        errors=(400, 401, 403, 404, 409, 413),
    ),
    "lightning_addresses.delete": Op(
        "Remove a Lightning Address (its invoices keep its name)",
        200,
        "LightningAddress",
        errors=(401, 403, 404),
    ),
    "nwc.create": Op(
        "Create a Nostr Wallet Connect connection; its URI is shown once",
        201,
        "NwcConnection",
        schemas.NwcConnectionCreate,
        errors=(400, 401, 403, 409, 413),
    ),
    "nwc.list_connections": Op(
        "Nostr Wallet Connect connections (app public keys, never secrets)",
        200,
        "[NwcConnection]",
        errors=(401, 403),
    ),
    "nwc.revoke": Op(
        "Revoke one Nostr Wallet Connect connection",
        200,
        "NwcConnection",
        errors=(400, 401, 403, 404),
    ),
    "lnurlp.discover": _lnurl(
        "LUD-06/16 payRequest of a Lightning Address (no token)", "LnurlPayRequest"
    ),
    "lnurlp_callback.callback": _lnurl(
        "LUD-06 callback: mint an invoice for an amount (no token)",
        "LnurlInvoice",
        params=[
            {
                "name": "amount",
                "in": "query",
                "required": True,
                "schema": {"type": "integer", "minimum": 1},
                "description": "msat",
            },
            {"name": "comment", "in": "query", "schema": {"type": "string"}},
            {
                "name": "payerdata",
                "in": "query",
                "schema": {"type": "string"},
                "description": "LUD-18 payer data, JSON text; `auth` is {key, k1, sig}: "
                "a DER signature of the k1 from discovery by the compressed key (LUD-04)",
            },
            {
                "name": "nostr",
                "in": "query",
                "schema": {"type": "string"},
                "description": "NIP-57 zap request (a signed kind 9734 event, JSON text), with "
                "--zaps; the invoice's description hash is then SHA-256 of it as sent",
            },
        ],
        errors=(400, 404, 429, 502, 503),
    ),
    "lnurlp.verify": _lnurl(
        "LUD-21 verify of an invoice minted through an address (no token)", "LnurlVerify"
    ),
    "lnurlp.keysend": _lnurl(
        "Podcasting 2.0 keysend address: node pubkey and custom record (no token)", "LnurlKeysend"
    ),
    "checkout.page": _page("The checkout page of an invoice (HTML; no token)", "text/html"),
    "checkout.qr_svg": _page(
        "The invoice's QR code, SVG (its `qr_code_svg`; no token)", "image/svg+xml"
    ),
    "checkout.qr_png": _page(
        "The invoice's QR code, PNG (its `qr_code_png`; no token)", "image/png"
    ),
    "checkout.state_events": _page(
        "The invoice's state only (Server-Sent Events `state`); ends at a final state",
        "text/event-stream",
        response="StateEvent",
        extra_ok={204: "resumed, and the invoice is already final: stop reconnecting"},
    ),
    "checkout.address_page": _page(
        "The checkout page of a Lightning Address: an amount form (HTML; no token)", "text/html"
    ),
    "checkout_mint.address_mint": _page(
        "Mint through the address's LNURL callback; 303 to the invoice's checkout page",
        "text/html",
        ok=303,
        body=schemas.AddressPayForm,
        errors=(400, 404, 413, 429, 502, 503),
        body_content_type="application/x-www-form-urlencoded",
    ),
    "checkout.static": _page(
        "A file of the checkout pages (style sheet, script)",
        "text/css",
        errors=(404, 429),
        more_content_types=("text/javascript",),
    ),
    "decode.decode_get": Op("Decode a BOLT11 invoice", 200, "DecodedInvoice", errors=_READ),
    "decode.decode_post": Op(
        "Decode a BOLT11 invoice",
        200,
        "DecodedInvoice",
        schemas.DecodeBody,
        errors=(400, 401, 403, 413),
    ),
    "info.info": Op("Service, node and follower status", 200, "Info", errors=(401, 403)),
    "info.health": Op(
        "Health probe (no token; with a token or the status key, the follower's detail too)",
        200,
        "Health",
        params=[
            {
                "name": STATUS_KEY_HEADER,
                "in": "header",
                "schema": {"type": "string"},
                "description": "the status key `lnplugin status` reads from the data dir's "
                "lock file: the follower's detail (and `nwc`) without a token",
            }
        ],
        public=True,
        optional_token=True,
    ),
    "webhooks.create": Op(
        "Create a webhook endpoint (its secret is shown only here)",
        201,
        "Endpoint",
        EndpointCreate,
        errors=(400, 401, 403, 413),
    ),
    "webhooks.list_endpoints": Op("Webhook endpoints", 200, "[Endpoint]", errors=(401, 403)),
    "webhooks.get": Op("One webhook endpoint", 200, "Endpoint", errors=_READ),
    "webhooks.delete": Op("Delete a webhook endpoint", 200, "Endpoint", errors=_READ),
    "webhooks.deliveries": Op(
        "An endpoint's deliveries, newest first",
        200,
        "[Delivery]",
        params=ITEMS_QUERY,
        errors=_READ,
    ),
    "webhooks.test": Op("Send a test event to an endpoint", 202, "Delivery", errors=_READ),
    "webhooks.redeliver": Op("Send an event to an endpoint again", 202, "Delivery", errors=_READ),
    "webhooks.invoice_deliveries": Op(
        "Deliveries to an invoice's own webhook URL",
        200,
        "[Delivery]",
        params=ITEMS_QUERY,
        errors=_READ,
    ),
    "webhooks.invoice_redeliver": Op(
        "Send an invoice's own webhook delivery again", 202, "Delivery", errors=_READ
    ),
    "events.invoice_events": Op(
        "One invoice's events (Server-Sent Events); ends after a final state",
        200,
        "InvoiceEvent",
        params=RESUME,
        errors=(*_READ, 503),
        content_type="text/event-stream",
        extra_ok={204: "resumed, and the invoice is already final: stop reconnecting"},
    ),
    "events.all_events": Op(
        "Every invoice event the token may read (Server-Sent Events)",
        200,
        "InvoiceEvent",
        params=RESUME,
        errors=(400, 401, 403, 503),
        content_type="text/event-stream",
    ),
    "tickets.create_ticket": Op(
        "A single-use, short-lived ticket to open one event stream from a browser",
        201,
        "Ticket",
        TicketCreate,
        errors=(400, 401, 403, 413),
    ),
    "dev.pay": Op(
        "Dev node only: pay an open invoice",
        200,
        "DevPayment",
        schemas.DevPay,
        errors=(400, 401, 403, 404, 409, 413),
    ),
    "dev.mine": Op(
        "Dev node only: mine blocks on the simulated chain (answers block_height)",
        200,
        None,
        schemas.DevMine,
        errors=(400, 401, 403, 404, 413),
    ),
    "dev.keysend": Op(
        "Dev node only: receive a keysend",
        200,
        "DevPayment",
        schemas.DevKeysend,
        errors=(400, 401, 403, 413),
    ),
    "metrics.scrape": Op(
        "Prometheus metrics (text exposition format)",
        200,
        None,
        errors=(401, 403),
        content_type="text/plain",
    ),
    "docs.openapi_json": Op("This document", 200, None, public=True),
    "docs.docs_page": Op(
        "API docs page (Swagger UI)", 200, None, public=True, content_type="text/html"
    ),
    "docs.asset": Op(
        "A file of the docs page",
        200,
        None,
        errors=(404,),
        public=True,
        content_type="text/css",
        more_content_types=("text/javascript", "image/png"),
    ),
}


class MissingOperation(Exception):
    """A route in the URL map has no entry in `OPERATIONS`."""


def openapi_path(rule: str) -> str:
    """`/invoices/<payment_hash>` -> `/invoices/{payment_hash}`."""
    return _CONVERTER.sub(r"{\1}", rule)


def _model_schemas(spec: APISpec) -> None:
    modes: tuple[tuple[tuple[type[BaseModel], ...], JsonSchemaMode], ...] = (
        (REQUEST_MODELS, "validation"),
        (RESPONSE_MODELS, "serialization"),
    )
    for models, mode in modes:
        for model in models:
            schema = model.model_json_schema(ref_template=REF, mode=mode)
            for name, sub in schema.pop("$defs", {}).items():
                if name not in spec.components.schemas:
                    spec.components.schema(name, sub)
            spec.components.schema(model.__name__, schema)
    for name, schema in EVENT_SCHEMAS.items():
        spec.components.schema(name, schema)


def _content(response: str | None, content_type: str) -> dict[str, Any]:
    if response is None:
        if content_type == "application/json":
            return {content_type: {"schema": {"type": "object"}}}
        return {content_type: {"schema": {"type": "string"}}}
    if response.startswith("["):
        schema: dict[str, Any] = {
            "type": "array",
            "items": {"$ref": REF.format(model=response[1:-1])},
        }
    else:
        schema = {"$ref": REF.format(model=response)}
    return {content_type: {"schema": schema}}


def _security(view: Any, endpoint: str, op: Op) -> tuple[list[dict[str, list[str]]], list[str]]:
    if op.public:
        # `{}`: no token at all will do; the others say a token may be sent.
        return ([{}, {"bearer": []}, {"apiKey": []}] if op.optional_token else []), []
    scopes = list(getattr(view, "required_scopes", ()))
    any_of = list(getattr(view, "any_scopes", ()))
    # OpenAPI reads the list as alternatives: any one requirement will do.
    options: list[dict[str, list[str]]] = (
        [{scheme: [scope]} for scope in any_of for scheme in ("bearer", "apiKey")]
        if any_of
        else [{"bearer": scopes}, {"apiKey": scopes}]
    )
    if endpoint in TICKET_ENDPOINTS:
        options.append({"streamTicket": []})
    return options, scopes


def _operation(app: Flask, endpoint: str, rule: Any, op: Op) -> dict[str, Any]:
    view = app.view_functions[endpoint]
    security, scopes = _security(view, endpoint, op)
    path_names = _CONVERTER.findall(rule.rule)
    params = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": PATH_PARAMS.get(name, {"type": "string"}),
        }
        for name in path_names
    ] + list(op.params)
    # Every answer to a request with a token counts against, and reports, its
    # limit (429); and any of them can meet a store another process holds past
    # --busy-timeout (503): a write, or a signing token's nonce, which every
    # request of such a token writes.
    limited = RATE_LIMIT if not op.public else {}
    errors = (
        op.errors
        if op.public
        else (*op.errors, *(status for status in (429, 503) if status not in op.errors))
    )
    responses: dict[str, Any] = {
        str(op.ok): {
            "description": "success",
            "headers": {**REQUEST_ID, **limited, **op.ok_headers},
            "content": {
                kind: body
                for content_type in (op.content_type, *op.more_content_types)
                for kind, body in _content(op.response, content_type).items()
            },
        }
    }
    for status, text in op.extra_ok.items():
        responses[str(status)] = {"description": text, "headers": REQUEST_ID}
    for status in errors:
        responses[str(status)] = {
            "description": ERROR_TEXT[status],
            "headers": {
                **REQUEST_ID,
                **(limited if status != 401 else {}),
                **(RETRY_AFTER if status in (429, 503) else {}),
            },
            "content": _content(op.error_model, op.error_content_type),
        }
    # A request the HTTP parser cannot read (a header with control bytes, a
    # malformed request line) is refused by uvicorn before lnplugin sees it,
    # with its own plain-text 400 (docs/streaming.md); say so rather than
    # promise JSON the server cannot give there.
    responses.setdefault(
        "400",
        {
            "description": ERROR_TEXT[400],
            "headers": REQUEST_ID,
            "content": _content(op.error_model, "application/json"),
        },
    )
    responses["400"]["content"]["text/plain"] = {
        "schema": {"type": "string"},
        "example": "Invalid HTTP request received.",
    }
    responses["default"] = {
        "description": "any other error, same shape (e.g. 405, 500)",
        "content": _content(op.error_model, op.error_content_type),
    }
    doc = (view.__doc__ or "").strip()
    operation: dict[str, Any] = {
        "operationId": endpoint.replace(".", "_"),
        "summary": op.summary,
        "tags": [endpoint.split(".")[0]],
        "parameters": params,
        "responses": responses,
        "security": security,
    }
    if doc:
        operation["description"] = doc
    if scopes:
        operation["x-scopes"] = scopes
    if any_of := list(getattr(view, "any_scopes", ())):
        operation["x-scopes-any-of"] = any_of
    if op.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {
                op.body_content_type: {"schema": {"$ref": REF.format(model=op.body.__name__)}}
            },
        }
    return operation


def build(app: Flask, server_url: str | None = None) -> dict[str, Any]:
    """The document for `app`; `MissingOperation` when a route is not described."""
    spec = APISpec(
        title="lnplugin",
        version=__version__,
        openapi_version="3.1.0",
        info={
            "description": "Alby-Wallet-API-compatible invoices on your own Lightning node. "
            "Amounts are integer sats (`amount`) or msat (`*_msat`). Scopes: a token needs "
            "every scope listed on an operation (`x-scopes`), or one of them where they are "
            "alternatives (`x-scopes-any-of`); `admin` holds them all. Each token has a "
            "request limit (X-RateLimit-* headers on its answers, 429 with Retry-After beyond "
            "it); 503 answers carry Retry-After. A token made with --require-signature signs "
            "each request: X-Lnplugin-Timestamp, X-Lnplugin-Nonce and X-Lnplugin-Signature "
            "(hex HMAC-SHA256 of METHOD, path, timestamp, nonce and the body's hex SHA-256, "
            "joined by newlines; see docs/signed-requests.md).",
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        servers=[{"url": server_url}] if server_url else [],
    )
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.components.security_scheme(
        "apiKey", {"type": "apiKey", "in": "header", "name": "X-Api-Key"}
    )
    spec.components.security_scheme(
        "streamTicket",
        {
            "type": "apiKey",
            "in": "query",
            "name": "ticket",
            "description": "from POST /events/tickets: single use, 60 s, one stream path",
        },
    )
    _model_schemas(spec)
    paths: dict[str, dict[str, Any]] = {}
    missing = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        op = OPERATIONS.get(rule.endpoint)
        if op is None:
            missing.append(f"{rule.endpoint} ({rule.rule})")
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(openapi_path(rule.rule), {})[method.lower()] = _operation(
                app, rule.endpoint, rule, op
            )
    if missing:
        raise MissingOperation("routes without an OpenAPI entry: " + ", ".join(missing))
    for path in sorted(paths):
        spec.path(path=path, operations=paths[path])
    return spec.to_dict()
