"""Access to the running `Service` from inside a request: the service, the
request body (as JSON, or validated as a schema), and the invoice a URL's
payment hash names."""

from __future__ import annotations

from typing import Any, TypeVar

from flask import current_app, request
from pydantic import ValidationError

from lnplugin.api.auth import current_token, has_scope
from lnplugin.api.errors import APIError, validation_error
from lnplugin.api.jsonprovider import NotJSONNumber
from lnplugin.api.schemas import HEX64, Body
from lnplugin.service import Service
from lnplugin.store import invoices
from lnplugin.store.models import StoredInvoice

B = TypeVar("B", bound=Body)


def service() -> Service:
    return current_app.extensions["lnplugin"]


def json_body() -> dict[str, Any]:
    """The request body as a JSON object, or a 400 that says why not.

    Every route that takes a body reads it here, through the app's JSON
    provider (as `request.get_json` would), so all refuse the same input.
    """
    raw = request.get_data(cache=True)
    if not raw:
        return {}
    try:
        data = current_app.json.loads(raw)
    except RecursionError:
        raise APIError(400, "Request body must be JSON", {"body": "is nested too deeply"}) from None
    except NotJSONNumber as exc:
        raise APIError(400, "Request body must be JSON", exc.errors) from None
    except ValueError:
        raise APIError(400, "Request body must be JSON", {"body": "is not valid JSON"}) from None
    if not isinstance(data, dict):
        raise APIError(400, "Request body must be a JSON object", {"body": "must be an object"})
    return data


def body_as(schema: type[B], data: dict[str, Any] | None = None) -> B:
    """The request body (`data`, when the caller has read it already) as
    `schema`, or a 400 naming each field: pydantic's reasons first, then the
    schema's `cross_field_errors`."""
    try:
        body = schema.model_validate(json_body() if data is None else data)
    except ValidationError as exc:
        raise validation_error(exc) from None
    if errors := body.cross_field_errors():
        raise APIError(400, "Invalid request", errors)
    return body


def invoice_or_404(payment_hash: str) -> StoredInvoice:
    """The invoice with this payment hash (in either case): 400 for a
    malformed hash, 404 for an unknown one."""
    if not HEX64.fullmatch(payment_hash):
        raise APIError(400, "Invalid request", {"payment_hash": "must be 64 hex characters"})
    found = invoices.by_hash(service().store.conn, payment_hash.lower())
    if found is None:
        raise APIError(404, f"No invoice with payment hash {payment_hash}")
    return found


def readable_invoice(payment_hash: str) -> StoredInvoice:
    """`invoice_or_404`, and 403 for an outgoing payment when the token
    lacks `transactions:read`."""
    found = invoice_or_404(payment_hash)
    if found.type == "outgoing" and not has_scope(current_token(), "transactions:read"):
        raise APIError(403, "Token lacks scope: transactions:read")
    return found
