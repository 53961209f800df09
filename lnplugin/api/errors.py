"""One JSON error shape for every failure: Alby's `{code, error, message}`.

Validation failures add `errors: {field: reason}`, so a client can show each
reason beside the field that caused it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, jsonify, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from lnplugin.store.db import is_lock_contention

log = logging.getLogger(__name__)

# Seconds a client is told to wait when the node is unreachable (`Retry-After`
# on that 503, as on every 503): the follower's reconnects start within a second.
NODE_DOWN_RETRY_AFTER = "5"


class APIError(Exception):
    def __init__(
        self,
        code: int,
        message: str,
        errors: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.errors = errors
        self.headers = headers


def node_down(message: str) -> APIError:
    """The 503 for an unreachable node, with its `Retry-After`."""
    return APIError(503, message, headers={"Retry-After": NODE_DOWN_RETRY_AFTER})


def error_body(code: int, message: str, errors: dict[str, str] | None = None) -> dict[str, Any]:
    """The Alby error object; also written by the server itself (`lnplugin.run.asgi`)."""
    body: dict[str, Any] = {"code": code, "error": True, "message": message}
    if errors:
        body["errors"] = errors
    return body


def error_response(code: int, message: str, errors: dict[str, str] | None = None) -> Any:
    response = jsonify(error_body(code, message, errors))
    response.status_code = code
    return response


def field_errors(exc: ValidationError) -> dict[str, str]:
    """Pydantic errors as {field: reason}, first reason per field."""
    out: dict[str, str] = {}
    for err in exc.errors():
        loc = [str(part) for part in err["loc"]]
        name = ".".join(loc) if loc else "body"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            message = "is required"
        out.setdefault(name, message)
    return out


def validation_error(exc: ValidationError) -> APIError:
    return APIError(400, "Invalid request", field_errors(exc))


def as_api_error(exc: Exception) -> APIError:
    """What an exception no route turned into an `APIError` is answered as.

    In one place so the routes that answer in another shape (LNURL's, the
    checkout pages') give the same status and message in theirs."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, ValidationError):
        return validation_error(exc)
    # A write that waited past --busy-timeout for the write lock, held by
    # another process (SQLite's SQLITE_BUSY) or by another thread of this one
    # (the store's own writer lock): transient, so the client is told to
    # retry rather than shown an internal error.
    if is_lock_contention(exc):
        log.warning("store busy past the busy timeout: %s", exc)
        return APIError(503, "The store is busy, try again shortly", headers={"Retry-After": "1"})
    log.error("unhandled error", exc_info=exc)
    return APIError(500, "Internal error")


def passed_on_headers(exc: HTTPException) -> dict[str, str]:
    """The headers of werkzeug's or the limiter's error worth keeping when it
    is answered in another shape: when to retry, what is allowed, the limits."""
    return {
        k: v
        for k, v in exc.get_response().headers.items()
        if k in ("Retry-After", "Allow") or k.startswith("X-RateLimit")
    }


_SHAPES = "lnplugin_error_shapes"


def shape_for_prefix(app: Flask, prefix: str, handler: Callable[[HTTPException], Any]) -> None:
    """Answer errors under `prefix` that no route was matched for (404, and
    405 for a method its route does not take) with `handler`.

    Why: LNURL's and the checkout pages' blueprints answer their errors in
    shapes of their own, but Flask knows no blueprint for a request that
    matched no route, so their handlers never see those; a wallet or a
    browser there would get the API's JSON instead."""
    app.extensions.setdefault(_SHAPES, []).append((prefix, handler))


def register(app: Flask) -> None:
    @app.errorhandler(APIError)
    def _api_error(exc: APIError) -> Any:
        response = error_response(exc.code, exc.message, exc.errors)
        response.headers.update(exc.headers or {})
        return response

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Any:
        if request.url_rule is None:  # routing found nothing (404) or not this method (405)
            for prefix, handler in app.extensions.get(_SHAPES, ()):
                if request.path.startswith(prefix):
                    return handler(exc)
        code = exc.code or 500
        messages = {
            404: "Not found",
            405: "Method not allowed",
            413: "Request body too large (limit 64 KiB)",
        }
        response = error_response(code, messages.get(code, exc.description or exc.name))
        if code == 405 and exc.get_response().headers.get("Allow"):
            response.headers["Allow"] = exc.get_response().headers["Allow"]
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:  # pydantic's, a busy store, the rest
        return _api_error(as_api_error(exc))
