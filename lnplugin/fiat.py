"""Fiat prices: exchange rates from ticker APIs, and the integer conversion.

Why a median of several providers: any one ticker API can be down, rate
limited or briefly wrong; the median of those that answer ignores one bad
quote out of three. Rates are cached per currency for `--fiat-cache-ttl`
seconds, so creating invoices does not call the providers every time; when
no provider answers, the last rate keeps being used until it is older than
`--fiat-max-age`, and after that a fiat-priced invoice is refused (503)
rather than priced at a rate the operator never agreed to.

A provider is a name from `PRESETS` (well-known public APIs), or
`NAME=URL|PATH` for any other JSON API: `{currency}`/`{CURRENCY}` in the
URL and the path stand for the currency code in lower/upper case, and the
path walks the JSON (`data.amount`, `result.0.price`). A rate is a
`Decimal` of the currency's major units per bitcoin, read from the JSON as
text (numbers never go through a float). Requests go through the webhook
sender's guard: public addresses only, unless allowed with `--fiat-allow`.

Money is integers: an amount in a currency's minor units (ISO 4217
exponent, `MINOR_UNITS`) becomes msat by `to_msat`, rounded up so a payer
never pays less than the price.
"""

from __future__ import annotations

import json
import logging
import math
import re
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from typing import Any

from lnplugin import pinned_http
from lnplugin.ssrf import check_url

MAX_RESPONSE_BYTES = 64 * 1024  # a ticker answer is a few hundred bytes

log = logging.getLogger(__name__)

MSAT_PER_BTC = 100_000_000_000
# A bitcoin is worth more than one unit of any currency, and less than 10^13
# of the smallest-valued ones (IRR and VND quote around 10^9 to 10^10): a
# quote outside is a provider's error. Taken, it would price an invoice at
# next to nothing (a huge rate) or at millions of BTC (a tiny one), and with
# one or two providers the median would not outvote it.
MIN_RATE, MAX_RATE = Decimal(1), Decimal(10) ** 13
# A number as JSON writes one (no sign, no "_" separators, ASCII digits only),
# for quotes given as strings; Decimal alone would take "62_000" and "٦٢٠٠٠".
_NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")

# ISO 4217 minor-unit exponents. Codes not listed are refused rather than
# guessed: a wrong exponent prices an invoice 100 times off.
MINOR_UNITS: dict[str, int] = {
    **dict.fromkeys(
        [
            "AED",
            "ARS",
            "AUD",
            "BDT",
            "BGN",
            "BRL",
            "CAD",
            "CHF",
            "CNY",
            "COP",
            "CZK",
            "DKK",
            "EGP",
            "EUR",
            "GBP",
            "GHS",
            "HKD",
            "HUF",
            "IDR",
            "ILS",
            "INR",
            "KES",
            "KZT",
            "MAD",
            "MXN",
            "MYR",
            "NGN",
            "NOK",
            "NZD",
            "PEN",
            "PHP",
            "PKR",
            "PLN",
            "RON",
            "RUB",
            "SAR",
            "SEK",
            "SGD",
            "THB",
            "TRY",
            "TWD",
            "UAH",
            "USD",
            "UYU",
            "ZAR",
        ],
        2,
    ),
    **dict.fromkeys(["CLP", "ISK", "JPY", "KRW", "VND", "XAF", "XOF"], 0),
    **dict.fromkeys(["BHD", "JOD", "KWD", "OMR", "TND"], 3),
}

# Well-known public ticker APIs: (URL, JSON path). Field names are the APIs' own.
PRESETS: dict[str, tuple[str, str]] = {
    "coinbase": ("https://api.coinbase.com/v2/prices/BTC-{CURRENCY}/spot", "data.amount"),
    "coingecko": (
        "https://api.coingecko.com/api/v3/simple/price?ids=bitcoin&vs_currencies={currency}",
        "bitcoin.{currency}",
    ),
    "bitstamp": ("https://www.bitstamp.net/api/v2/ticker/btc{currency}/", "last"),
    "kraken": ("https://api.kraken.com/0/public/Ticker?pair=XBT{CURRENCY}", "result.*.c.0"),
    "mempool": ("https://mempool.space/api/v1/prices", "{CURRENCY}"),
    "blockchain": ("https://blockchain.info/ticker", "{CURRENCY}.last"),
}


