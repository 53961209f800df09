"""What every route without a token shares: the public URL, the client's
address behind a proxy, per-client rate limits and LUD-06's error shape.

Public routes (Lightning Addresses and LNURL-pay today; QR codes and the
checkout page can hang off the same helpers) are reached by payers, not by
apps holding a token, so they:

- build every URL they hand out from `--public-url` alone, never from the
  request's Host header, which anyone can set; without the setting they
  answer one clear error naming it (`public_url()`);
- see the client address a reverse proxy forwarded only when `--trust-proxy`
  says how many proxies to believe (werkzeug's ProxyFix); otherwise a
  client could pick its own rate-limit bucket with an X-Forwarded-For header;
- are rate-limited per client address with flask-limiter, in memory: the
  limits are per process and reset on restart, which is enough to keep one
  client from making the node mint invoices in a loop. An IPv6 client is
  counted by its /64 (`client_key`).
"""

from __future__ import annotations

import ipaddress
import logging
import time
import urllib.parse
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from flask_limiter import Limiter
from limits.storage import MemoryStorage
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from lnplugin.api.errors import APIError, as_api_error, passed_on_headers
from lnplugin.config import Settings

log = logging.getLogger(__name__)

NO_PUBLIC_URL = (
    "this server has no public URL, so its Lightning Addresses and LNURL links are off; "
    "set --public-url (LNPLUGIN_PUBLIC_URL) to the https:// URL payers reach it at"
)


class _MemoryStorage(MemoryStorage):
    """limits' in-memory storage, sweeping expired counters every few seconds.

    The stock one starts a new 10 ms timer thread whenever a counter is
    incremented and its last sweep has finished: under steady traffic that
    is a thread start every 10 ms, each blocking the request that makes it
    until the thread runs, and about a third of a limited request's cost.
    Expired counters are already reset when read, so the sweep only frees
    memory, and once every few seconds does that. (The override names the
    method limits defines; if a version renames it, the stock behaviour
    simply comes back.)
    """

    STORAGE_SCHEME = ["lnplugin-memory"]
    SWEEP_EVERY = 5.0  # seconds
    _next_sweep = 0.0

    def _MemoryStorage__schedule_expiry(self) -> None:
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self.SWEEP_EVERY
            # The ignore: mypy does not see name-mangled (double underscore)
            # methods as the superclass's, though Python resolves this one.
            super()._MemoryStorage__schedule_expiry()  # type: ignore[misc]


def public_url() -> str:
    """The configured public URL, or a 503 naming the setting."""
    url = current_app.extensions["lnplugin"].settings.public_url
    if not url:
        raise APIError(503, NO_PUBLIC_URL)
    return str(url)


def wallets_accept(public_url: str) -> bool:
    """Whether LNURL wallets take links under `public_url`: https://, or
    http:// on a .onion (LUD-01), or on this machine (trying it out)."""
    parts = urllib.parse.urlsplit(public_url)
    if parts.scheme == "https":
        return True
    host = (parts.hostname or "").lower()
    if host.endswith(".onion") or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _root_if_a_path(public_url: str) -> str | None:
    """The root of `public_url`'s domain when the URL has a path below it
    (LUD-16 addresses resolve at the root only), else None."""
    parts = urllib.parse.urlsplit(public_url)
    if parts.path.strip("/"):
        return f"{parts.scheme}://{parts.netloc}"
    return None


def lnurl_error(code: int, reason: str, headers: dict[str, str] | None = None) -> Any:
    """LUD-06's error object. LUD-01 tells wallets to read the body whatever
    the status, so the status is only for people and logs."""
    response = jsonify({"status": "ERROR", "reason": reason})
    response.status_code = code
    response.headers.update(headers or {})
    response.headers["Access-Control-Allow-Origin"] = "*"  # see open_to_every_origin
    response.headers["Cache-Control"] = "no-store"  # see never_stored
    return response


def never_stored(bp: Blueprint) -> None:
    """Tell every cache not to keep `bp`'s answers (`Cache-Control: no-store`).

    Each LNURL answer is for one request: a discovery may carry a fresh
    LUD-18 `k1`, good for one payment; a callback mints an invoice for one
    payer; verify says whether it is paid yet. Without the header a caching
    reverse proxy or CDN in front of lnplugin (nginx's `proxy_cache_valid`,
    a "cache everything" rule) may keep them, and hand the next payer the
    same k1 or the same invoice, or tell a wallet it is unpaid after it paid."""

    @bp.after_request
    def _no_store(response: Response) -> Response:
        response.headers["Cache-Control"] = "no-store"
        return response


def open_to_every_origin(bp: Blueprint) -> None:
    """Let a page of any origin read `bp`'s answers (`Access-Control-Allow-Origin: *`).

    Wallets and Nostr clients that run in a browser fetch a Lightning Address
    from their own origin; without the header the browser hides the answer
    and the payment fails. These routes take no credentials and hand out
    only what any wallet may ask for, so no origin needs naming (unlike the
    API's `--cors-origin`, whose pages carry tokens). Their GETs are simple
    requests, with no preflight."""

    @bp.after_request
    def _any_origin(response: Response) -> Response:
        response.headers["Access-Control-Allow-Origin"] = "*"
        return response


def lnurl_http_error(exc: HTTPException) -> Any:
    """An HTTP error (404, 405, the limiter's 429) in LUD-06's shape."""
    code = exc.code or 500
    headers = passed_on_headers(exc)
    reason = "Too many requests, slow down" if code == 429 else (exc.description or exc.name)
    return lnurl_error(code, reason, headers)


