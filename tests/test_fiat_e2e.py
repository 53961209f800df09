"""Fiat-priced invoices end to end: `lnplugin serve` as a process, its rate
providers local ticker servers (one of them off), reached over real HTTP
through the SSRF guard with `--fiat-allow`.

USD is priced at the median of 60000 and 64000 (62000) and EUR at 50000;
the display currency is EUR.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import bolt11 as reference
import pytest
import requests

from lnplugin import fiat
from tests.e2e import Server
from tests.helpers_tickers import Ticker, closed_port


@pytest.fixture(scope="module")
def tickers() -> Iterator[list[Ticker]]:
    made = [
        Ticker({"usd": {"rate": "60000"}, "eur": {"rate": "50000"}}),
        Ticker({"usd": {"rate": "64000"}}),
    ]
    yield made
    for t in made:
        t.close()


def providers(tickers: list[Ticker]) -> list[str]:
    off = f"off=http://127.0.0.1:{closed_port()}/{{currency}}|rate"
    out: list[str] = []
    for spec in [tickers[0].provider("one"), tickers[1].provider("two"), off]:
        out += ["--fiat-provider", spec]
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tickers: list[Ticker]) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("fiat") / "data"
    args = (*providers(tickers), "--fiat-allow", "127.0.0.1/32", "--display-currency", "eur")
    with Server(data, *args) as srv:
        yield srv


def test_a_usd_price_becomes_msat_at_the_median_rate(server: Server) -> None:
    reply = server.request(
        "POST", "/invoices", json={"currency": "USD", "amount": 250, "description": "coffee"}
    )
    assert reply.status_code == 201, reply.text
    inv = reply.json()
    expected = fiat.to_msat(250, "USD", Decimal(62000))  # $2.50 at $62,000
    assert inv["amount_msat"] == expected == 4_032_259
    assert reference.decode(inv["payment_request"]).amount_msat == expected
    assert inv["expiry"] == 600  # fiat invoices' shorter default
    price = inv["price"]
    assert price["currency"] == "USD" and price["amount"] == 250
    assert Decimal(price["rate"]) == 62000 and price["rate_source"] == "median of one, two"
    assert price["rate_at"] is not None
    # Display in EUR at 50000: the msat back in cents.
    assert inv["fiat_currency"] == "EUR"
    assert inv["fiat_in_cents"] == fiat.to_minor(expected, "EUR", Decimal(50000)) == 202
    again = server.request("GET", "/invoices/" + inv["payment_hash"]).json()
    assert again["price"] == price and again["fiat_in_cents"] == 202


def test_an_explicit_expiry_wins_and_a_btc_invoice_gets_the_display_price(server: Server) -> None:
    inv = server.request(
        "POST", "/invoices", json={"currency": "usd", "amount": 100, "expiry": 3600}
    ).json()
    assert inv["expiry"] == 3600
    btc = server.request("POST", "/invoices", json={"amount": 10_000}).json()
    assert btc["price"] is None and btc["expiry"] == 86400
    assert btc["fiat_currency"] == "EUR" and btc["fiat_in_cents"] == 500  # 10k sat at 50k EUR


def test_items_add_up_to_the_amount_and_are_returned(server: Server) -> None:
    items = [
        {"description": "espresso", "unit_price": 150, "quantity": 2},
        {"description": "croissant", "unit_price": 200},
    ]
    inv = server.request("POST", "/invoices", json={"currency": "EUR", "items": items}).json()
    assert inv["price"]["amount"] == 500 and inv["fiat_in_cents"] == 500
    assert inv["amount_msat"] == fiat.to_msat(500, "EUR", Decimal(50000)) == 10_000_000
    assert inv["items"] == [items[0], {**items[1], "quantity": 1}]
    sats = server.request(
        "POST", "/invoices", json={"items": [{"description": "a", "unit_price": 21}]}
    )
    assert sats.json()["amount_msat"] == 21_000


def test_bad_fiat_bodies_get_a_reason_per_field(server: Server) -> None:
    cases = [
        ({"currency": "USD", "amount_msat": 1000}, "amount_msat"),
        ({"currency": "USD", "amount": 0}, "amount"),
        ({"currency": "XYZ", "amount": 1}, "currency"),
        (
            {"currency": "USD", "amount": 5, "items": [{"description": "a", "unit_price": 4}]},
            "items",
        ),
        (
            {"currency": "USD", "items": [{"description": "a", "unit_price": 1, "quantity": 0}]},
            "items.0.quantity",
        ),
    ]
    for body, field in cases:
        reply = server.request("POST", "/invoices", json=body)
        assert reply.status_code == 400, (body, reply.text)
        assert field in reply.json()["errors"], (body, reply.json())


def test_a_currency_no_provider_prices_is_a_503(server: Server) -> None:
    reply = server.request("POST", "/invoices", json={"currency": "GBP", "amount": 100})
    assert reply.status_code == 503
    assert "no GBP rate" in reply.json()["message"] and reply.headers["Retry-After"]


def test_once_every_rate_is_too_old_fiat_creates_are_refused(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Max age 0 and no cache: the rate fetched for a create is just young
    enough for it; with every provider down the next create has none."""
    ticker = Ticker({"usd": {"rate": "60000"}})
    data = tmp_path_factory.mktemp("stale") / "data"
    args = (
        "--fiat-provider",
        ticker.provider("only"),
        "--fiat-allow",
        "127.0.0.1/32",
        "--fiat-cache-ttl",
        "0",
        "--fiat-max-age",
        "0",
    )
    try:
        with Server(data, *args) as srv:
            body = {"currency": "USD", "amount": 100}
            assert srv.request("POST", "/invoices", json=body).status_code == 201
            ticker.down = True
            refused = srv.request("POST", "/invoices", json=body)
            assert refused.status_code == 503
            assert "every rate is too old" in refused.json()["message"]
            assert srv.request("POST", "/invoices", json={"amount": 1}).status_code == 201
    finally:
        ticker.close()


