"""The hosted checkout over real HTTP, against `lnplugin serve` on the dev node:
the invoice object's QR and checkout links, the QR images, what the pay page
shows and hides, its Content-Security-Policy, the public state-only stream,
the Lightning Address form, and everything switched off without
`--public-url`. (The page in a real browser: tests/test_checkout_browser.py.)
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import socket
import sqlite3
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import segno
import sqlite_utils

from lnplugin.api import checkout
from lnplugin.store import migrations
from tests.e2e import Server, cli, wait_for
from tests.helpers_webhooks import free_port

SECRETS = {"metadata": {"order": "s3cret-order"}, "payer_name": "Ann Payer", "comment": "hush-hush"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    port = free_port()
    data = tmp_path_factory.mktemp("checkout") / "data"
    args = ("--public-url", f"http://127.0.0.1:{port}", "--port", str(port))
    with Server(data, *args, "--rate-limit", "1000/minute") as srv:
        yield srv


def _invoice(server: Server, **body: Any) -> dict[str, Any]:
    reply = server.request("POST", "/invoices", json={"amount": 2100, **body})
    assert reply.status_code == 201, reply.text
    return dict(reply.json())


def test_every_invoice_gets_qr_urls_and_a_checkout_page_under_an_unguessable_id(
    server: Server,
) -> None:
    inv = _invoice(server, description="coffee")
    page = inv["checkout_url"]
    assert page.startswith(server.url + "/pay/")
    public_id = page.rsplit("/", 1)[-1]
    # 12 hex digits of time, then 128 random bits; not the API's identifier.
    assert re.fullmatch(r"[0-9a-f]{12}[0-9a-f]{32}", public_id)
    assert public_id != inv["identifier"]
    assert inv["qr_code_png"] == page + "/qr.png"
    assert inv["qr_code_svg"] == page + "/qr.svg"
    # The same links on a read and in lists.
    got = server.request("GET", f"/invoices/{inv['payment_hash']}").json()
    assert got["qr_code_svg"] == inv["qr_code_svg"]
    listed = server.request("GET", "/invoices?items=5").json()
    assert inv["checkout_url"] in [row["checkout_url"] for row in listed]


def test_the_qr_codes_are_the_upper_case_lightning_uri(server: Server) -> None:
    inv = _invoice(server)
    png = requests.get(inv["qr_code_png"], timeout=10)
    svg = requests.get(inv["qr_code_svg"], timeout=10)
    assert png.status_code == 200 and png.headers["Content-Type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert svg.status_code == 200 and svg.headers["Content-Type"].startswith("image/svg+xml")
    # The SVG's modules are the QR code of the upper-case URI (alphanumeric
    # mode), and not of the lower-case one.
    uri = "LIGHTNING:" + inv["payment_request"].upper()
    expected = segno.make(uri, error="m", micro=False)
    assert expected.mode == "alphanumeric"
    drawn = re.search(r'd="([^"]+)"', svg.text)
    assert drawn is not None
    assert _path_of(expected) == drawn.group(1)
    lower = segno.make("lightning:" + inv["payment_request"], error="m", micro=False)
    assert _path_of(lower) != drawn.group(1)


def _path_of(qr: segno.QRCode) -> str:
    out = io.BytesIO()
    qr.save(out, kind="svg", scale=8, border=4, light="#fff")
    found = re.search(r'd="([^"]+)"', out.getvalue().decode())
    assert found is not None
    return found.group(1)


def test_the_page_shows_amount_description_qr_and_invoice_but_no_payee_data(
    server: Server,
) -> None:
    inv = _invoice(server, description="coffee <b>beans</b>", **SECRETS)
    reply = requests.get(inv["checkout_url"], timeout=10)
    assert reply.status_code == 200
    html = reply.text
    assert "2,100 <span>sats</span>" in html
    assert "coffee &lt;b&gt;beans&lt;/b&gt;" in html  # escaped
    assert '<svg viewBox="' in html  # the QR, inline
    assert f'href="lightning:{inv["payment_request"]}"' in html
    assert f">{inv['payment_request']}</textarea>" in html
    # Without JavaScript: the refresh link shows, the copy button does not.
    assert re.search(r'<p class="refresh" id="refresh">', html)
    assert re.search(r'<button [^>]*id="copy"[^>]*hidden', html)
    for secret in ("s3cret-order", "Ann Payer", "hush-hush", inv["payment_hash"]):
        assert secret not in html
    assert inv["identifier"] not in html


def test_line_items_are_on_the_page_without_javascript_escaped_and_alone(
    server: Server,
) -> None:
    items = [
        {"description": "Espresso <script>alert(1)</script>", "unit_price": 150, "quantity": 2},
        {"description": "Croissant & jam", "unit_price": 1800},
    ]
    reply = server.request("POST", "/invoices", json={"items": items, **SECRETS})
    assert reply.status_code == 201, reply.text
    html = requests.get(reply.json()["checkout_url"], timeout=10).text
    # Server-rendered rows: description, quantity, unit price and line total,
    # in sats for a BTC invoice, then the sum.
    rows = re.findall(r"<tr><td class=\"what\">(.*?)</td>(.*?)</tr>", html)
    cells = [[what, *re.findall(r'<td class="num">([^<]*)</td>', rest)] for what, rest in rows]
    assert cells == [
        ["Espresso &lt;script&gt;alert(1)&lt;/script&gt;", "2", "150 sats", "300 sats"],
        ["Croissant &amp; jam", "1", "1,800 sats", "1,800 sats"],
    ]
    assert '<td class="num" id="items-total">2,100 sats</td>' in html
    assert "2,100 <span>sats</span>" in html
    assert "<script>alert" not in html
    # No display currency and no fiat price on this server: no fiat line.
    assert 'id="fiat"' not in html
    for secret in ("s3cret-order", "Ann Payer", "hush-hush"):
        assert secret not in html


def test_pages_carry_a_strict_content_security_policy(server: Server) -> None:
    inv = _invoice(server)
    reply = requests.get(inv["checkout_url"], timeout=10)
    csp = reply.headers["Content-Security-Policy"]
    policy = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
    assert policy["connect-src"] == "'self'"
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    # The script and the style sheet are lnplugin's own files.
    for asset in re.findall(r'(?:src|href)="(/pay/static/[^"]+)"', reply.text):
        got = requests.get(server.url + asset, timeout=10)
        assert got.status_code == 200, asset


def test_error_pages_for_no_route_carry_the_policy_too(server: Server) -> None:
    """A path under /pay/ that no route matches, or a method none takes, got
    the pages' error page without the policy headers the others send."""
    inv = _invoice(server)
    for method, url in (
        ("GET", server.url + "/pay/a/b/c"),
        ("GET", server.url + "/pay/address/"),
        ("POST", inv["checkout_url"]),
        ("DELETE", server.url + "/pay/address/shop"),
    ):
        reply = requests.request(method, url, timeout=10)
        assert reply.status_code in (404, 405), (method, url)
        assert reply.headers["Content-Type"].startswith("text/html"), (method, url)
        assert reply.headers.get("Content-Security-Policy") == checkout.CSP, (method, url)
        assert reply.headers.get("X-Content-Type-Options") == "nosniff", (method, url)
        assert reply.headers.get("Referrer-Policy") == "no-referrer", (method, url)


