"""Access to the running `Service` from inside a request: the service, the
request body (as JSON, or validated as a schema), integer query parameters
and headers, and the invoice a URL's payment hash names.

Every route reads its input through these functions, so every route refuses
the same bad input with the same 400: a body whose text is not Unicode
(`unicode_errors`), an integer written with anything but ASCII digits
(`int_param`).
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

from flask import current_app, request
from pydantic import ValidationError

from lnplugin.api.auth import current_token, has_scope
from lnplugin.api.errors import APIError, validation_error
from lnplugin.api.jsonprovider import RefusedJSON
from lnplugin.api.schemas import HEX64, Body
from lnplugin.service import Service
from lnplugin.store import invoices
from lnplugin.store.models import StoredInvoice

B = TypeVar("B", bound=Body)
MAX_REPORTED = 10  # fields named in one error
_ASCII_INT = re.compile(r"-?[0-9]+")
# Unbounded integer parameters stop here, so SQLite (64-bit) never overflows, even as page*items.
MAX_PARAM_INT = 10**15


def public_base() -> str | None:
    """`--public-url`, for the invoice object's QR and checkout links (None: off)."""
    return service().settings.public_url


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
    except RefusedJSON as exc:
        raise APIError(400, "Request body must be JSON", exc.errors) from None
    except ValueError:
        raise APIError(400, "Request body must be JSON", {"body": "is not valid JSON"}) from None
    if not isinstance(data, dict):
        raise APIError(400, "Request body must be a JSON object", {"body": "must be an object"})
    if errors := unicode_errors(data):
        raise APIError(400, "Invalid request", errors)
    return data


def _surrogate(text: str) -> str | None:
    """The first lone surrogate in `text`, as U+XXXX; None when there is none."""
    if text.isascii():
        return None
    found = next((c for c in text if "\ud800" <= c <= "\udfff"), None)
    return None if found is None else f"U+{ord(found):04X}"


def unicode_errors(obj: Any) -> dict[str, str]:
    """Path -> reason for each string (key or value) in a parsed body that is
    not Unicode text: JSON lets an escape such as `\\ud800` stand alone, but
    a lone surrogate cannot be encoded as UTF-8, so any field holding one
    would fail wherever it is encoded (a BOLT11 description, a keysend
    record, a webhook URL). Refused here, once for every field of every
    route, before anything reads the body. Paths are named as validation
    errors name fields (keys and list indexes joined by dots); a key that is
    not Unicode is shown with the surrogate escaped."""
    errors: dict[str, str] = {}
    stack: list[tuple[tuple[str, ...], Any]] = [((), obj)]
    while stack and len(errors) < MAX_REPORTED:
        path, value = stack.pop()
        if isinstance(value, str):
            if bad := _surrogate(value):
                errors[".".join(path) or "body"] = (
                    f"is not valid Unicode text (lone surrogate {bad})"
                )
        elif isinstance(value, dict):
            for key, item in reversed(value.items()):
                if bad := _surrogate(key):
                    shown = key.encode("utf-8", "backslashreplace").decode()
                    errors[".".join((*path, shown))] = (
                        f"key is not valid Unicode text (lone surrogate {bad})"
                    )
                else:
                    stack.append(((*path, key), item))
        elif isinstance(value, list):
            stack.extend(((*path, str(i)), v) for i, v in reversed(list(enumerate(value))))
    return errors


def int_param(
    name: str, raw: str | None, default: int | None, low: int, high: int | None = None
) -> int | None:
    """An integer query parameter or header (`raw`; None or empty: `default`)
    from `low` to `high` (no `high`: at most `MAX_PARAM_INT`), or a 400 naming it.

    ASCII digits only: `int()` and `str.isdigit()` also take other scripts'
    digits (`int` reads Arabic-Indic three as 3; `isdigit` passes a
    superscript two that `int` then refuses), `int` takes underscores and
    spaces, and past 4300 digits it refuses every string. None of that is
    an integer a client meant to send.
    """
    if raw is None or raw == "":
        return default
    if not _ASCII_INT.fullmatch(raw):
        raise APIError(400, "Invalid request", {name: "must be an integer"})
    top = MAX_PARAM_INT if high is None else high
    # Count digits first, so a long string is refused without parsing it.
    if len(raw.lstrip("-").lstrip("0")) <= len(str(top)):
        value = int(raw)
    else:
        value = low - 1 if raw.startswith("-") else top + 1
    if value < low or (high is not None and value > high):
        reason = f"must be at least {low}" if high is None else f"must be from {low} to {high}"
        raise APIError(400, "Invalid request", {name: reason})
    if value > top:
        raise APIError(400, "Invalid request", {name: f"must be at most {top}"})
    return value


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
