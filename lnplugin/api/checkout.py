"""The hosted checkout: QR codes and a pay page for each invoice, and a pay
page for each Lightning Address. No token: payers open these from a link.

- `GET /pay/<public_id>`: amount, description, QR code, copy button, "open
  in wallet" link and expiry countdown. Server-rendered, so it works without
  JavaScript (QR, invoice text, a refresh link); with it, the page follows
  `GET /pay/<public_id>/events` and turns paid or expired without a reload.
- `GET /pay/<public_id>/qr.svg` and `/qr.png`: the QR code of the upper-case
  `LIGHTNING:` URI (upper case fits QR's denser alphanumeric mode), the
  invoice object's `qr_code_svg` and `qr_code_png`.
- `GET /pay/address/<username>`: an amount form; `POST` mints through the
  LNURL callback's own path (`lnurlp.mint`) and redirects to the invoice's page.

What a payer may learn is what the BOLT11 already tells them (amount,
description, expiry), the state, and what the payee priced for them: the
fiat amount and the line items. Never the metadata, comment or payer data,
which belong to the payee. The id in these URLs is `public_id` (128
random bits), so the pages of other invoices cannot be guessed.

Every page is sent with a strict Content-Security-Policy: scripts, styles
and connections from this origin only, no inline script or style, so a page
loads nothing from third parties (a test checks that in Chromium).
"""

from __future__ import annotations

import io
import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import segno
from flask import (
    Blueprint,
    Response,
    current_app,
    redirect,
    render_template,
    request,
    url_for,
)
from markupsafe import Markup
from werkzeug.exceptions import HTTPException

from lnplugin import lnurl
from lnplugin.alby import effective_state
from lnplugin.api import context, lnurlp, public
from lnplugin.api.errors import APIError, as_api_error, passed_on_headers
from lnplugin.api.events import admit, live, respond
from lnplugin.fiat import format_minor
from lnplugin.hub import (
    ASYNC_LOOP,
    STATE_OF_EVENT,
    ClientGate,
    LiveTail,
    StreamGate,
    Subscription,
    state_message,
)
from lnplugin.store import events, invoices
from lnplugin.store.addresses import Address
from lnplugin.store.models import StoredInvoice

# Pages, QR codes, static files and the state stream: cheap reads.
bp = Blueprint(
    "checkout",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/pay/static",
)
# Where the pages live: a browser's 404 or 405 there gets the error page too.
PREFIX = "/pay/"
# The address form's POST mints on the node: the callback's limit.
mint_bp = Blueprint("checkout_mint", __name__, template_folder="templates")

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors *"
)
FINAL_STATES = ("SETTLED", "EXPIRED", "CANCELED")
_PUBLIC_ID_MAX = 64  # longer is not an id: no store lookup for it


@bp.app_template_global()
def link(endpoint: str, **values: Any) -> str:
    """The path of one of these routes as the payer's browser must ask for it:
    under the path of `--public-url`, as `checkout_url` is. A reverse proxy
    that serves lnplugin at `https://example.com/shop` forwards `/shop/pay/...`
    as `/pay/...`, so `url_for` alone (the path lnplugin sees) would send the
    style sheet, script, state stream, form and redirect to the site's root."""
    base = current_app.extensions["lnplugin"].settings.public_url or ""
    return urllib.parse.urlsplit(base).path + url_for(endpoint, **values)