def test_pages_name_their_own_icon(server: Server) -> None:
    """Without one, every page load asked for /favicon.ico and got a 404 (a
    console error in the payer's browser); the icon is the pages' own file."""
    inv = _invoice(server)
    page = requests.get(inv["checkout_url"], timeout=10).text
    found = re.search(r'<link rel="icon" type="image/svg\+xml" href="([^"]+)">', page)
    assert found is not None
    icon = requests.get(urllib.parse.urljoin(inv["checkout_url"], found.group(1)), timeout=10)
    assert icon.status_code == 200
    assert icon.headers["Content-Type"].startswith("image/svg+xml")
    assert icon.content.startswith(b"<svg")


def test_the_public_stream_tells_the_state_and_nothing_else(server: Server) -> None:
    inv = _invoice(server, **SECRETS)
    with requests.get(inv["checkout_url"] + "/events", stream=True, timeout=30) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        lines = stream.iter_lines(decode_unicode=True)
        first = _next_message(lines)
        assert first["event"] == "state" and json.loads(first["data"]) == {"state": "CREATED"}
        cli(server.data_dir, "dev", "pay", inv["payment_hash"])
        second = _next_message(lines)
        assert json.loads(second["data"]) == {"state": "SETTLED"}
        # Ids name the state: the outbox's sequence (every invoice's events) stays private.
        assert (first["id"], second["id"]) == ("created", "settled")
        assert list(lines) == []  # the stream ends after a final state
    # A reconnect after the end: 204, which stops EventSource.
    again = requests.get(
        inv["checkout_url"] + "/events", headers={"Last-Event-ID": second["id"]}, timeout=10
    )
    assert again.status_code == 204
    # A reconnect that missed the final state (cut off before it came) gets it.
    with requests.get(
        inv["checkout_url"] + "/events", headers={"Last-Event-ID": first["id"]}, timeout=10
    ) as missed:
        assert missed.status_code == 200
        lines = missed.iter_lines(decode_unicode=True)
        assert json.loads(_next_message(lines)["data"]) == {"state": "SETTLED"}
        assert list(lines) == []


