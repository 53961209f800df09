"""Signed requests, for tokens created with `--require-signature`.

A bearer token alone proves nothing about the request it rides on: whoever
sees one request (a log, a proxy) can send any other. A signing token's
requests also carry, in headers,

- `X-Lnplugin-Timestamp`: unix seconds when the client signed,
- `X-Lnplugin-Nonce`: a fresh random string (8 to 128 characters of
  `A-Za-z0-9_-`),
- `X-Lnplugin-Signature`: hex HMAC-SHA256, keyed with the token's signing
  secret, of the five lines `METHOD`, path (with its `?query` if any),
  timestamp, nonce and the hex SHA-256 of the body, joined by `\\n`.

A timestamp more than `--signature-window` seconds from the server's clock,
a nonce the token used before within that window, or a signature that does
not match is a 401 whose `errors` says which header is wrong. Nonces are
kept in the store, so a replay is refused after a restart too.
See docs/signed-requests.md for signing and verifying in Python and JavaScript.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

from flask import current_app, request

from lnplugin.api.errors import APIError
from lnplugin.store import tokens

TIMESTAMP = "X-Lnplugin-Timestamp"
NONCE = "X-Lnplugin-Nonce"
SIGNATURE = "X-Lnplugin-Signature"
_NONCE = re.compile(r"[A-Za-z0-9_-]{8,128}")


def message(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """The bytes a signature covers."""
    body_hash = hashlib.sha256(body).hexdigest()
    return "\n".join((method.upper(), path, timestamp, nonce, body_hash)).encode()


def sign(secret: str, method: str, path: str, timestamp: str, nonce: str, body: bytes) -> str:
    return hmac.new(
        secret.encode(), message(method, path, timestamp, nonce, body), hashlib.sha256
    ).hexdigest()


def _refuse(field: str, reason: str) -> APIError:
    return APIError(401, "Invalid request signature", {field: reason})


def check(info: tokens.TokenInfo) -> None:
    """Raise a 401 unless the current request is signed as `info` requires."""
    secret = info.signing_secret
    if secret is None:
        return
    window = current_app.extensions["lnplugin"].settings.signature_window
    ts, nonce, signature = (request.headers.get(h, "") for h in (TIMESTAMP, NONCE, SIGNATURE))
    missing = [h for h, v in ((TIMESTAMP, ts), (NONCE, nonce), (SIGNATURE, signature)) if not v]
    if missing:
        raise APIError(
            401,
            "This token requires signed requests",
            {h: "is required (see docs/signed-requests.md)" for h in missing},
        )
    if not ts.isdigit() or len(ts) > 12:
        raise _refuse(TIMESTAMP, "must be unix seconds")
    now = int(time.time())
    if abs(now - int(ts)) > window:
        raise _refuse(TIMESTAMP, f"is stale: more than {window} s from the server's clock")
    if not _NONCE.fullmatch(nonce):
        raise _refuse(NONCE, "must be 8 to 128 characters of A-Z, a-z, 0-9, _ and -")
    path = request.full_path if request.query_string else request.path
    expected = sign(secret, request.method, path, ts, nonce, request.get_data(cache=True))
    if not hmac.compare_digest(expected, signature.lower()):
        raise _refuse(
            SIGNATURE, "does not match the request (method, path, timestamp, nonce, body)"
        )
    store = current_app.extensions["lnplugin"].store
    with store.transaction(wake=False) as tx:  # no waiter reads nonces
        fresh = tokens.remember_nonce(tx, info.id, nonce, now, window)
    if not fresh:
        raise _refuse(NONCE, "was already used; send a new nonce with every request")
