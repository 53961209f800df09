"""Bearer tokens (or `X-Api-Key`) with Alby's scopes, plus `admin`.

`admin` grants every scope. No token is 401; a token without the scope is
403, so clients can tell "log in" from "ask for more".
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from flask import current_app, g, request

from lnplugin.api import signing
from lnplugin.api.errors import APIError
from lnplugin.store import tokens

P = ParamSpec("P")
R = TypeVar("R")


def _presented_token() -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer " and header[7:].strip():
        return header[7:].strip()
    return request.headers.get("X-Api-Key") or None


def presents_token() -> bool:
    """Whether the request carries a token at all (valid or not)."""
    return _presented_token() is not None


# Routes that accept `?ticket=` (see `lnplugin.api.tickets`) instead of a token:
# the event streams, which a browser's EventSource opens without headers.
TICKET_ENDPOINTS = frozenset({"events.all_events", "events.invoice_events"})


def current_token() -> tokens.TokenInfo:
    if "token" not in g:
        raw = _presented_token()
        if raw is None and request.endpoint in TICKET_ENDPOINTS and "ticket" in request.args:
            conn = current_app.extensions["lnplugin"].store.conn
            by_ticket = _ticket_token(conn, request.args["ticket"])
            current_app.extensions["lnplugin_token_limits"].hit(by_ticket)
            g.token = by_ticket
            return g.token
        if raw is None:
            raise APIError(401, "Missing token: send Authorization: Bearer <token>")
        info = current_app.extensions["lnplugin_live_tokens"].verify(raw)
        if info is None:
            raise APIError(401, "Invalid or revoked token")
        # Counted before the signature is checked, so guessing signatures is limited too.
        current_app.extensions["lnplugin_token_limits"].hit(info)
        signing.check(info)
        g.token = info
    return g.token


def _ticket_token(conn: sqlite3.Connection, ticket: str) -> tokens.TokenInfo:
    """The live token a stream ticket stands for (consuming the ticket), or 401."""
    book = current_app.extensions.get("lnplugin_tickets")
    token_id = None
    if book is not None and len(ticket) <= 100:
        token_id = book.redeem(ticket, request.path)
    info = tokens.by_id(conn, token_id) if token_id is not None else None
    if info is None:
        raise APIError(401, "Invalid, used or expired ticket: POST /events/tickets for a new one")
    return info


# Either reads something: incoming invoices, or outgoing payments.
READ_SCOPES = ("invoices:read", "transactions:read")


def has_scope(info: tokens.TokenInfo, scope: str) -> bool:
    return "admin" in info.scopes or scope in info.scopes


def require(*scopes: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Require a valid token holding every scope listed (none: any valid token)."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            info = current_token()
            missing = [s for s in scopes if not has_scope(info, s)]
            if missing:
                raise APIError(403, f"Token lacks scope: {', '.join(missing)}")
            return fn(*args, **kwargs)

        # a function attribute, read by api.openapi to list each route's scopes
        # (the ignore: mypy types a function as having no attributes of its own)
        wrapper.required_scopes = scopes  # type: ignore[attr-defined]
        return wrapper

    return decorate


def require_one_of(*scopes: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Require a valid token holding at least one of `scopes`: for routes whose
    answer depends on which it holds (the event stream, the export), so a token
    that could see nothing there is refused up front rather than given nothing."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            info = current_token()
            if not any(has_scope(info, s) for s in scopes):
                raise APIError(403, f"Token lacks scope: {' or '.join(scopes)}")
            return fn(*args, **kwargs)

        # read by api.openapi: one security requirement per scope (any one will do)
        # (the ignores: mypy types a function as having no attributes of its own)
        wrapper.required_scopes = ()  # type: ignore[attr-defined]
        wrapper.any_scopes = scopes  # type: ignore[attr-defined]
        return wrapper

    return decorate