def _next_message(lines: Iterator[str]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in lines:
        if not line:
            if "data" in fields:
                return fields
            continue
        if line.startswith(":"):
            continue
        key, _, value = line.partition(": ")
        fields[key] = value
    raise AssertionError(f"stream ended; got {fields}")


def test_an_expired_invoice_shows_expired(server: Server) -> None:
    inv = _invoice(server, expiry=1)
    wait_for(
        lambda: (
            server.request("GET", f"/invoices/{inv['payment_hash']}").json()["state"] == "EXPIRED"
        ),
        "the invoice to expire",
    )
    html = requests.get(inv["checkout_url"], timeout=10).text
    assert 'data-state="EXPIRED"' in html
    assert '<div id="pay" hidden>' in html


def test_unknown_ids_outgoing_payments_and_keysends_have_no_page(server: Server) -> None:
    for path in ("/pay/0123456789ab", "/pay/" + "f" * 44, "/pay/x%2F..%2Fy", "/pay/a/qr.png"):
        assert requests.get(server.url + path, timeout=10).status_code == 404, path
    keysend = server.request(
        "POST", "/dev/keysend", json={"amount_msat": 5000, "custom_records": {}}
    ).json()
    got = server.request("GET", f"/invoices/{keysend['payment_hash']}").json()
    assert got["qr_code_png"] is None and got["checkout_url"] is None


def test_an_address_page_mints_through_the_lnurl_callback(server: Server) -> None:
    reply = server.request(
        "POST",
        "/lightning_addresses",
        json={
            "username": "shop",
            "description": "The corner shop",
            "min_sendable_msat": 10_000,
            "max_sendable_msat": 1_000_000,
            "comment_allowed": 40,
        },
    )
    assert reply.status_code == 201, reply.text
    form = requests.get(server.url + "/pay/address/shop", timeout=10)
    assert form.status_code == 200
    assert "shop@127.0.0.1" in form.text and "The corner shop" in form.text
    assert 'min="10" max="1000"' in form.text

    too_much = requests.post(server.url + "/pay/address/shop", data={"amount": "5000"}, timeout=10)
    assert too_much.status_code == 400
    assert "Enter from 10 to 1,000 sats." in too_much.text
    not_a_number = requests.post(
        server.url + "/pay/address/shop", data={"amount": "1e3"}, timeout=10
    )
    assert not_a_number.status_code == 400
    too_long = requests.post(
        server.url + "/pay/address/shop", data={"amount": "21", "comment": "x" * 41}, timeout=10
    )
    assert too_long.status_code == 400 and "at most 40 characters" in too_long.text

    made = requests.post(
        server.url + "/pay/address/shop",
        data={"amount": "21", "comment": "for the bread"},
        allow_redirects=False,
        timeout=10,
    )
    assert made.status_code == 303
    page = requests.get(server.url + made.headers["Location"], timeout=10)
    assert "21 <span>sats</span>" in page.text and "for the bread" not in page.text
    minted = server.request("GET", "/invoices?items=1").json()[0]
    assert minted["lightning_address"] == "shop" and minted["comment"] == "for the bread"
    assert minted["checkout_url"].endswith(made.headers["Location"])
    # The same `h` as the callback gives: SHA-256 of the address's metadata.
    meta = requests.get(server.url + "/.well-known/lnurlp/shop", timeout=10).json()["metadata"]
    assert minted["description_hash"] == hashlib.sha256(meta.encode()).hexdigest()
    assert requests.get(server.url + "/pay/address/nobody", timeout=10).status_code == 404
    # Typed with a capital (a phone's keyboard): the same address's page.
    typed = requests.get(server.url + "/pay/address/Shop", timeout=10)
    assert typed.status_code == 200 and "shop@127.0.0.1" in typed.text


def test_an_address_page_asks_for_what_the_address_needs_in_words_for_people(
    server: Server,
) -> None:
    """A mandatory name was offered as "(optional)" and refused after the
    submit as "payerdata.name is mandatory"; a mandatory e-mail (which the
    form has no field for) the same way, after the payer filled it in."""
    for username, payer_data in (
        ("named", {"name": {"mandatory": True}}),
        ("mailed", {"name": {"mandatory": False}, "email": {"mandatory": True}}),
    ):
        made = server.request(
            "POST", "/lightning_addresses", json={"username": username, "payer_data": payer_data}
        )
        assert made.status_code == 201, made.text
    url = server.url + "/pay/address/"

    named = requests.get(url + "named", timeout=10).text
    assert "Your name</label>" in named and "Your name (optional)" not in named
    assert re.search(r'<input id="name"[^>]* required>', named)
    nameless = requests.post(url + "named", data={"amount": "5", "name": " "}, timeout=10)
    assert nameless.status_code == 400
    assert "Enter your name" in nameless.text and "payerdata" not in nameless.text
    paid = requests.post(
        url + "named", data={"amount": "5", "name": "Ann"}, allow_redirects=False, timeout=10
    )
    assert paid.status_code == 303

    mailed = requests.get(url + "mailed", timeout=10)
    assert mailed.status_code == 200
    assert "<form" not in mailed.text
    assert "asks for your e-mail address" in mailed.text and "Lightning wallet" in mailed.text
    refused = requests.post(url + "mailed", data={"amount": "5"}, timeout=10)
    assert refused.status_code == 400 and "Lightning wallet" in refused.text


def test_an_address_with_no_whole_sat_in_its_range_is_paid_from_a_wallet(
    server: Server,
) -> None:
    """From 1,500 to 1,800 msat no whole sat fits: the form asked for an
    amount "2 to 1" sats, which every submit was refused."""
    made = server.request(
        "POST",
        "/lightning_addresses",
        json={"username": "pennies", "min_sendable_msat": 1500, "max_sendable_msat": 1800},
    )
    assert made.status_code == 201, made.text
    page = requests.get(server.url + "/pay/address/pennies", timeout=10)
    assert page.status_code == 200
    assert "<form" not in page.text and "2 to 1" not in page.text
    assert "amounts between whole sats" in page.text and "Lightning wallet" in page.text
    refused = requests.post(server.url + "/pay/address/pennies", data={"amount": "2"}, timeout=10)
    assert refused.status_code == 400 and "Lightning wallet" in refused.text
    # A wallet pays it, in msat; the form minted nothing.
    paid = requests.get(server.url + "/lnurlp/pennies/callback?amount=1600", timeout=10)
    assert paid.status_code == 200, paid.text
    minted = server.request("GET", "/invoices", params={"q[lightning_address]": "pennies"})
    assert [row["payment_request"] for row in minted.json()] == [paid.json()["pr"]]


def test_behind_a_proxy_at_a_path_every_link_on_the_pages_keeps_the_path(
    tmp_path: Path,
) -> None:
    """`--public-url https://example.com/shop`: the proxy forwards `/shop/...`
    to lnplugin as `/...` (as requested here). The pages' own links (style
    sheet, script, state stream, refresh, form, redirect) went to `/pay/...`,
    the site's root, not lnplugin."""
    port = free_port()
    prefix = "/shop"
    args = ("--public-url", f"http://127.0.0.1:{port}{prefix}", "--port", str(port))
    with Server(tmp_path / "data", *args) as srv:
        inv = srv.request("POST", "/invoices", json={"amount": 21}).json()
        page_path = urllib.parse.urlsplit(inv["checkout_url"]).path
        assert page_path.startswith(prefix + "/pay/")
        page = requests.get(srv.url + page_path.removeprefix(prefix), timeout=10)
        assert page.status_code == 200
        links = re.findall(r'(?:href|src|action|data-events)="(/[^"]*)"', page.text)
        assert len(links) == 5, links  # css, icon, state stream, refresh, script
        for path in links:
            assert path.startswith(prefix + "/"), path
        for path in links:
            if not path.endswith("/events"):  # the rest are where the proxy sends them
                reply = requests.get(srv.url + path.removeprefix(prefix), timeout=10)
                assert reply.status_code == 200, path

        made = srv.request("POST", "/lightning_addresses", json={"username": "corner"})
        assert made.status_code == 201, made.text
        form = requests.get(srv.url + "/pay/address/corner", timeout=10)
        assert f'action="{prefix}/pay/address/corner"' in form.text
        posted = requests.post(
            srv.url + "/pay/address/corner",
            data={"amount": "5"},
            allow_redirects=False,
            timeout=10,
        )
        assert posted.status_code == 303
        minted = srv.request("GET", "/invoices?items=1").json()[0]
        assert posted.headers["Location"] == urllib.parse.urlsplit(minted["checkout_url"]).path


def test_without_a_public_url_there_are_no_links_and_no_pages(tmp_path: Path) -> None:
    with Server(tmp_path / "data") as srv:
        inv = srv.request("POST", "/invoices", json={"amount": 1}).json()
        assert inv["qr_code_png"] is None
        assert inv["qr_code_svg"] is None
        assert inv["checkout_url"] is None
        for path in ("/pay/0123", "/pay/address/alice"):
            reply = requests.get(srv.url + path, timeout=10)
            assert reply.status_code == 503
            assert reply.headers["Content-Type"].startswith("text/html")
            assert "--public-url" in reply.text


def test_rows_from_before_the_migration_get_a_128_bit_public_id(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite_utils.Database(sqlite3.connect(path))
    # the migration that adds public ids, whatever its number
    last = next(n for n, e in migrations.MIGRATIONS.items() if e[1].__name__ == "_public_ids")
    for number in sorted(migrations.MIGRATIONS):
        if number == last:
            break
        migrations.MIGRATIONS[number][1](db)
    db.execute(
        "INSERT INTO invoices (identifier, type, payment_hash, payment_request, state, "
        "created_at, expiry, expires_at) VALUES ('a', 'incoming', 'h1', 'lnbc1', 'OPEN', 1, 1, 2)"
    )
    db.execute(
        "INSERT INTO invoices (identifier, type, payment_hash, payment_request, state, "
        "created_at, expiry, expires_at) VALUES ('b', 'incoming', 'h2', 'lnbc2', 'OPEN', 1, 1, 2)"
    )
    migrations.MIGRATIONS[last][1](db)
    ids = [row[0] for row in db.execute("SELECT public_id FROM invoices")]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == 2


def test_public_streams_take_at_most_half_the_stream_slots(tmp_path: Path) -> None:
    port = free_port()
    args = ("--public-url", f"http://127.0.0.1:{port}", "--port", str(port))
    with Server(tmp_path / "data", *args, "--max-streams", "2") as srv:
        first = srv.request("POST", "/invoices", json={"amount": 1}).json()
        second = srv.request("POST", "/invoices", json={"amount": 2}).json()
        with requests.get(first["checkout_url"] + "/events", stream=True, timeout=30) as open_:
            assert open_.status_code == 200
            refused = requests.get(second["checkout_url"] + "/events", timeout=10)
            assert refused.status_code == 503
            # At least ours (5 s); flask-limiter raises it to its window's reset.
            assert int(refused.headers["Retry-After"]) >= 5
            assert "Too many open payment pages (limit 1)" in refused.text
            # The other half stays for the apps that hold tokens.
            api = srv.request("GET", f"/invoices/{second['payment_hash']}/events", stream=True)
            assert api.status_code == 200
            api.close()

        # Hung up: the public slot is free again.
        def reopened() -> requests.Response | None:
            reply = requests.get(second["checkout_url"] + "/events", stream=True, timeout=10)
            if reply.status_code == 200:
                return reply
            reply.close()
            return None

        wait_for(reopened, "the public slot to be freed").close()


def _stream_as(srv: Server, path: str, client: str) -> tuple[int, dict[str, str], socket.socket]:
    """Open `path` over a raw socket as `client` (the address a trusted proxy
    forwards): the status, the headers, and the socket, left open."""
    parts = urllib.parse.urlsplit(srv.url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: text/event-stream\r\n"
        f"X-Forwarded-For: {client}\r\n\r\n"
    )
    sock.sendall(request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, f"the server hung up before its headers: {head!r}"
        head += chunk
    lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), {k.lower(): v for k, v in headers.items()}, sock


def _refused_as(srv: Server, path: str, client: str) -> str:
    """The page the server refuses `client`'s stream with (503, Retry-After)."""
    headers = {"X-Forwarded-For": client}
    with requests.get(srv.url + path, headers=headers, stream=True, timeout=10) as reply:
        assert reply.status_code == 503, (client, reply.status_code)
        text = reply.text
    # At least ours (5 s); flask-limiter raises it to its window's reset.
    assert int(reply.headers["Retry-After"]) >= 5
    assert reply.headers["Content-Type"].startswith("text/html")
    return text


def test_one_client_cannot_hold_every_public_stream(tmp_path: Path) -> None:
    """One address (an IPv6 client: one /64) holds at most
    `STREAMS_PER_CLIENT` payment-page streams, so it cannot fill the public
    half of `--max-streams` and take every other payer's live update. Its
    count goes down whenever one of its streams ends: hung up, or final."""
    cap = checkout.STREAMS_PER_CLIENT
    port = free_port()
    args = ("--public-url", f"http://127.0.0.1:{port}", "--port", str(port), "--trust-proxy", "1")
    with Server(tmp_path / "data", *args, "--rate-limit", "1000/minute") as srv:
        unpaid = srv.request("POST", "/invoices", json={"amount": 1}).json()
        to_pay = srv.request("POST", "/invoices", json={"amount": 2}).json()
        path = urllib.parse.urlsplit(unpaid["checkout_url"]).path + "/events"
        paid_path = urllib.parse.urlsplit(to_pay["checkout_url"]).path + "/events"
        held: list[socket.socket] = []

        def admitted(client: str, at: str = path) -> socket.socket:
            status, headers, sock = _stream_as(srv, at, client)
            assert status == 200, (client, status)
            assert headers["content-type"].startswith("text/event-stream")
            return sock

        def admitted_again(client: str) -> socket.socket | None:
            status, _, sock = _stream_as(srv, path, client)
            if status == 200:
                return sock
            sock.close()
            return None

        try:
            held.append(admitted("203.0.113.7", paid_path))
            held += [admitted("203.0.113.7") for _ in range(cap - 1)]
            page = _refused_as(srv, path, "203.0.113.7")
            assert f"Too many open payment pages from your address (limit {cap})" in page
            # Every other payer's page still goes live; so do the apps' streams,
            # token streams not being counted per address, even from that one.
            held.append(admitted("203.0.113.8"))
            api = srv.request(
                "GET",
                f"/invoices/{unpaid['payment_hash']}/events",
                headers={"X-Forwarded-For": "203.0.113.7"},
                stream=True,
            )
            assert api.status_code == 200
            api.close()

            # Hung up: that client's slot is free again, and taken by the next.
            held.pop(1).close()
            held.append(wait_for(lambda: admitted_again("203.0.113.7"), "the slot to be freed"))
            _refused_as(srv, path, "203.0.113.7")

            # Final: the paid invoice's stream ends, and gives its slot back.
            cli(srv.data_dir, "dev", "pay", to_pay["payment_hash"])
            ended, sock = b"", held.pop(0)
            while not ended.endswith(b"0\r\n\r\n"):  # the chunked body's end
                chunk = sock.recv(4096)
                assert chunk, ended
                ended += chunk
            assert b'"SETTLED"' in ended
            sock.close()
            held.append(wait_for(lambda: admitted_again("203.0.113.7"), "the final's slot"))
            _refused_as(srv, path, "203.0.113.7")

            # An IPv6 client is counted by its /64, as the rate limit counts it.
            held += [admitted(f"2001:db8:1:2::{n + 1:x}") for n in range(cap)]
            _refused_as(srv, path, "2001:db8:1:2:ffff::1")
            held.append(admitted("2001:db8:1:3::1"))
        finally:
            for sock in held:
                sock.close()
