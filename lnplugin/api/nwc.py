"""Nostr Wallet Connect connections over HTTP, with an `admin` token: `/nwc/connections`.

The same as `lnplugin nwc connect/list/revoke`, for operators who manage
lnplugin from a dashboard. A connection lets an app mint invoices and read
payments, so only `admin` may make one; its URI (holding the app's secret)
is in the creating answer only.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from lnplugin.api import context
from lnplugin.api.auth import require
from lnplugin.api.errors import APIError
from lnplugin.api.schemas import NwcConnectionCreate
from lnplugin.nwc.connections import NoAddress, connect, lightning_address
from lnplugin.store import nwc as db

bp = Blueprint("nwc", __name__)
EP = "/nwc/connections"


def connection_json(row: db.Connection, uri: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": row.id,
        "label": row.label,
        "scopes": sorted(row.scopes),
        "app_pubkey": row.app_pubkey,
        "wallet_pubkey": row.service_pubkey,
        "lud16": row.lud16,
        "created_at": row.created_at,
        "revoked_at": row.revoked_at,
    }
    if uri is not None:
        body["uri"] = uri
    return body


@bp.post(EP)
@require("admin")
def create() -> Any:
    body = context.body_as(NwcConnectionCreate)
    svc = context.service()
    if not svc.settings.nwc_relay:
        raise APIError(409, "Nostr Wallet Connect is off: start lnplugin with --nwc-relay")
    try:
        lud16, _several = lightning_address(svc.store, svc.settings.public_url, body.lud16)
    except NoAddress as exc:
        raise APIError(400, "Invalid request", {"lud16": str(exc)}) from None
    connection_id, uri = connect(svc.store, body.scopes, body.label, svc.settings.nwc_relay, lud16)
    row = db.by_id(svc.store.conn, connection_id)
    assert row is not None
    return connection_json(row, uri), 201


@bp.get(EP)
@require("admin")
def list_connections() -> Any:
    return [connection_json(row) for row in db.list_all(context.service().store.conn)]


# Read as text and checked like a query parameter, so an id that cannot be
# one (`abc`, `0`, one over MAX_PARAM_INT, the bound that keeps SQLite's
# integers from overflowing) is a 400 naming `connection_id`, not the bare
# 404 of a route that did not match.
@bp.delete(f"{EP}/<connection_id>")
@require("admin")
def revoke(connection_id: str) -> Any:
    ident = context.int_param("connection_id", connection_id, None, 1, context.MAX_PARAM_INT)
    assert ident is not None  # a path segment is never empty
    svc = context.service()
    with svc.store.transaction() as tx:
        done = db.revoke(tx, ident)
        row = db.by_id(tx, ident)
    if not done or row is None:
        raise APIError(404, f"No active wallet connection {ident}")
    return connection_json(row)
