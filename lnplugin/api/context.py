"""Access to the running `Service` from inside a request."""

from __future__ import annotations

from typing import Any

from flask import current_app, request

from lnplugin.api.errors import APIError
from lnplugin.service import Service


def service() -> Service:
    return current_app.extensions["lnplugin"]


def json_body() -> dict[str, Any]:
    """The request body as a JSON object, or a 400 that says why not."""
    try:
        data = request.get_json(force=True, silent=True)
    except RecursionError:
        raise APIError(400, "Request body must be JSON", {"body": "is nested too deeply"}) from None
    if data is None:
        if not request.get_data(cache=True):
            return {}
        raise APIError(400, "Request body must be JSON", {"body": "is not valid JSON"})
    if not isinstance(data, dict):
        raise APIError(400, "Request body must be a JSON object", {"body": "must be an object"})
    return data