class RatesUnavailable(Exception):
    """No rate recent enough for the currency; the message says why, and
    `retry_after` in how many seconds the providers are next asked (sooner,
    a retry would get the same answer)."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    url: str
    path: str

    def url_for(self, currency: str) -> str:
        return _fill(self.url, currency)

    def rate_from(self, document: Any, currency: str) -> Decimal:
        """The rate at `path` in a parsed JSON document; ValueError if absent or not positive."""
        node = document
        for step in _fill(self.path, currency).split("."):
            if isinstance(node, dict) and step == "*" and len(node) == 1:
                node = next(iter(node.values()))  # e.g. Kraken's pair key, which varies
            elif isinstance(node, dict) and step in node:
                node = node[step]
            elif isinstance(node, list) and step.isdigit() and int(step) < len(node):
                node = node[int(step)]
            else:
                raise ValueError(f"no {step!r} in the answer")
        text = str(node) if isinstance(node, (str, Decimal, int)) else ""
        if isinstance(node, bool) or not _NUMBER.fullmatch(text):
            raise ValueError(f"{node!r} is not a positive number")
        try:
            rate = Decimal(text)
        except InvalidOperation:
            raise ValueError(f"{node!r} is not a positive number") from None
        if not MIN_RATE <= rate <= MAX_RATE:
            raise ValueError(f"{node!r} per BTC is not a plausible rate (1 to 10^13)")
        return rate


def rate_text(rate: Decimal) -> str:
    """A rate as plain decimal text ("62000", never "6.2E+4"), exact."""
    return format(rate.normalize(), "f")


def _fill(template: str, currency: str) -> str:
    return template.replace("{currency}", currency.lower()).replace("{CURRENCY}", currency.upper())


def parse_provider(spec: str) -> Provider:
    """A preset's name, or `NAME=URL|PATH`; ValueError naming what is wrong."""
    spec = spec.strip()
    if spec in PRESETS:
        return Provider(spec, *PRESETS[spec])
    name, eq, rest = spec.partition("=")
    url, bar, path = rest.rpartition("|")
    if not eq or not bar or not name or not path:
        raise ValueError(
            f"{spec!r} is neither a known provider ({', '.join(PRESETS)}) nor NAME=URL|JSON.PATH"
        )
    try:
        # The sender's own check (port, host, no spaces): a URL it cannot use
        # would otherwise start, then answer every fiat create with 503.
        check_url(_fill(url, "usd"))
    except ValueError as exc:
        raise ValueError(f"{spec!r}: the URL {exc}") from None
    return Provider(name, url, path)


@dataclass(frozen=True, slots=True)
class Rate:
    value: Decimal  # major units of the currency per BTC
    source: str  # the providers it is the median of, e.g. "median of coinbase, kraken"
    at: float  # unix time it was fetched


Fetch = Callable[[str], bytes]


def guarded_get(allow: Sequence[str]) -> Fetch:
    """A GET through the same SSRF guard as webhooks (`pinned_http`): the name
    is resolved once, the address checked (public only, or in `allow`), and
    the connection goes to exactly that address. Redirects are not followed;
    the body is capped."""

    def get(url: str) -> bytes:
        try:
            response = pinned_http.request(
                "GET",
                url,
                allow=allow,
                headers={"accept": "application/json"},
                max_body=MAX_RESPONSE_BYTES,
            )
        except pinned_http.Failed as exc:
            raise ValueError(str(exc)) from None
        if response.status != 200:
            raise ValueError(f"HTTP {response.status}")
        return response.body

    return get


