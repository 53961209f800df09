"""Bearer tokens (or `X-Api-Key`) with Alby's scopes, plus `admin`.

`admin` grants every scope. No token is 401; a token without the scope is
403, so clients can tell "log in" from "ask for more".
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from flask import current_app, g, request

from lnplugin.api.errors import APIError
from lnplugin.store import tokens

P = ParamSpec("P")
R = TypeVar("R")


def _presented_token() -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer " and header[7:].strip():
        return header[7:].strip()
    return request.headers.get("X-Api-Key") or None


def current_token() -> tokens.TokenInfo:
    if "token" not in g:
        raw = _presented_token()
        if raw is None:
            raise APIError(401, "Missing token: send Authorization: Bearer <token>")
        info = tokens.verify(current_app.extensions["lnplugin"].store.conn, raw)
        if info is None:
            raise APIError(401, "Invalid or revoked token")
        g.token = info
    return g.token


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

        return wrapper

    return decorate
