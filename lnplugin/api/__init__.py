"""The Flask app factory. One blueprint per resource; errors in one place."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask

from lnplugin.api import (
    addresses,
    checkout,
    decode,
    dev,
    docs,
    errors,
    events,
    info,
    invoices,
    lnurlp,
    metrics,
    nwc,
    observe,
    public,
    ratelimit,
    tickets,
    webhooks,
)
from lnplugin.api.jsonprovider import OrjsonProvider
from lnplugin.nodes.base import Feature
from lnplugin.service import Service
from lnplugin.store.tokens import LiveTokens

MAX_BODY_BYTES = 64 * 1024


class App(Flask):
    """Flask, remembering which of its functions need no async wrapper.

    Flask passes every view and every request hook through `ensure_sync`
    on every request, and each call asks `inspect` whether the function is
    a coroutine function: eight times for `GET /health`. The answer for a
    given function never changes, so it is kept (Flask documents
    `ensure_sync` as the method to override). The app's views and hooks are
    a fixed set; a function made per request (`after_this_request`) would
    not be, so the table stops growing at `SYNC_TABLE` entries.
    """

    SYNC_TABLE = 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        try:
            return self._sync[func]
        except KeyError:
            sync = super().ensure_sync(func)
            if len(self._sync) < self.SYNC_TABLE:
                self._sync[func] = sync
            return sync
        except TypeError:  # unhashable: ask every time, as Flask does
            return super().ensure_sync(func)


def create_app(service: Service) -> Flask:
    app = App("lnplugin")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json = OrjsonProvider(app)
    app.url_map.strict_slashes = False
    app.url_map.converters["invoice_text"] = decode.InvoiceText
    app.extensions["lnplugin"] = service
    app.extensions["lnplugin_tickets"] = tickets.TicketBook()
    app.extensions["lnplugin_live_tokens"] = LiveTokens(service.store)
    app.extensions["lnplugin_public_streams"] = checkout.public_gate(service.settings.max_streams)
    app.extensions["lnplugin_client_streams"] = checkout.client_gate()
    errors.register(app)
    observe.register(app, service.settings)
    app.register_blueprint(invoices.bp)
    app.register_blueprint(decode.bp)
    app.register_blueprint(info.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(events.bp)
    app.register_blueprint(tickets.bp)
    app.register_blueprint(addresses.bp)
    app.register_blueprint(nwc.bp)
    limiter = public.install(app, service.settings)
    ratelimit.install(app, service.settings.token_rate_limit)
    public.limit(limiter, lnurlp.bp, service.settings.rate_limit, app)
    public.limit(limiter, lnurlp.mint_bp, service.settings.rate_limit_callback, app)
    public.limit(limiter, checkout.bp, service.settings.rate_limit, app)
    public.limit(limiter, checkout.mint_bp, service.settings.rate_limit_callback, app)
    app.register_blueprint(lnurlp.bp)
    app.register_blueprint(lnurlp.mint_bp)
    app.register_blueprint(checkout.bp)
    app.register_blueprint(checkout.mint_bp)
    for prefix in lnurlp.PREFIXES:
        errors.shape_for_prefix(app, prefix, public.lnurl_http_error)
    errors.shape_for_prefix(app, checkout.PREFIX, checkout.page_http_error)
    if service.node.has_feature(Feature.DEV_PAYMENTS):
        app.register_blueprint(dev.bp)
    metrics.register(app, service)
    docs.register(app)  # last: the document describes every route registered above
    return app