class FiatRates:
    """The cached median rate per currency (thread-safe)."""

    def __init__(
        self,
        providers: Sequence[Provider],
        *,
        cache_ttl: float = 60.0,
        max_age: float = 600.0,
        fetch: Fetch | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.providers = tuple(providers)
        self.cache_ttl = cache_ttl
        self.max_age = max_age
        self._fetch = fetch or guarded_get(())
        self._clock = clock
        self._cache: dict[str, Rate] = {}
        self._tried: dict[str, float] = {}  # currency -> when the providers were last asked
        # One lock per currency: a fetch (which may wait for a slow provider's
        # timeout) holds up creates in its own currency only, not a BTC
        # invoice's display price or another currency's cached rate.
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        # A thread per provider for each currency that may be fetched at once
        # (started only when needed): a provider hanging on one currency's
        # fetch must not hold another currency's turn to ask it.
        self._pool = ThreadPoolExecutor(
            max(1, len(self.providers)) * len(MINOR_UNITS), "lnplugin-fiat"
        )

    @property
    def enabled(self) -> bool:
        return bool(self.providers)

    def rate(self, currency: str) -> Rate:
        """The rate for `currency`, fetched if the cached one is older than the TTL.

        Raises RatesUnavailable when there are no providers, or none has
        answered for longer than `max_age`.
        """
        currency = currency.upper()
        if not self.providers:
            raise RatesUnavailable("fiat pricing is off: no --fiat-provider is configured")
        with self._locks_lock:
            lock = self._locks.setdefault(currency, threading.Lock())
        with lock:  # one fetch per currency at a time; others wait for its result
            now = self._clock()
            cached = self._cache.get(currency)
            # Ask again once the TTL has passed since the last attempt, answered or not,
            # so a provider outage does not make every create wait for timeouts.
            if now - self._tried.get(currency, float("-inf")) >= self.cache_ttl:
                self._tried[currency] = now
                fresh = self._fetch_median(currency, now)
                if fresh is not None:
                    self._cache[currency] = cached = fresh
            next_ask = self._tried[currency] + self.cache_ttl
        if cached is None or now - cached.at > self.max_age:
            why = "no provider answered" if cached is None else "every rate is too old"
            wait = max(1, math.ceil(next_ask - now))
            raise RatesUnavailable(
                f"no {currency} rate is available: {why} (providers: "
                f"{', '.join(p.name for p in self.providers)}); they are asked again "
                f"in {wait} s",
                wait,
            )
        return cached

    def _fetch_median(self, currency: str, now: float) -> Rate | None:
        def one(provider: Provider) -> Decimal:
            raw = self._fetch(provider.url_for(currency))
            document = json.loads(raw, parse_float=Decimal, parse_int=Decimal)
            return provider.rate_from(document, currency)

        futures = [(p, self._pool.submit(one, p)) for p in self.providers]
        answered: list[tuple[str, Decimal]] = []
        for provider, future in futures:
            try:
                answered.append((provider.name, future.result()))
            except Exception as exc:
                # Whatever a provider's failure (a network error, or an answer
                # no parser takes: JSON nested past the recursion limit, an
                # exponent no Decimal holds), it is left out, never a 500.
                log.warning(
                    "fiat rate provider %s (%s): %s: %s",
                    provider.name,
                    currency,
                    exc.__class__.__name__,
                    str(exc)[:200],
                )
        if not answered:
            return None
        value = statistics.median(rate for _, rate in answered)
        names = ", ".join(name for name, _ in answered)
        return Rate(Decimal(value), f"median of {names}", now)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def exponent(currency: str) -> int:
    """The ISO 4217 minor-unit exponent; KeyError for a code not in `MINOR_UNITS`."""
    return MINOR_UNITS[currency.upper()]


def format_minor(minor: int, currency: str) -> str:
    """`minor` units of `currency` for people: `"1,234.50 USD"`, `"500 JPY"`.

    Integer arithmetic on the exponent, so no amount passes through a float;
    the ISO code rather than a symbol, which would need the reader's locale
    (and "$" alone does not say which dollar). KeyError for an unknown code.
    """
    places = exponent(currency)
    whole, part = divmod(minor, 10**places)
    digits = f"{whole:,}" + (f".{part:0{places}d}" if places else "")
    return f"{digits} {currency.upper()}"


def to_msat(minor: int, currency: str, rate: Decimal) -> int:
    """`minor` units of `currency` in msat at `rate` (major units per BTC), rounded up."""
    with localcontext() as ctx:
        ctx.prec = 60
        msat = Decimal(minor) * MSAT_PER_BTC / (Decimal(10) ** exponent(currency) * rate)
        return int(msat.to_integral_value(rounding=ROUND_CEILING))


def to_minor(msat: int, currency: str, rate: Decimal) -> int:
    """`msat` in minor units of `currency` at `rate`, rounded half to even."""
    with localcontext() as ctx:
        ctx.prec = 60
        minor = Decimal(msat) * rate * Decimal(10) ** exponent(currency) / MSAT_PER_BTC
        return int(minor.to_integral_value(rounding=ROUND_HALF_EVEN))
