"""What every request gets besides its route: a request id, an access log
line, HTTP metrics, and CORS headers for the allowed browser origins.

Request id: a client's `X-Request-Id` is kept when it is short and plain
(letters, digits, `._-`), so one id follows a request through a proxy into
our log; otherwise a fresh one is made. Either way it is echoed back.

Access log: method, route (the URL rule, so no payment hash, ticket or
query string reaches the log), status, duration and the token's id, never
the token. Info level on logger `lnplugin.access`, off with `--no-access-log`.

Caching: an answer to a request with a token (or a stream ticket) is sent
`Cache-Control: no-store` unless its route set its own. Such answers hold
what the token may see (preimages, payer data) and secrets shown once (an
endpoint's signing secret, an NWC connection's URI); without the header a
browser keeps them in its disk cache, and a shared cache that only skips
`Authorization` requests would hand an `X-Api-Key` answer to the next caller.

CORS: off unless `--cors-origin` names origins. A preflight (`OPTIONS` with
`Access-Control-Request-Method`) from an allowed origin for a route that
exists is answered 204 here, before authentication, since browsers send
preflights without credentials; the real request is then authenticated as
usual. Other origins get no CORS headers at all, so the browser refuses.
"""

from __future__ import annotations

import logging
import random
import re
import time
from typing import Any

from flask import Flask, Response, current_app, g, request

from lnplugin.config import Settings

access_log = logging.getLogger("lnplugin.access")

REQUEST_ID = "X-Request-Id"
_REQUEST_ID_VAR = "HTTP_X_REQUEST_ID"  # its WSGI environ key
_CLEAN_ID = re.compile(r"[A-Za-z0-9._\-]{1,128}")
ALLOWED_HEADERS = (
    "Authorization, Content-Type, Idempotency-Key, Last-Event-ID, X-Api-Key, X-Request-Id"
)
# What a page may read of an answer: all that lnplugin sends for clients,
# the token's limit too (X-RateLimit-*, on every answer to a token).
EXPOSED_HEADERS = (
    "X-Request-Id, Retry-After, Idempotent-Replayed, "
    "X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset"
)
PREFLIGHT_MAX_AGE = "600"
# Request ids only tell requests apart in the logs; they guard nothing, so
# they come from a PRNG seeded once from the OS rather than from `secrets`,
# whose system call per request was 4.5 % of the Flask part of `GET /health`.
_ids = random.Random()


def new_request_id() -> str:
    return f"{_ids.getrandbits(64):016x}"


def _preflight(settings: Settings) -> Response | None:
    if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
        return None
    origin = request.headers.get("Origin", "").lower()
    if origin not in settings.cors_origin:
        return Response(status=204)  # no CORS headers: the browser stops here
    # Every rule on this path, not only the one matched (GET and POST /invoices are two).
    adapter = current_app.url_map.bind_to_environ(request.environ)
    methods = {m for m in adapter.allowed_methods() if m not in ("HEAD", "OPTIONS")}
    response = Response(status=204)
    response.headers["Access-Control-Allow-Origin"] = request.headers["Origin"]
    response.headers["Access-Control-Allow-Methods"] = ", ".join(sorted(methods))
    response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
    response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
    response.headers["Vary"] = "Origin"
    return response


def register(app: Flask, settings: Settings) -> None:
    # Both hooks run on every request: each proxy (`request`, `g`) is
    # resolved once, and headers are read from the WSGI environ directly.
    @app.before_request
    def _start() -> Any:
        ctx = g._get_current_object()
        ctx.started = time.perf_counter()
        given = request.environ.get(_REQUEST_ID_VAR, "")
        ctx.request_id = given if _CLEAN_ID.fullmatch(given) else new_request_id()
        if settings.cors_origin:
            if request.url_rule is None and request.method == "OPTIONS":
                return None  # no such route: the 404 handler answers
            return _preflight(settings)
        return None

    @app.after_request
    def _finish(response: Response) -> Response:
        ctx = g._get_current_object()
        # The request itself, not the proxy: each field below is read once, not
        # looked up through the context-local again.
        # Flask types `request` as a `Request`, though it is a werkzeug
        # LocalProxy, which is what has `_get_current_object`: hence the ignore.
        req = request._get_current_object()  # type: ignore[attr-defined]
        request_id = ctx.get("request_id") or new_request_id()
        response.headers[REQUEST_ID] = request_id
        token = ctx.get("token")
        if token is not None and "Cache-Control" not in response.headers:
            response.headers["Cache-Control"] = "no-store"
        if settings.cors_origin:
            origin = req.environ.get("HTTP_ORIGIN")
            if origin and origin.lower() in settings.cors_origin:
                response.headers["Access-Control-Allow-Origin"] = origin
                response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
                response.vary.add("Origin")
        now = time.perf_counter()
        seconds = now - ctx.get("started", now)
        rule = req.url_rule
        route = rule.rule if rule is not None else None
        metrics = app.extensions.get("lnplugin_metrics")
        if metrics is not None:
            metrics.observe(req.method, route, response.status_code, seconds)
        if settings.access_log and access_log.isEnabledFor(logging.INFO):
            fields = {
                "request_id": request_id,
                "method": req.method,
                "route": route or "-",
                "status": response.status_code,
                "duration_ms": round(seconds * 1000, 2),
                "token_id": token.id if token is not None else None,
            }
            access_log.info(
                "%s %s %s %.1fms token=%s id=%s",
                fields["method"],
                fields["route"],
                fields["status"],
                seconds * 1000,
                fields["token_id"] if fields["token_id"] is not None else "-",
                request_id,
                extra={"http": fields},
            )
        return response