def lnurl_errors(bp: Blueprint) -> None:
    """Answer every error of `bp`'s routes in LUD-06's shape (the rest of the
    API keeps Alby's), including the 429 of the rate limiter."""

    @bp.errorhandler(APIError)
    def _api_error(exc: APIError) -> Any:
        reason = exc.message
        if exc.errors:
            reason += ": " + "; ".join(f"{k} {v}" for k, v in exc.errors.items())
        return lnurl_error(exc.code, reason, exc.headers)

    bp.register_error_handler(HTTPException, lnurl_http_error)

    @bp.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:  # a busy store's 503, a 500: in LUD-06's shape too
        return _api_error(as_api_error(exc))


IPV6_CLIENT_PREFIX = 64


def client_key() -> str:
    """The rate-limit bucket of the request's client: its IPv4 address, or
    the /64 network of its IPv6 address. A /64 is the smallest network an
    IPv6 host or VPS is given, and any address in it is the same client's,
    so counting by address would let one client take a fresh bucket for
    every request. An IPv4-mapped address (a dual-stack listener's IPv4
    client) counts as that IPv4 address."""
    remote = request.remote_addr or "127.0.0.1"
    try:
        ip = ipaddress.ip_address(remote.split("%")[0])
    except ValueError:
        return remote
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_CLIENT_PREFIX), strict=False))
    return str(ip)


def install(app: Flask, settings: Settings) -> PublicLimiter:
    """Proxy trust and the rate limiter for `app`; says once, in the log, when
    the public routes are off for want of `--public-url`."""
    if settings.trust_proxy:
        n = settings.trust_proxy
        # Wrapping `wsgi_app` is how Flask documents installing middleware;
        # mypy flags any assignment to a method, hence the ignore.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n)  # type: ignore[method-assign]
    if not settings.public_url:
        log.info(
            "Lightning Addresses and LNURL-pay are off: set --public-url (LNPLUGIN_PUBLIC_URL) "
            "to the https:// URL payers reach this server at"
        )
    elif not wallets_accept(settings.public_url):
        log.warning(
            "--public-url %s is http:// on a public host: wallets expect LNURL links over "
            "https:// (LUD-01; http:// only for .onion), so put TLS in front of lnplugin",
            settings.public_url,
        )
    if settings.public_url and (root := _root_if_a_path(settings.public_url)):
        log.warning(
            "--public-url %s has a path: LNURLs work under it, but a wallet looks a "
            "Lightning Address user@%s up at %s/.well-known/lnurlp/user, so the "
            "addresses lnplugin prints work only if that URL reaches lnplugin "
            "(docs/lnurl.md)",
            settings.public_url,
            urllib.parse.urlsplit(root).netloc,
            root,
        )

    # Registered before the limiter's own hook, so it runs after it (Flask
    # runs these in reverse): flask-limiter puts Retry-After on every limited
    # response, but on a success, or on an error that waiting does not mend
    # (a bad amount, an unknown name), it would tell a client to wait for
    # nothing. The limiter's 429 keeps it, and a 503 has its own.
    @app.after_request
    def _retry_after_only_when_waiting_helps(response: Response) -> Response:
        if response.status_code not in (429, 503) and "Retry-After" in response.headers:
            del response.headers["Retry-After"]
        return response

    hooks = _HOOKS
    registered = {name: list(getattr(app, name).get(None, ())) for name in hooks}
    limiter = PublicLimiter(
        client_key,
        app=app,
        storage_uri="lnplugin-memory://",
        headers_enabled=True,
        # A rate limit is a safety net: if its storage fails, serve rather than refuse.
        swallow_errors=True,
    )
    limited = limiter.limited

    # Only the public blueprints have limits here (token routes are counted
    # per token by `api.ratelimit`), so the limiter's request hooks, which
    # flask-limiter installs for every request, are moved to the blueprints
    # `limit` is given: no other request runs them at all (they were a third
    # of the Flask part of `GET /health`'s CPU, and still a fifth once the
    # filter below made them skip the evaluation; docs/streaming.md). A
    # limit only takes effect on a blueprint given to `limit` below.
    for name in hooks:
        everyone = getattr(app, name).get(None, [])
        added = [f for f in everyone if f not in registered[name]]
        limiter.hooks[name] = added
        everyone[:] = [f for f in everyone if f not in added]

    # Kept as a second guard: a request outside those blueprints is exempt.
    @limiter.request_filter
    def _not_public() -> bool:
        return request.blueprint not in limited

    return limiter


# Flask's per-scope hook tables (`None`: every request; a blueprint's name: its requests).
_HOOKS = ("before_request_funcs", "after_request_funcs", "teardown_request_funcs")


class PublicLimiter(Limiter):
    """flask-limiter's `Limiter`, knowing which blueprints `limit` gave limits."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.limited: set[str] = set()
        self.hooks: dict[str, list[Any]] = {}  # the request hooks it installed, per table
        super().__init__(*args, **kwargs)


def limit(limiter: PublicLimiter, bp: Blueprint, rate: str, app: Flask) -> None:
    """Limit every route of `bp` to `rate` per client address (one bucket per route).

    The limiter's request hooks run for `bp`'s requests only (see `install`)."""
    limiter.limit(rate)(bp)
    if bp.name not in limiter.limited:
        for name, functions in limiter.hooks.items():
            getattr(app, name).setdefault(bp.name, []).extend(functions)
    limiter.limited.add(bp.name)
