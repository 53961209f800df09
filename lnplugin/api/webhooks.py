"""Webhook endpoints, Alby-compatible (`admin` scope).

The endpoint secret is returned once, by POST; later reads never show it.
Deliveries are listed, tested and redelivered here, and an invoice's own
`webhook` deliveries are listed and redelivered under the invoice (with
`invoices:*` scopes, see `invoice_redeliver`); sending is the worker's job
(`lnplugin.webhooks`), which wakes on the commit these routes make.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from flask import Blueprint, request
from pydantic import ConfigDict, Field, StrictStr, field_validator

from lnplugin import ssrf
from lnplugin.alby import iso
from lnplugin.api import context
from lnplugin.api.auth import require
from lnplugin.api.errors import APIError
from lnplugin.api.schemas import Body
from lnplugin.store import events
from lnplugin.store import webhooks as db

# No url_prefix: `GET /invoices/<payment_hash>/deliveries` lives here too.
bp = Blueprint("webhooks", __name__)
EP = "/webhook_endpoints"

MAX_URL = 2048
_CHOSEN_SECRET = ("secret", "endpoint_secret")
SECRET_NOT_CHOSEN = (
    "cannot be chosen: lnplugin makes each endpoint's secret and shows it once, in this answer"
)


class EndpointCreate(Body):
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {"url": "https://example.com/hook", "filter_types": ["invoice.incoming.settled"]}
            ]
        },
    )

    url: StrictStr = Field(max_length=MAX_URL)
    description: StrictStr | None = Field(default=None, max_length=1000)
    filter_types: list[StrictStr] = Field(min_length=1)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return ssrf.check_url(value)

    @field_validator("filter_types")
    @classmethod
    def _types(cls, value: list[str]) -> list[str]:
        for index, item in enumerate(value):
            if item not in events.EVENT_TYPES:
                raise ValueError(
                    f"item {index}: unknown event type {item!r}; known: "
                    + ", ".join(events.EVENT_TYPES)
                )
        return list(dict.fromkeys(value))


def endpoint_json(row: Any, with_secret: bool = False) -> dict[str, Any]:
    out = {
        "id": row["id"],
        "url": row["url"],
        "description": row["description"],
        "filter_types": db.filter_types(row),
        "created_at": iso(row["created_at"]),
    }
    if with_secret:
        out["endpoint_secret"] = row["secret"]
    return out


def guard_target(url: str, field: str) -> None:
    """A 400 naming `field` for an IP-literal target the worker would refuse
    anyway, so the mistake shows when the URL is given. Shared by endpoints
    and the invoice `webhook` field; names are checked at delivery time."""
    reason = ssrf.refusal(url, context.service().settings.webhook_allow)
    if reason is not None:
        raise APIError(400, "Invalid request", {field: reason})


def _endpoint_or_404(endpoint_id: str) -> Any:
    row = db.endpoint(context.service().store.conn, endpoint_id)
    if row is None:
        raise APIError(404, f"No webhook endpoint {endpoint_id}")
    return row


@bp.post(EP)
@require("admin")
def create() -> Any:
    data = context.json_body()
    # Other unknown keys are ignored, as Alby's API does; a secret of the
    # caller's own is not: ignored, it would fail every signature they check.
    chosen = [key for key in _CHOSEN_SECRET if key in data]
    if chosen:
        raise APIError(400, "Invalid request", {key: SECRET_NOT_CHOSEN for key in chosen})
    body = context.body_as(EndpointCreate, data)
    guard_target(body.url, "url")
    with context.service().store.transaction() as tx:
        row = db.create_endpoint(tx, body.url, body.description, body.filter_types)
    return endpoint_json(row, with_secret=True), 201


@bp.get(EP)
@require("admin")
def list_endpoints() -> Any:
    return [endpoint_json(row) for row in db.endpoints(context.service().store.conn)]


@bp.get(f"{EP}/<endpoint_id>")
@require("admin")
def get(endpoint_id: str) -> Any:
    return endpoint_json(_endpoint_or_404(endpoint_id))


@bp.delete(f"{EP}/<endpoint_id>")
@require("admin")
def delete(endpoint_id: str) -> Any:
    row = _endpoint_or_404(endpoint_id)
    with context.service().store.transaction() as tx:
        db.delete_endpoint(tx, endpoint_id)
    return {**endpoint_json(row), "deleted": True}


@bp.get(f"{EP}/<endpoint_id>/deliveries")
@require("admin")
def deliveries(endpoint_id: str) -> Any:
    _endpoint_or_404(endpoint_id)
    rows = db.deliveries(context.service().store.conn, endpoint_id, _items())
    return [db.delivery_json(row) for row in rows]


def _items() -> int:
    return context.int_param("items", request.args.get("items"), 100, 1, 1000) or 100


@bp.get("/invoices/<payment_hash>/deliveries")
@require("invoices:read")
def invoice_deliveries(payment_hash: str) -> Any:
    """Deliveries to the invoice's own `webhook` URL (not to endpoints), newest first."""
    found = context.readable_invoice(payment_hash)
    rows = db.invoice_deliveries(context.service().store.conn, found.id, _items())
    return [db.delivery_json(row) for row in rows]


