"""Fiat rates and conversion: the median of local ticker servers over real
HTTP, one provider down, every rate too old, the SSRF guard, the presets'
JSON paths, and the integer conversion between minor units and msat.

Time is the `clock` FiatRates is given, so the cache and age limits are
tested without sleeping.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from lnplugin import fiat
from lnplugin.fiat import FiatRates, RatesUnavailable, guarded_get, parse_provider
from tests.helpers_tickers import Ticker, closed_port

LOCAL = guarded_get(["127.0.0.0/8"])


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def tickers() -> Iterator[list[Ticker]]:
    made = [
        Ticker({"usd": {"rate": "60000.10"}, "eur": {"rate": 55000}}),
        Ticker({"usd": {"rate": 62000.5}}),
        Ticker({"usd": {"rate": "100000"}}),
    ]
    yield made
    for t in made:
        t.close()


def rates(providers: list[str], clock: Clock, **kw: float) -> FiatRates:
    return FiatRates([parse_provider(p) for p in providers], fetch=LOCAL, clock=clock, **kw)


def test_the_rate_is_the_median_of_the_providers_that_answer(tickers: list[Ticker]) -> None:
    clock = Clock()
    book = rates([t.provider(f"p{i}") for i, t in enumerate(tickers)], clock)
    rate = book.rate("usd")
    assert rate.value == Decimal("62000.5")  # read as text: no float on the way
    assert rate.source == "median of p0, p1, p2" and rate.at == clock.now


def test_a_provider_that_is_down_is_left_out(tickers: list[Ticker]) -> None:
    tickers[2].down = True
    off = f"off=http://127.0.0.1:{closed_port()}/{{currency}}|rate"
    book = rates(
        [tickers[0].provider("a"), tickers[1].provider("b"), tickers[2].provider("c"), off], Clock()
    )
    rate = book.rate("USD")
    assert rate.value == (Decimal("60000.10") + Decimal("62000.5")) / 2
    assert rate.source == "median of a, b"


def test_the_cached_rate_serves_until_the_ttl_then_until_the_max_age_then_503(
    tickers: list[Ticker],
) -> None:
    clock = Clock()
    book = rates([tickers[0].provider("a")], clock, cache_ttl=60, max_age=600)
    first = book.rate("eur")
    hits = tickers[0].hits
    clock.now += 59
    assert book.rate("eur") == first and tickers[0].hits == hits  # cached: not asked
    tickers[0].answers["eur"] = {"rate": 56000}
    clock.now += 2
    assert book.rate("eur").value == 56000 and tickers[0].hits == hits + 1
    tickers[0].down = True
    clock.now += 500
    assert book.rate("eur").value == 56000  # every provider down, the rate still young enough
    clock.now += 101
    with pytest.raises(RatesUnavailable, match="every rate is too old"):
        book.rate("eur")
    tickers[0].down = False
    clock.now += 60
    assert book.rate("eur").value == 56000 and book.rate("eur").at == clock.now


def test_no_answer_at_all_and_no_providers_are_refused(tickers: list[Ticker]) -> None:
    with pytest.raises(RatesUnavailable, match="no provider answered"):
        rates([tickers[1].provider("b")], Clock()).rate("eur")  # b has no EUR
    with pytest.raises(RatesUnavailable, match="no --fiat-provider"):
        FiatRates([]).rate("usd")


def test_loopback_providers_need_an_explicit_allow(tickers: list[Ticker]) -> None:
    book = FiatRates([parse_provider(tickers[0].provider("a"))], fetch=guarded_get(()))
    with pytest.raises(RatesUnavailable):
        book.rate("usd")
    assert tickers[0].hits == 0  # refused before connecting


def test_answers_that_are_not_positive_numbers_are_ignored(tickers: list[Ticker]) -> None:
    tickers[0].answers["usd"] = {"rate": "-5"}
    tickers[1].answers["usd"] = {"rate": True}
    tickers[2].answers["usd"] = {"price": 1}
    with pytest.raises(RatesUnavailable):
        rates([t.provider(f"p{i}") for i, t in enumerate(tickers)], Clock()).rate("usd")


@pytest.mark.parametrize(
    "quote",
    ["1e300", "1E+400", 10**23, "1e-300", "0.000001", "62_000", "٦٢٠٠٠", "+62000", " 62000"],
)
def test_a_quote_outside_what_a_bitcoin_can_be_worth_or_not_plainly_a_number_is_refused(
    quote: object,
) -> None:
    # With one or two providers the median would not outvote it: 1e300 priced
    # 100 EUR at 1 msat, 1e-300 at millions of BTC.
    provider = fiat.parse_provider("p=http://127.0.0.1:1/x|rate")
    with pytest.raises(ValueError):
        provider.rate_from({"rate": quote}, "usd")


def test_a_rate_is_shown_as_plain_decimal_text() -> None:
    provider = fiat.parse_provider("p=http://127.0.0.1:1/x|rate")
    rate = provider.rate_from(fiat_json({"rate": 6.2e4}), "usd")
    assert fiat.rate_text(rate) == "62000"
    assert fiat.rate_text(Decimal("61000.120")) == "61000.12"


# Shapes of the presets' answers (their field names, made-up numbers).
PRESET_ANSWERS = {
    "coinbase": {"data": {"amount": "61000.12", "base": "BTC", "currency": "USD"}},
    "coingecko": {"bitcoin": {"usd": 61000.12}},
    "bitstamp": {"last": "61000.12", "bid": "60999", "ask": "61001"},
    "kraken": {"error": [], "result": {"XXBTZUSD": {"c": ["61000.12", "0.01"], "v": ["1", "2"]}}},
    "mempool": {"time": 1800000000, "USD": 61000.12, "EUR": 56000},
    "blockchain": {"USD": {"15m": 61001, "last": 61000.12, "symbol": "USD"}},
}


@pytest.mark.parametrize("name", sorted(fiat.PRESETS))
def test_each_preset_reads_its_api_answer(name: str) -> None:
    provider = parse_provider(name)
    assert provider.rate_from(fiat_json(PRESET_ANSWERS[name]), "usd") == Decimal("61000.12")
    assert "{" not in provider.url_for("usd") and provider.url_for("usd").startswith("https://")


def fiat_json(document: object) -> object:
    import json

    return json.loads(json.dumps(document), parse_float=Decimal, parse_int=Decimal)


@pytest.mark.parametrize(
    "spec", ["nope", "x=ftp://a/b|rate", "x=http://a/b", "=http://a|rate", "x=http://a/|"]
)
def test_unusable_provider_settings_are_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_provider(spec)


def test_minor_units_convert_to_msat_rounding_up_and_back() -> None:
    assert fiat.to_msat(100, "USD", Decimal(50000)) == 2_000_000  # $1 at $50k = 2000 sat
    assert fiat.to_msat(1, "USD", Decimal(30000)) == 33_334  # 33333.33.. rounded up
    assert fiat.to_msat(100, "JPY", Decimal(10_000_000)) == 1_000_000  # no minor unit
    assert fiat.to_msat(1000, "KWD", Decimal(20000)) == 5_000_000  # three decimals
    assert fiat.to_minor(2_000_000, "USD", Decimal(50000)) == 100
    assert fiat.to_minor(33_334, "USD", Decimal(30000)) == 1
    with pytest.raises(KeyError):
        fiat.to_msat(1, "XYZ", Decimal(1))


def test_minor_units_are_formatted_with_the_currency_exponent() -> None:
    assert fiat.format_minor(250, "usd") == "2.50 USD"
    assert fiat.format_minor(5, "EUR") == "0.05 EUR"
    assert fiat.format_minor(123_456_789, "EUR") == "1,234,567.89 EUR"
    assert fiat.format_minor(500, "JPY") == "500 JPY"  # no minor unit
    assert fiat.format_minor(1234, "KWD") == "1.234 KWD"  # thousandths
    with pytest.raises(KeyError):
        fiat.format_minor(1, "XYZ")


def test_fiat_settings_from_the_environment_and_their_errors() -> None:
    from lnplugin.config import ConfigError, load_settings

    env = {
        "LNPLUGIN_FIAT_PROVIDER": "coinbase  x=https://r.example/a,b/{currency}|data.rate",
        "LNPLUGIN_DISPLAY_CURRENCY": "eur",
        "LNPLUGIN_TOKEN_RATE_LIMIT": "10/second;500/hour",
    }
    settings = load_settings({}, environ=env)
    assert settings.fiat_provider == ("coinbase", "x=https://r.example/a,b/{currency}|data.rate")
    assert settings.display_currency == "EUR"
    with pytest.raises(ConfigError, match=r"fiat_provider .*'nope' is neither"):
        load_settings({"fiat_provider": ("nope",)}, environ={})
    with pytest.raises(ConfigError, match="display_currency"):
        load_settings({"display_currency": "XYZ"}, environ={})
    with pytest.raises(ConfigError, match="token_rate_limit"):
        load_settings({"token_rate_limit": "lots"}, environ={})
