"""BOLT11 decoding in Alby's shape. Bad input is a 400, never a 5xx."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint
from werkzeug.routing import PathConverter

from lnplugin import bolt11
from lnplugin.alby import decoded_json
from lnplugin.api import context
from lnplugin.api.auth import require
from lnplugin.api.errors import APIError
from lnplugin.api.schemas import DecodeBody

bp = Blueprint("decode", __name__)


class InvoiceText(PathConverter):
    """The invoice in `GET /decode/bolt11/<invoice>`: the rest of the path, as
    werkzeug's `path` reads it, but across line breaks too. An invoice copied
    from a file or a text box often ends in a newline that percent-encoding
    keeps (`%0A`); `path` stops at it and the route would answer 404, not
    decode the invoice as `POST /decode` does, whitespace stripped."""

    regex = r"[^/](?s:.*?)"


def decode_response(text: str) -> dict[str, Any]:
    if len(text) > bolt11.MAX_INVOICE_LENGTH:
        raise APIError(
            400,
            "Invalid invoice",
            {"invoice": f"longer than {bolt11.MAX_INVOICE_LENGTH} characters"},
        )
    try:
        invoice = bolt11.decode(text.strip())
    except bolt11.Bolt11Error as exc:
        raise APIError(400, f"Invalid invoice: {exc.reason}", {"invoice": exc.reason}) from None
    alias = context.service().alias_of(invoice.payee)
    return decoded_json(invoice, alias, int(time.time()))


@bp.get("/decode/bolt11/<invoice_text:invoice>")
@require()
def decode_get(invoice: str) -> Any:
    return decode_response(invoice)


@bp.post("/decode")
@require()
def decode_post() -> Any:
    return decode_response(context.body_as(DecodeBody).invoice)
