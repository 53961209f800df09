"""Our decoder against the `bolt11` PyPI package, on invoices the package itself encodes.

Hypothesis builds an invoice (networks bc/tb/tbs/bcrt, amounts from none to 21M BTC, d or h,
x and c, route hints, fallbacks, features, metadata, with or without n), the package encodes and
signs it with a random key, and both decoders read it back. Every field must agree with the
package and with what was generated, except where the spec makes the package wrong. Those
exceptions are normalised in `_package_view` and each has its own test below:

1. fee_base_msat / fee_proportional_millionths >= 2**31 and cltv_expiry_delta >= 2**15 come back
   negative from the package (it reads them as signed integers).
2. An r field whose hop count is a multiple of 5 loses its last hop in the package (off-by-one
   in its loop bound).
3. The package keeps only the first f field; the spec allows several.
4. The package writes segwit v1+ fallback addresses with a bech32 checksum (BIP 350 says bech32m)
   and cannot render addresses for tbs/bcrt at all.
5. The package accepts an unknown even feature bit (spec V17); we reject it.
6. The package can represent only one bit of each feature pair (it keys features by pair).
7. x or c = 0: the package writes a zero-length field and then cannot decode its own invoice; x or
   c >= 2**60: the package's encoder silently keeps only the low 60 bits.
Plus the decode-side cases in the tests at the bottom: sub-millisatoshi amounts (V24), mixed case,
amounts with leading zeros, both d and h, non-minimal x, and non-Bolt11 exceptions on bad UTF-8.

Example count: env LNPLUGIN_HYPOTHESIS_EXAMPLES (default 200).
"""

from __future__ import annotations

import hashlib
import os

import bolt11
import pytest
from bitstring import Bits, pack
from bolt11 import Bolt11, Features, MilliSatoshi, Route, RouteHint, Tag, TagChar, Tags
from bolt11.models.fallback import Fallback as PkgFallback
from bolt11.models.features import Feature, FeatureExtra, FeatureState
from coincurve import PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lnplugin.bolt11 import KNOWN_FEATURE_BITS, Bolt11Error, RouteHop, decode, encode