@bp.post("/invoices/<payment_hash>/deliveries/<event_id>/redeliver")
@require("invoices:read", "invoices:create")
def invoice_redeliver(payment_hash: str, event_id: str) -> Any:
    """Send one of the invoice's own `webhook` deliveries (again) now, with a
    fresh retry budget; a dead-lettered one is scheduled again, as for endpoints.

    Scope `invoices:read` and `invoices:create`. Read, because this is the
    list route's sibling: it answers with the same delivery object and tells
    whether the invoice exists. Create, because it makes lnplugin POST, and a
    read-only token must not cause side effects. Not `admin`, which the
    endpoint redeliver route needs because endpoints are operator
    configuration: this URL was chosen by whoever created the invoice
    (`invoices:create`), who can already make lnplugin POST to it, so an app
    that recovers from its own receiver's outage needs no all-powerful token.
    (`admin` still passes, as it holds every scope.)
    """
    found = context.readable_invoice(payment_hash)
    with context.service().store.transaction() as tx:
        row = db.redeliver_invoice(tx, found.id, event_id)
    if row is None:
        raise APIError(
            404, f"No webhook delivery of event {event_id} for invoice {found.payment_hash}"
        )
    return db.delivery_json(row), 202


@bp.post(f"{EP}/<endpoint_id>/test")
@require("admin")
def test(endpoint_id: str) -> Any:
    ep = _endpoint_or_404(endpoint_id)
    event_id = "evt_test_" + secrets.token_hex(10)
    payload = {
        "type": db.TEST_EVENT,
        "timestamp": iso(int(time.time())),
        "data": {"endpoint_id": endpoint_id, "message": "test event from lnplugin"},
    }
    with context.service().store.transaction() as tx:
        row = db.add_test_delivery(tx, ep, event_id, json.dumps(payload, separators=(",", ":")))
    return db.delivery_json(row), 202


@bp.post(f"{EP}/<endpoint_id>/deliveries/<event_id>/redeliver")
@require("admin")
def redeliver(endpoint_id: str, event_id: str) -> Any:
    ep = _endpoint_or_404(endpoint_id)
    with context.service().store.transaction() as tx:
        event = events.by_event_id(tx, event_id)
        # Sent only what the endpoint asked for, on redeliver as on fan-out.
        if event is not None and event["type"] not in db.filter_types(ep):
            raise APIError(
                409,
                f"Endpoint {endpoint_id} does not take {event['type']} events (its filter_types)",
            )
        row = db.redeliver(tx, ep, event_id)
    if row is None:
        raise APIError(404, f"No event {event_id}")
    return db.delivery_json(row), 202