def _secure(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _error_page(code: int, message: str, headers: dict[str, str] | None = None) -> Response:
    titles = {404: "Not found", 429: "Too many requests", 503: "Unavailable"}
    html = render_template("error.html", title=titles.get(code, "Error"), message=message)
    response = Response(html, status=code, mimetype="text/html")
    response.headers.update(headers or {})
    # Also when no route of these blueprints matched (a 404 or 405 under
    # /pay/, by `page_http_error`), where their after_request does not run.
    return _secure(response)


def page_http_error(exc: HTTPException) -> Response:
    """An HTTP error (404, 405, the limiter's 429) as the pages' error page."""
    code = exc.code or 500
    headers = passed_on_headers(exc)
    message = "Slow down, and try again in a minute." if code == 429 else exc.description
    return _error_page(code, message or exc.name, headers)


def _html_errors(blueprint: Blueprint) -> None:
    """Payers open these routes in a browser, so errors are a short page
    (with the same status and Retry-After) rather than the API's JSON."""

    @blueprint.errorhandler(APIError)
    def _api_error(exc: APIError) -> Response:
        return _error_page(exc.code, exc.message, exc.headers)

    blueprint.register_error_handler(HTTPException, page_http_error)

    @blueprint.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:  # a busy store's 503, a 500: as a page too
        return _api_error(as_api_error(exc))


for _bp in (bp, mint_bp):
    _bp.after_request(_secure)
    _html_errors(_bp)


def _invoice(public_id: str) -> StoredInvoice:
    public.public_url()  # off (503) without --public-url, like every public route
    found = None
    if len(public_id) <= _PUBLIC_ID_MAX and public_id.isascii() and public_id.isalnum():
        found = invoices.by_public_id(context.service().store.conn, public_id)
    if found is None or not found.payment_request:
        raise APIError(404, "Not found")
    return found


@lru_cache(maxsize=256)
def _qr(payment_request: str) -> segno.QRCode:
    return segno.make(f"LIGHTNING:{payment_request.upper()}", error="m", micro=False)


def _sats(msat: int) -> str:
    """Sats with thousands separators; a fraction of a sat is shown, not rounded."""
    whole, part = divmod(msat, 1000)
    return f"{whole:,}" + (f".{part:03d}".rstrip("0") if part else "")


def _fiat(inv: StoredInvoice) -> str | None:
    """The fiat amount shown beside the sats: a fiat-priced invoice's price
    (exact: what the payee asked for), else the display currency's
    `fiat_in_cents` fixed at creation (marked approximate)."""
    try:
        if inv.price_currency and inv.price_amount is not None:
            return format_minor(inv.price_amount, inv.price_currency)
        if inv.fiat_currency and inv.fiat_in_cents is not None:
            return "\u2248 " + format_minor(inv.fiat_in_cents, inv.fiat_currency)
    except KeyError:  # a code this version has no exponent for: show no guess
        pass
    return None


@dataclass(frozen=True)
class Line:
    """One line item as the page shows it; money already formatted."""

    description: str
    quantity: int
    unit_price: str
    total: str


def _lines(inv: StoredInvoice) -> tuple[list[Line], str | None]:
    """The invoice's line items and their sum, in the invoice's currency:
    minor units of a fiat price, sats for BTC (as `POST /invoices` took them)."""
    if not inv.items:
        return [], None
    currency = inv.price_currency

    def money(amount: int) -> str:
        return format_minor(amount, currency) if currency else f"{amount:,} sats"

    lines, total = [], 0
    for item in json.loads(inv.items):
        unit, quantity = int(item["unit_price"]), int(item.get("quantity", 1))
        lines.append(Line(str(item["description"]), quantity, money(unit), money(unit * quantity)))
        total += unit * quantity
    return lines, money(total)


@bp.get("/pay/<public_id>")
def page(public_id: str) -> Any:
    inv = _invoice(public_id)
    now = int(time.time())
    if inv.viewed_at is None and request.method == "GET":  # a HEAD shows no one the page
        _first_view(inv.id, now)
    state = effective_state(inv.state, inv.expires_at, now)
    svg = _qr(inv.payment_request).svg_inline(scale=4, omitsize=True, title="Invoice QR code")
    lines, items_total = _lines(inv)
    html = render_template(
        "pay.html",
        inv=inv,
        state=state,
        amount=_sats(inv.amount_msat) if inv.amount_msat else None,
        fiat=_fiat(inv),
        lines=lines,
        items_total=items_total,
        qr_svg=Markup(svg),  # segno's own markup: no user text in it
        expires_in=max(0, inv.expires_at - now),
        final=state in FINAL_STATES,
    )
    response = Response(html, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


def _first_view(invoice_id: int, now: int) -> None:
    """`invoice.viewed`, once: the check and the event in one transaction, so
    of two first openings at the same moment only one writes it. Later
    openings see `viewed_at` in the row they read and write nothing."""
    with context.service().store.transaction() as tx:
        row = invoices.mark_viewed(tx, invoice_id, now)
        if row is not None:
            events.append(tx, events.INVOICE_VIEWED, row)


@bp.get("/pay/<public_id>/qr.svg")
def qr_svg(public_id: str) -> Any:
    return _image(_invoice(public_id), "svg", "image/svg+xml")


@bp.get("/pay/<public_id>/qr.png")
def qr_png(public_id: str) -> Any:
    return _image(_invoice(public_id), "png", "image/png")


def _image(inv: StoredInvoice, kind: str, mimetype: str) -> Response:
    out = io.BytesIO()
    _qr(inv.payment_request).save(out, kind=kind, scale=8, border=4, light="#fff")
    response = Response(out.getvalue(), mimetype=mimetype)
    # A payment request never changes, so neither does its picture.
    response.headers["Cache-Control"] = "public, max-age=86400, immutable"
    return response


@bp.get("/pay/<public_id>/events")
def state_events(public_id: str) -> Any:
    """The invoice's state, then each change, as `event: state` messages
    whose data is `{"state": ...}` and nothing more; ends at a final state.

    A reconnect gets the current state again (no history: a state is all
    there is to resume). Once the invoice is final, a reconnect that already
    saw that final state (its `Last-Event-ID`) gets 204, which stops
    EventSource; one that did not (the connection dropped while the payer
    was in their wallet, and the invoice was paid meanwhile) gets the final
    state first, or the page would never learn it was paid.
    """
    inv = _invoice(public_id)
    svc = context.service()
    sub = Subscription(
        lambda row: row["type"] in STATE_OF_EVENT,
        inv.id,
        final_ends=True,
        loop=request.environ.get(ASYNC_LOOP),
        state_only=True,
    )
    release = _admit_public(sub)
    try:
        with svc.store.snapshot() as conn:
            row = invoices.by_id(conn, inv.id)
            head = events.last_seq(conn)
    except BaseException:
        release()
        raise
    assert row is not None
    state = effective_state(row.state, row.expires_at, int(time.time()))
    seen = request.headers.get("Last-Event-ID")
    if state in FINAL_STATES and seen == state.lower():
        release()
        return Response(status=204)
    heartbeat = svc.settings.sse_heartbeat

    def body() -> Iterator[bytes | LiveTail]:
        yield state_message(state)
        if state in FINAL_STATES:
            return
        yield from live(sub, head, heartbeat)

    return respond(body(), sub, release)


def public_gate(max_streams: int) -> StreamGate:
    """The cap on public state streams: half of `--max-streams`, so pages
    opened by anyone on the internet cannot take every slot from the apps
    that hold tokens (a public stream takes a slot of each gate)."""
    return StreamGate(max(1, max_streams // 2))


# Open state streams one client (an address, an IPv6 /64: `public.client_key`)
# may hold. Without it one client, at the public rate limit's 60 new streams a
# minute, fills the public half of `--max-streams` in minutes and holds it, and
# no other payer's page turns paid by itself. Sixteen, not fewer: many payers
# can share one address (a venue's Wi-Fi, a carrier's NAT), and a browser may
# keep a page it left open for a while; a page refused still works by reload
# (it shows its Refresh link), so this is no setting.
STREAMS_PER_CLIENT = 16

_FULL = {"Retry-After": "5"}


def client_gate() -> ClientGate:
    """The cap on each client's open state streams (`STREAMS_PER_CLIENT`)."""
    return ClientGate(STREAMS_PER_CLIENT)


def _admit_public(sub: Subscription) -> Callable[[], None]:
    gate: StreamGate = current_app.extensions["lnplugin_public_streams"]
    clients: ClientGate = current_app.extensions["lnplugin_client_streams"]
    client = public.client_key()
    if not clients.enter(client):
        raise APIError(
            503,
            f"Too many open payment pages from your address (limit {clients.limit})",
            headers=_FULL,
        )
    if not gate.enter():
        clients.leave(client)
        raise APIError(503, f"Too many open payment pages (limit {gate.limit})", headers=_FULL)
    try:
        release = admit(sub)
    except BaseException:
        gate.leave()
        clients.leave(client)
        raise
    left = threading.Event()

    def release_all() -> None:
        if not left.is_set():
            left.set()
            release()
            gate.leave()
            clients.leave(client)

    return release_all


@bp.get("/pay/address/<username>")
def address_page(username: str) -> Any:
    public.public_url()
    return _address_form(lnurlp.address(username))


@mint_bp.post("/pay/address/<username>")
def address_mint(username: str) -> Any:
    """Mint through the LNURL callback's path, then show the invoice's page
    (303, so a reload does not mint again)."""
    base = public.public_url()
    row = lnurlp.address(username)
    raw = request.form.get("amount", "").strip()
    # A browser sends each line break of a textarea as CR LF, but its
    # `maxlength` counted it as one character: count it as one here too.
    comment = request.form.get("comment", "").replace("\r\n", "\n").strip() or None
    name = request.form.get("name", "").strip()

    def refuse(error: str, field: str | None) -> Response:
        return _address_form(row, error, raw, comment, name, field)

    if _wallet_only(row) or not _whole_sats(row):
        return _address_form(row, status=400)
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        return refuse("Enter the amount in sats, a whole number.", "amount")
    low, high = _sat_range(row)
    if not low <= int(raw) <= high:
        return refuse(f"Enter from {low:,} to {high:,} sats.", "amount")
    if comment is not None and 0 < row.comment_allowed < len(comment):
        return refuse(
            f"Shorten the message to at most {row.comment_allowed:,} characters "
            f"(it has {len(comment):,}).",
            "comment",
        )
    if not name and _mandatory(row, "name"):
        return refuse("Enter your name: this address asks for it.", "name")
    payer_text = json.dumps({"name": name}) if name and "name" in row.payer_data_request else None
    try:
        stored = lnurlp.mint(row, base, int(raw) * 1000, comment, payer_text)
    except APIError as exc:
        if exc.code != 400:
            raise
        return refuse(exc.message, "name" if exc.message.startswith("payerdata.name") else None)
    return redirect(link("checkout.page", public_id=stored.public_id), code=303)


# What the form calls the payer data kinds it cannot send (LUD-18).
_WALLET_ONLY_KINDS = {
    "email": "e-mail address",
    "pubkey": "public key",
    "identifier": "Lightning Address",
    "auth": "wallet's signature",
}


def _mandatory(row: Address, kind: str) -> bool:
    return bool(row.payer_data_request.get(kind, {}).get("mandatory"))


def _wallet_only(row: Address) -> list[str]:
    """The mandatory payer data the form has no field for (only a name): an
    address that needs any of it is paid from a wallet, so the page says so
    instead of offering a form that could only be refused."""
    return [text for kind, text in _WALLET_ONLY_KINDS.items() if _mandatory(row, kind)]


def _sat_range(row: Address) -> tuple[int, int]:
    """The whole sats inside the address's msat range (the form takes sats)."""
    return -(-row.min_sendable_msat // 1000), row.max_sendable_msat // 1000


def _whole_sats(row: Address) -> bool:
    """Whether a whole number of sats (all the form takes) lies in the
    address's msat range: from 1,500 to 1,800 msat none does, and the form
    would ask for "2 to 1" sats, an amount no payer can enter."""
    low, high = _sat_range(row)
    return low <= high


def _address_form(
    row: Address,
    error: str | None = None,
    amount: str = "",
    comment: str | None = None,
    name: str = "",
    field: str | None = None,
    status: int | None = None,
) -> Response:
    """The address's form; with `error`, shown after `field` (the form's
    input it is about; None: above the form) and what the payer typed."""
    min_sats, max_sats = _sat_range(row)
    html = render_template(
        "address.html",
        row=row,
        lightning_address=lnurl.identifier(row.username, public.public_url()),
        min_sats=min_sats,
        max_sats=max_sats,
        error=error,
        field=field,
        amount=amount,
        comment=comment or "",
        name=name,
        asks_name="name" in row.payer_data_request,
        name_mandatory=_mandatory(row, "name"),
        wallet_only=" and ".join(_wallet_only(row)),
        whole_sats=min_sats <= max_sats,
    )
    response = Response(html, status=status or (400 if error else 200), mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response