EXAMPLES = int(os.environ.get("LNPLUGIN_HYPOTHESIS_EXAMPLES", "200"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
MAX_MSAT = 21_000_000 * 100_000_000_000

keys = st.integers(1, ORDER - 1).map(lambda n: n.to_bytes(32, "big"))
hashes = st.binary(min_size=32, max_size=32)
descriptions = st.text(max_size=120).filter(lambda d: len(d.encode()) <= 639)
amounts = st.one_of(
    st.none(),
    st.integers(1, 10**6),
    st.integers(1, MAX_MSAT),
    st.builds(
        lambda n, unit: min(n * unit, MAX_MSAT),
        st.integers(1, 10**6),
        st.sampled_from([100, 100_000, 100_000_000, 100_000_000_000]),
    ),
)
pos_int_fields = st.one_of(st.none(), st.integers(1, 1000), st.integers(1, (1 << 60) - 1))
hops = st.builds(
    lambda pk, block, tx, out, base, ppm, cltv: RouteHop(
        "02" + pk.hex(), f"{block}x{tx}x{out}", base, ppm, cltv
    ),
    st.binary(min_size=32, max_size=32),
    st.integers(0, (1 << 24) - 1),
    st.integers(0, (1 << 24) - 1),
    st.integers(0, (1 << 16) - 1),
    st.integers(0, (1 << 32) - 1),
    st.integers(0, (1 << 32) - 1),
    st.integers(0, (1 << 16) - 1),
)
routes = st.lists(st.lists(hops, min_size=1, max_size=6), max_size=2)
fallbacks = st.lists(
    st.one_of(
        st.tuples(st.sampled_from([17, 18]), st.binary(min_size=20, max_size=20)),
        st.tuples(
            st.just(0),
            st.sampled_from([20, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
        ),
        st.tuples(st.just(1), st.binary(min_size=32, max_size=32)),
        st.tuples(st.integers(2, 16), st.binary(min_size=2, max_size=40)),
    ),
    max_size=2,
)


@st.composite
def feature_sets(draw: st.DrawFn) -> frozenset[int]:
    """One bit per feature pair (exception 6); always var_onion_optin + payment_secret."""
    pairs = {4: draw(st.sampled_from([8, 9])), 7: draw(st.sampled_from([14, 15]))}
    for bit in draw(st.lists(st.sampled_from(sorted(KNOWN_FEATURE_BITS)), max_size=3)):
        pairs.setdefault(bit // 2, bit)
    for bit in draw(st.lists(st.integers(0, 127).map(lambda n: 2 * n + 1), max_size=3)):
        pairs.setdefault(bit // 2, bit)
    if draw(st.integers(0, 9)) == 0:  # sometimes an unknown even (required) bit: exception 5
        bit = draw(st.sampled_from([0, 2, 10, 20, 100, 254]))
        pairs.setdefault(bit // 2, bit)
    return frozenset(pairs.values())


def _pkg_features(bits: frozenset[int]) -> Features:
    return Features.from_feature_list(
        {
            (Feature(b // 2) if b // 2 < len(Feature) else FeatureExtra(b // 2)): (
                FeatureState.supported if b & 1 else FeatureState.required
            )
            for b in bits
        }
    )


def _pkg_invoice(case: dict) -> Bolt11:
    tags = [
        Tag(TagChar.payment_hash, case["payment_hash"]),
        Tag(TagChar.payment_secret, case["payment_secret"]),
    ]
    if case["description"] is not None:
        tags.append(Tag(TagChar.description, case["description"]))
    else:
        tags.append(Tag(TagChar.description_hash, case["description_hash"]))
    if case["expiry"] is not None:
        tags.append(Tag(TagChar.expire_time, case["expiry"]))
    if case["cltv"] is not None:
        tags.append(Tag(TagChar.min_final_cltv_expiry, case["cltv"]))
    tags.append(Tag(TagChar.features, _pkg_features(case["features"])))
    for route in case["routes"]:
        tags.append(
            Tag(
                TagChar.route_hint,
                RouteHint(
                    [
                        Route(
                            h.pubkey,
                            h.short_channel_id,
                            h.fee_base_msat,
                            h.fee_proportional_millionths,
                            h.cltv_expiry_delta,
                        )
                        for h in route
                    ]
                ),
            )
        )
    for version, program in case["fallbacks"]:
        data = pack("uint:5", version) + Bits(bytes=program)
        tags.append(Tag(TagChar.fallback, PkgFallback(data, case["currency"])))
    if case["metadata"] is not None:
        tags.append(Tag(TagChar.metadata, case["metadata"]))
    if case["with_n"]:
        tags.append(Tag(TagChar.payee, case["pubkey"]))
    amount = case["amount_msat"]
    return Bolt11(
        currency=case["currency"],
        date=case["timestamp"],
        tags=Tags(tags),
        amount_msat=None if amount is None else MilliSatoshi(amount),
    )


@st.composite
def cases(draw: st.DrawFn) -> dict:
    key = draw(keys)
    use_d = draw(st.booleans())
    return {
        "key": key,
        "pubkey": PrivateKey(key).public_key.format().hex(),
        "currency": draw(st.sampled_from(["bc", "tb", "tbs", "bcrt"])),
        "amount_msat": draw(amounts),
        "timestamp": draw(st.integers(0, (1 << 35) - 1)),
        "payment_hash": draw(hashes).hex(),
        "payment_secret": draw(hashes).hex(),
        "description": draw(descriptions) if use_d else None,
        "description_hash": None if use_d else draw(hashes).hex(),
        "expiry": draw(pos_int_fields),
        "cltv": draw(pos_int_fields),
        "features": draw(feature_sets()),
        "routes": draw(routes),
        "fallbacks": draw(fallbacks),
        "metadata": draw(st.one_of(st.none(), st.binary(min_size=1, max_size=64).map(bytes.hex))),
        "with_n": draw(st.booleans()),
    }


def _package_view(pkg: Bolt11) -> dict:
    """The package's decode result in our field shapes, with exceptions 1 and 2 normalised."""
    hints = []
    for hint in pkg.route_hints or []:
        hints.append(
            tuple(
                (
                    r.public_key,
                    r.short_channel_id,
                    r.base_fee % (1 << 32),  # exception 1
                    r.ppm_fee % (1 << 32),
                    r.cltv_expiry_delta % (1 << 16),
                )
                for r in hint.routes
            )
        )
    features = pkg.features
    bits = sorted(
        2 * f.value + (1 if state is FeatureState.supported else 0)
        for f, state in (features.feature_list.items() if features else ())
    )
    assert pkg.signature is not None
    return {
        "currency": pkg.currency,
        "amount_msat": None if pkg.amount_msat is None else int(pkg.amount_msat),
        "timestamp": pkg.date,
        "payment_hash": pkg.payment_hash,
        "payment_secret": pkg.payment_secret,
        "description": pkg.description,
        "description_hash": pkg.description_hash,
        "expiry": pkg.expiry,
        "min_final_cltv_expiry_delta": pkg.min_final_cltv_expiry,
        "payee": pkg.payee,
        "features": tuple(bits),
        "route_hints": hints,
        "payment_metadata": pkg.metadata,
        "signature": pkg.signature.hex,
        "recovery_id": pkg.signature.recovery_flag,
    }


@SETTINGS
@given(cases())
def test_agreement_with_bolt11_package(case: dict) -> None:
    invoice = bolt11.encode(_pkg_invoice(case), case["key"].hex(), keep_payee=case["with_n"])
    pkg = bolt11.decode(invoice)

    unknown_even = sorted(b for b in case["features"] if not b & 1 and b not in KNOWN_FEATURE_BITS)
    if unknown_even:  # exception 5: the package accepts, the spec says fail
        with pytest.raises(Bolt11Error, match="unknown even feature"):
            decode(invoice)
        return

    ours = decode(invoice)
    view = _package_view(pkg)
    for name, value in view.items():
        if name == "route_hints":
            mine = [
                tuple(
                    (
                        h.pubkey,
                        h.short_channel_id,
                        h.fee_base_msat,
                        h.fee_proportional_millionths,
                        h.cltv_expiry_delta,
                    )
                    for h in hint
                )
                for hint in ours.route_hints
            ]
            # exception 2: the package drops the last hop when the count is a multiple of 5
            mine = [hint[:-1] if len(hint) % 5 == 0 else hint for hint in mine]
            assert mine == value
        else:
            assert getattr(ours, name) == value, name

    # And both agree with what was generated.
    assert ours.currency == case["currency"]
    assert ours.amount_msat == _package_writes(case["amount_msat"])  # exception 12
    assert ours.timestamp == case["timestamp"]
    assert ours.payee == case["pubkey"]
    assert ours.description == case["description"]
    assert ours.description_hash == case["description_hash"]
    assert ours.expiry == (3600 if case["expiry"] is None else case["expiry"])
    assert ours.min_final_cltv_expiry_delta == (18 if case["cltv"] is None else case["cltv"])
    assert ours.features == tuple(sorted(case["features"]))
    assert [list(h) for h in ours.route_hints] == case["routes"]
    assert ours.payment_metadata == case["metadata"]
    assert [(f.version, bytes.fromhex(f.program)) for f in ours.fallbacks] == case["fallbacks"]

    # Fallbacks: exception 3 (only the first is kept) and 4 (addresses).
    if case["fallbacks"]:
        first = ours.fallbacks[0]
        assert pkg.fallback is not None
        assert pkg.fallback.witness_version == first.version
        assert pkg.fallback.data[5:].tobytes()[: len(first.program) // 2].hex() == first.program
        if case["currency"] in ("bc", "tb") and first.version in (0, 17, 18):
            assert pkg.fallback.address == first.address
        assert first.address is not None
    else:
        assert pkg.fallback is None


# ---- each documented exception, shown on a concrete invoice ----------------------------------

PH, SEC = "01" * 32, "02" * 32
KEY = bytes.fromhex("e126f68f7eafcc8b74f54d269fe206be715000f94dac067d1c04a8ca3b2db734")


def _case(**changes: object) -> dict:
    base = {
        "key": KEY,
        "pubkey": PrivateKey(KEY).public_key.format().hex(),
        "currency": "bc",
        "amount_msat": 1000,
        "timestamp": 1_700_000_000,
        "payment_hash": PH,
        "payment_secret": SEC,
        "description": "test",
        "description_hash": None,
        "expiry": None,
        "cltv": None,
        "features": frozenset({8, 14}),
        "routes": [],
        "fallbacks": [],
        "metadata": None,
        "with_n": False,
    }
    base.update(changes)
    return base


def _pkg_encode(**changes: object) -> str:
    case = _case(**changes)
    return bolt11.encode(_pkg_invoice(case), case["key"].hex(), keep_payee=case["with_n"])


def test_exception_1_package_reads_fees_as_signed() -> None:
    hop = RouteHop("02" + "ab" * 32, "1x2x3", 2**31 + 1, 2**32 - 1, 2**15 + 7)
    invoice = _pkg_encode(routes=[[hop]])
    hints = bolt11.decode(invoice).route_hints
    assert hints is not None
    route = hints[0].routes[0]
    assert (route.base_fee, route.ppm_fee, route.cltv_expiry_delta) == (-(2**31) + 1, -1, -32761)
    assert decode(invoice).route_hints == ((hop,),)


def test_exception_2_package_drops_fifth_hop() -> None:
    hop = RouteHop("03" + "cd" * 32, "700000x1x0", 1000, 1, 40)
    invoice = _pkg_encode(routes=[[hop] * 5])
    hints = bolt11.decode(invoice).route_hints
    assert hints is not None and len(hints[0].routes) == 4
    assert len(decode(invoice).route_hints[0]) == 5


def test_exception_3_and_4_fallbacks() -> None:
    taproot = (1, bytes(range(32)))
    p2pkh = (17, bytes(20))
    invoice = _pkg_encode(fallbacks=[taproot, p2pkh])
    ours = decode(invoice)
    assert [(f.type, f.version) for f in ours.fallbacks] == [("P2TR", 1), ("P2PKH", 17)]
    fallback = bolt11.decode(invoice).fallback
    assert fallback is not None
    pkg_address = fallback.address
    assert pkg_address.startswith("bc1p")
    assert pkg_address != ours.fallbacks[0].address  # package: bech32; BIP 350: bech32m
    regtest = decode(_pkg_encode(currency="bcrt", fallbacks=[p2pkh]))
    assert regtest.fallbacks[0].address is not None
    fallback = bolt11.decode(_pkg_encode(currency="bcrt", fallbacks=[p2pkh])).fallback
    assert fallback is not None
    with pytest.raises(ValueError):
        _ = fallback.address


def test_exception_5_unknown_even_feature() -> None:
    invoice = _pkg_encode(features=frozenset({8, 14, 100}))
    assert bolt11.decode(invoice).features is not None
    with pytest.raises(Bolt11Error, match="unknown even feature bit"):
        decode(invoice)


def test_exception_6_feature_pairs() -> None:
    ours = encode(
        currency="bc", amount_msat=None, timestamp=1, payment_hash=PH, payment_secret=SEC,
        private_key=KEY, description="", features=(8, 9, 14, 15),
    )  # fmt: skip
    assert decode(ours).features == (8, 9, 14, 15)
    pkg_features = bolt11.decode(ours).features
    assert pkg_features is not None and len(pkg_features.feature_list) == 2


def test_exception_7_zero_and_huge_x_c() -> None:
    zero = _pkg_encode(expiry=0, cltv=0)
    with pytest.raises(ValueError, match="zero length"):
        bolt11.decode(zero)
    assert (decode(zero).expiry, decode(zero).min_final_cltv_expiry_delta) == (0, 0)
    huge = _pkg_encode(expiry=2**60 + 5)
    assert decode(huge).expiry == 5 == bolt11.decode(huge).expiry  # truncated by the encoder


BTC_MSAT = 100_000_000_000


def _package_writes(amount_msat: int | None) -> int | None:
    """Exception 12: the package's encoder writes a whole multiple of 1,000 BTC
    as that many BTC divided by 1,000 (no multiplier, three zeros lost)."""
    if amount_msat is not None and amount_msat % (1000 * BTC_MSAT) == 0:
        return amount_msat // 1000
    return amount_msat


def test_exception_12_package_encodes_thousands_of_btc_a_thousand_times_too_small() -> None:
    invoice = _pkg_encode(amount_msat=2625 * 1000 * BTC_MSAT)
    pkg_amount = bolt11.decode(invoice).amount_msat
    assert pkg_amount is not None
    assert decode(invoice).amount_msat == 2625 * BTC_MSAT == int(pkg_amount)
    assert decode(invoice).amount_msat == _package_writes(2625 * 1000 * BTC_MSAT)
    # Amounts just off the multiple, and our own encoder, are exact.
    assert decode(_pkg_encode(amount_msat=1500 * BTC_MSAT)).amount_msat == 1500 * BTC_MSAT
    ours = encode(
        currency="bc", amount_msat=2625 * 1000 * BTC_MSAT, timestamp=1, payment_hash=PH,
        payment_secret=SEC, description="test", private_key=KEY,
    )  # fmt: skip
    assert decode(ours).amount_msat == 2625 * 1000 * BTC_MSAT


def _sign(hrp: str, fields: str, ts: str = "pvjluez") -> str:
    """Build and sign an invoice from raw bech32 text with the spec key (test helper)."""
    from lnplugin import bolt11 as ours

    charval = {c: i for i, c in enumerate("qpzry9x8gf2tvdw0s3jn54khce6mua7l")}
    body = ts + fields
    value = 0
    for ch in body:
        value = value << 5 | charval[ch]
    pad = -5 * len(body) % 8
    digest = hashlib.sha256(
        hrp.encode() + (value << pad).to_bytes((5 * len(body) + pad) // 8, "big")
    ).digest()
    sig = PrivateKey(KEY).sign_recoverable(digest, hasher=None)
    full = value << 520 | int.from_bytes(sig, "big")
    return ours._bech32_encode(hrp, full, len(body) + 104, 1)


P_FIELD = "pp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypq"
S_FIELD = "sp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygs"
D_FIELD = "dq5xysxxatsyp3k7enxv4js"  # '1 cup coffee'
H_FIELD = "hp58yjmdan79s6qqdhdzgynm4zwqd5d7xmw5fk98klysy043l2ahrqs"
F_FIELD = "9qrsgq"


def test_helper_reproduces_spec_vector_v02() -> None:
    inv = _sign("lnbc2500u", S_FIELD + P_FIELD + D_FIELD + "xqzpu" + F_FIELD)
    assert decode(inv).description == "1 cup coffee"


@pytest.mark.parametrize(
    ("hrp", "fields", "reason"),
    [
        ("lnbc25000000001p", P_FIELD + S_FIELD + D_FIELD, "sub-millisatoshi"),  # like V24
        ("lnbc02500u", P_FIELD + S_FIELD + D_FIELD, "leading zeros"),
        ("lnbc210000001", P_FIELD + S_FIELD + D_FIELD, "21 million"),
        ("lnbc", P_FIELD + S_FIELD + D_FIELD + H_FIELD, "both d and h"),
        ("lnbc", P_FIELD + S_FIELD + D_FIELD + "xqrqpu", "non-minimal encoding of x"),
        ("lnbc", P_FIELD + S_FIELD + D_FIELD + "9qyqsgq", "non-minimal encoding of 9"),
    ],
)
def test_package_accepts_what_the_spec_rejects(hrp: str, fields: str, reason: str) -> None:
    invoice = _sign(hrp, fields)
    bolt11.decode(invoice)  # the package takes it
    with pytest.raises(Bolt11Error, match=reason):
        decode(invoice)


def test_package_accepts_mixed_case() -> None:
    invoice = _pkg_encode()
    mixed = invoice[:10].upper() + invoice[10:]
    bolt11.decode(mixed)
    with pytest.raises(Bolt11Error, match="mixed case"):
        decode(mixed)


def test_package_raises_unicode_error_on_bad_utf8() -> None:
    invoice = _sign("lnbc", P_FIELD + S_FIELD + "dqylllll")  # d = 0xff 0xff...
    with pytest.raises(UnicodeDecodeError):
        bolt11.decode(invoice)
    with pytest.raises(Bolt11Error, match="UTF-8"):
        decode(invoice)