def test_without_providers_fiat_pricing_is_off_and_fiat_fields_stay_null(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with Server(tmp_path_factory.mktemp("nofiat") / "data") as srv:
        # A setting, not an outage: 400 naming the field, no Retry-After to wait out.
        reply = srv.request("POST", "/invoices", json={"currency": "USD", "amount": 100})
        assert reply.status_code == 400 and "Retry-After" not in reply.headers
        assert "--fiat-provider" in reply.json()["errors"]["currency"]
        inv = srv.request("POST", "/invoices", json={"amount": 1}).json()
        assert inv["fiat_currency"] is None and inv["fiat_in_cents"] is None


def test_a_provider_answering_garbage_is_left_out_not_a_500(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """JSON nested past Python's recursion limit, and a number whose exponent
    no Decimal holds, are a provider's garbage like any other: left out, so
    the others' median prices the invoice, and with none left a 503."""
    good = Ticker({"usd": {"rate": "60000"}})
    nested = Ticker({"usd": b"[" * 60_000, "gbp": b"[" * 60_000})
    huge = Ticker({"usd": b'{"rate": 1e999999999999999999999}', "gbp": b'{"rate": 1e99999999999}'})
    spec = [good.provider("good"), nested.provider("nested"), huge.provider("huge")]
    args = [arg for s in spec for arg in ("--fiat-provider", s)]
    try:
        with Server(
            tmp_path_factory.mktemp("garbage") / "data", *args, "--fiat-allow", "127.0.0.1/32"
        ) as srv:
            priced = srv.request("POST", "/invoices", json={"currency": "USD", "amount": 100})
            assert priced.status_code == 201, priced.text
            assert priced.json()["price"]["rate_source"] == "median of good"
            none = srv.request("POST", "/invoices", json={"currency": "GBP", "amount": 100})
            assert none.status_code == 503, none.text
            assert "no GBP rate" in none.json()["message"]
    finally:
        for t in (good, nested, huge):
            t.close()


def test_retry_after_says_when_the_providers_are_next_asked(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """After a failed round the providers are not asked again for
    --fiat-cache-ttl seconds: a client told to come back sooner would only
    get the same 503."""
    ticker = Ticker({})
    args = ("--fiat-provider", ticker.provider("only"), "--fiat-allow", "127.0.0.1/32")
    try:
        with Server(
            tmp_path_factory.mktemp("retry") / "data", *args, "--fiat-cache-ttl", "3600"
        ) as srv:
            body = {"currency": "USD", "amount": 100}
            first = srv.request("POST", "/invoices", json=body)
            assert first.status_code == 503
            assert 3000 < int(first.headers["Retry-After"]) <= 3600
            ticker.answers["usd"] = {"rate": "60000"}  # back, but not asked before the TTL
            again = srv.request("POST", "/invoices", json=body)
            assert again.status_code == 503 and int(again.headers["Retry-After"]) > 3000
        with Server(
            tmp_path_factory.mktemp("retry0") / "data", *args, "--fiat-cache-ttl", "0"
        ) as srv:
            ticker.answers.clear()
            refused = srv.request("POST", "/invoices", json=body)
            assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    finally:
        ticker.close()


@pytest.mark.parametrize("ttl", ["60", "0"])
def test_a_hanging_provider_holds_up_only_its_own_currency(
    tmp_path_factory: pytest.TempPathFactory, ttl: str
) -> None:
    """While the USD providers are asked (and one hangs), a BTC invoice (with
    a EUR display price) and a EUR-priced one are made at once: they do not
    queue behind another currency's fetch, whether the EUR rate is cached
    (TTL 60) or asked for again (TTL 0) of the same provider."""
    ticker = Ticker({"usd": {"rate": "60000"}, "eur": {"rate": "50000"}})
    ticker.held.add("usd")
    args = (
        "--fiat-provider",
        ticker.provider("only"),
        "--fiat-allow",
        "127.0.0.1/32",
        "--display-currency",
        "EUR",
        "--fiat-cache-ttl",
        ttl,
    )
    usd: list[Any] = []
    try:
        with Server(tmp_path_factory.mktemp("hang") / "data", *args) as srv:
            assert srv.request("POST", "/invoices", json={"amount": 1}).status_code == 201
            auth = {"Authorization": f"Bearer {srv.token}"}
            waiting = threading.Thread(
                target=lambda: usd.append(
                    requests.post(
                        srv.url + "/invoices",
                        json={"currency": "USD", "amount": 100},
                        headers=auth,
                        timeout=60,
                    )
                )
            )
            waiting.start()
            assert ticker.asked.wait(30)
            btc = srv.request("POST", "/invoices", json={"amount": 10_000})
            eur = srv.request("POST", "/invoices", json={"currency": "EUR", "amount": 100})
            # Both answered while the USD create still waits on its provider.
            assert waiting.is_alive() and not usd
            assert btc.status_code == 201 and btc.json()["fiat_in_cents"] == 500
            assert eur.status_code == 201, eur.text
            ticker.release.set()
            waiting.join(30)
            assert usd[0].status_code == 201, usd[0].text
    finally:
        ticker.close()
