"""Whatever the input, `decode` returns an Invoice or raises Bolt11Error, never anything else.

Inputs: arbitrary text; mutations of valid invoices (flipped characters, truncation, insertion,
case changes, huge lengths, prefixes); mutations with the checksum recomputed, so the field
parser sees garbage; and random tagged fields that are checksummed and correctly signed, so the
signature path and every field rule are reached.

Example count: env LNPLUGIN_HYPOTHESIS_EXAMPLES (default 500 per test).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from coincurve import PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lnplugin import bolt11 as b11
from lnplugin.bolt11 import MAX_INVOICE_LENGTH, Bolt11Error, Invoice, decode, encode

EXAMPLES = int(os.environ.get("LNPLUGIN_HYPOTHESIS_EXAMPLES", "500"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
KEY = bytes.fromhex("e126f68f7eafcc8b74f54d269fe206be715000f94dac067d1c04a8ca3b2db734")

_VECTORS = json.loads((Path(__file__).parent / "fixtures" / "bolt11_vectors.json").read_text())
SEEDS = [v["invoice"] for v in _VECTORS["vectors"]] + [
    encode(
        currency=cur, amount_msat=amt, timestamp=1_700_000_000, payment_hash="ab" * 32,
        payment_secret="cd" * 32, private_key=KEY, description=desc, expiry=600,
        min_final_cltv_expiry_delta=40, features=(8, 14, 16, 99),
        route_hints=[[b11.RouteHop("02" + "11" * 32, "800000x12x1", 1000, 100, 144)]],
        payment_metadata="00ff",
    )
    for cur, amt, desc in [("bc", None, ""), ("tb", 1, "x"), ("tbs", 10**9, "ü"), ("bcrt", 7, "d")]
]  # fmt: skip


def _decodes_or_raises_bolt11error(text: str) -> None:
    try:
        result = decode(text)
    except Bolt11Error as e:
        assert e.reason and str(e) == e.reason
    else:
        assert isinstance(result, Invoice)


def _rechecksum(text: str) -> str:
    """Replace the last six characters with a valid bech32 checksum for the rest."""
    pos = text.rfind("1")
    hrp, data = text[:pos].lower(), text[pos + 1 : -6].lower()
    if pos < 1 or not hrp.isascii() or any(c not in CHARSET for c in data):
        return text
    value = int(
        "".join("0123456789abcdefghijklmnopqrstuv"[CHARSET.index(c)] for c in data) or "0", 32
    )
    return b11._bech32_encode(hrp, value, len(data), 1)


@SETTINGS
@given(st.text(max_size=400))
def test_arbitrary_text(text: str) -> None:
    _decodes_or_raises_bolt11error(text)


@SETTINGS
@given(st.text(alphabet="lnbcrtsmupLNBC1" + CHARSET + CHARSET.upper(), max_size=600))
def test_bech32_looking_text(text: str) -> None:
    _decodes_or_raises_bolt11error(text)
    _decodes_or_raises_bolt11error(_rechecksum(text))


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.characters()),
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.sampled_from(CHARSET + "1")),
    st.tuples(st.just("cut"), st.integers(0, 10**6), st.none()),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.sampled_from(CHARSET + "1 _-")),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.none()),
    st.tuples(st.just("swapcase"), st.integers(0, 10**6), st.none()),
    st.tuples(st.just("upper"), st.integers(0, 10**6), st.none()),
    st.tuples(st.just("repeat"), st.integers(1, 40), st.none()),
    st.tuples(
        st.just("prefix"),
        st.integers(0, 10**6),
        st.sampled_from(["lightning:", "LIGHTNING:", "lightning://", " "]),
    ),
)


def _mutate(text: str, op: str, where: int, arg: object) -> str:
    i = where % (len(text) + 1)
    if op == "flip" and text:
        i %= len(text)
        return text[:i] + str(arg) + text[i + 1 :]
    if op == "cut":
        return text[:i]
    if op == "insert":
        return text[:i] + str(arg) + text[i:]
    if op == "delete":
        return text[:i] + text[i + 1 :]
    if op == "swapcase" and text:
        i %= len(text)
        return text[:i] + text[i].swapcase() + text[i + 1 :]
    if op == "upper":
        return text.upper()
    if op == "repeat":
        return text * where
    if op == "prefix":
        return str(arg) + text
    return text


@SETTINGS
@given(st.sampled_from(SEEDS), st.lists(mutation, min_size=1, max_size=4), st.booleans())
def test_mutated_invoices(seed: str, ops: list, rechecksum: bool) -> None:
    text = seed
    for op, where, arg in ops:
        text = _mutate(text, op, where, arg)
    if rechecksum:
        text = _rechecksum(text)
    _decodes_or_raises_bolt11error(text)


def _signed(hrp: str, body: list[int]) -> str:
    value = 0
    for v in body:
        value = value << 5 | v
    pad = -5 * len(body) % 8
    digest = hashlib.sha256(
        hrp.encode() + (value << pad).to_bytes((5 * len(body) + pad) // 8, "big")
    ).digest()
    sig = PrivateKey(KEY).sign_recoverable(digest, hasher=None)
    return b11._bech32_encode(hrp, value << 520 | int.from_bytes(sig, "big"), len(body) + 104, 1)


field = st.tuples(
    st.sampled_from(list(range(32)) + [1, 16, 13, 23, 19, 6, 24, 9, 3, 5, 27] * 3),
    st.one_of(
        st.integers(0, 12), st.sampled_from([51, 52, 53, 54, 82, 164, 408]), st.integers(0, 1023)
    ),
    st.randoms(use_true_random=False),
)


@SETTINGS
@given(
    st.sampled_from(["lnbc", "lntb", "lntbs", "lnbcrt", "lnbc2500u", "lnbc10p", "lnsb", "ln"]),
    st.lists(field, max_size=8),
    st.booleans(),
)
def test_signed_random_fields(hrp: str, fields: list, with_required: bool) -> None:
    body = [0, 1, 2, 3, 4, 5, 6]  # timestamp
    if with_required:  # valid p, s and d so that later rules get exercised
        body += [1, 1, 20] + [0] * 52 + [16, 1, 20] + [0] * 52 + [13, 0, 0]
    for tag, length, rnd in fields:
        body += [tag, length >> 5, length & 31] + [rnd.randrange(32) for _ in range(length)]
    if 7 + len(body) + 104 + 6 > MAX_INVOICE_LENGTH:
        body = body[:2000]
    _decodes_or_raises_bolt11error(_signed(hrp, body))


def test_huge_inputs_are_rejected_cheaply() -> None:
    for text in (SEEDS[0] * 50, "1" * 10**6, "lnbc1" + "q" * 10**6):
        _decodes_or_raises_bolt11error(text)
