"""Our encoder: its output decodes with the `bolt11` package and with our decoder, field by field.

Also: minimal encodings (amount multiplier, x/c/9 lengths), no `n` field, deterministic
signatures, and ValueError on every bad argument. Example count: env
LNPLUGIN_HYPOTHESIS_EXAMPLES (default 200).
"""

from __future__ import annotations

import os

import bolt11
import pytest
from bolt11.models.features import FeatureState
from coincurve import PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lnplugin.bolt11 import KNOWN_FEATURE_BITS, RouteHop, decode, encode

EXAMPLES = int(os.environ.get("LNPLUGIN_HYPOTHESIS_EXAMPLES", "200"))
KEY = bytes.fromhex("e126f68f7eafcc8b74f54d269fe206be715000f94dac067d1c04a8ca3b2db734")
PUB = "03e7156ae33b0a208d0744199163177e909e80176e55d97a2f221ede0f934dd9ad"
PH, SEC = "00" * 31 + "01", "11" * 32
ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
HOP = RouteHop("029e03a901b85534ff1e92c43c74431f7ce72046060fcf7a95c37e148f78c77255",
               "66051x263430x1800", 1, 20, 3)  # fmt: skip


def _args(**changes: object) -> dict:
    args: dict = {
        "currency": "bc",
        "amount_msat": 250_000_000,
        "timestamp": 1_496_314_658,
        "payment_hash": PH,
        "payment_secret": SEC,
        "private_key": KEY,
        "description": "1 cup coffee",
    }
    args.update(changes)
    return args


def _package_bits(pkg: bolt11.Bolt11) -> tuple[int, ...]:
    assert pkg.features is not None
    return tuple(
        sorted(
            2 * f.value + (state is FeatureState.supported)
            for f, state in pkg.features.feature_list.items()
        )
    )


def _check_both(invoice: str, args: dict) -> None:
    """Field-by-field: our decoder, the package, and the arguments all agree."""
    ours = decode(invoice)
    pkg = bolt11.decode(invoice)
    expiry = 3600 if args.get("expiry") is None else args["expiry"]
    cltv = args.get("min_final_cltv_expiry_delta")
    cltv = 18 if cltv is None else cltv
    features = tuple(sorted(set(args.get("features", (8, 14)))))
    expected = {
        "currency": args["currency"],
        "amount_msat": args["amount_msat"],
        "timestamp": args["timestamp"],
        "payment_hash": args["payment_hash"],
        "payment_secret": args["payment_secret"],
        "description": args.get("description"),
        "description_hash": args.get("description_hash"),
        "expiry": expiry,
        "min_final_cltv_expiry_delta": cltv,
        "features": features,
        "payment_metadata": args.get("payment_metadata"),
        "payee": PrivateKey(args["private_key"]).public_key.format().hex(),
    }
    for name, value in expected.items():
        assert getattr(ours, name) == value, name
    assert ours.route_hints == tuple(tuple(r) for r in args.get("route_hints", ()))
    assert ours.fallbacks == ()

    assert pkg.currency == args["currency"]
    assert (None if pkg.amount_msat is None else int(pkg.amount_msat)) == args["amount_msat"]
    assert pkg.date == args["timestamp"]
    assert pkg.payment_hash == args["payment_hash"]
    assert pkg.payment_secret == args["payment_secret"]
    assert pkg.description == expected["description"]
    assert pkg.description_hash == expected["description_hash"]
    assert pkg.expiry == expiry
    assert pkg.min_final_cltv_expiry == cltv
    assert _package_bits(pkg) == features
    assert pkg.metadata == expected["payment_metadata"]
    assert pkg.payee == expected["payee"]
    assert pkg.signature is not None
    assert pkg.signature.hex == ours.signature
    assert pkg.signature.recovery_flag == ours.recovery_id
    pkg_hints = [
        [
            RouteHop(r.public_key, r.short_channel_id, r.base_fee, r.ppm_fee, r.cltv_expiry_delta)
            for r in hint.routes
        ]
        for hint in pkg.route_hints or ()
    ]
    assert pkg_hints == [list(r) for r in args.get("route_hints", ())]


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"amount_msat": None},
        {
            "description": None,
            "description_hash": "3925b6f67e2c340036ed12093dd44e0368df1b6ea26c53dbe4811f58fd5db8c1",
        },
        {"description": ""},
        {"description": "ナンセンス 1杯"},
        {"description": "x" * 639},
        {"expiry": 60},
        {"expiry": 604_800, "min_final_cltv_expiry_delta": 144},
        {"expiry": 1, "min_final_cltv_expiry_delta": 1},
        {"features": (8, 14, 16)},
        {"features": [9, 15, 17, 48]},
        {"features": (8, 14, 16, 99, 255)},
        {"route_hints": [[HOP]]},
        {"route_hints": [[HOP, RouteHop(HOP.pubkey, "1x2x3", 2**31 - 1, 2**31 - 1, 2**15 - 1)]]},
        {"route_hints": [[HOP], [HOP, HOP, HOP, HOP]]},
        {"payment_metadata": "01fafaf0", "features": (8, 14, 48)},
        {"currency": "tb", "amount_msat": 1},
        {"currency": "tbs", "amount_msat": 1000},
        {"currency": "bcrt", "amount_msat": 21_000_000 * 100_000_000_000},
        {"timestamp": 0},
        {"timestamp": 2**35 - 1},
    ],
)
def test_encode_decodes_with_both(changes: dict) -> None:
    args = _args(**changes)
    invoice = encode(**args)
    assert invoice == invoice.lower()
    _check_both(invoice, args)


@pytest.mark.parametrize(
    ("msat", "hrp"),
    [
        (None, "lnbc"),
        (100_000_000_000, "lnbc1"),
        (2_100_000_000_000_000_000, "lnbc21000000"),
        (100_000_000, "lnbc1m"),
        (2_000_000_000, "lnbc20m"),
        (250_000_000, "lnbc2500u"),
        (100_000, "lnbc1u"),
        (100, "lnbc1n"),
        (1_000, "lnbc10n"),
        (1, "lnbc10p"),
        (967_878_534, "lnbc9678785340p"),
        (150_000_000_000, "lnbc1500m"),
    ],
)
def test_amount_uses_largest_exact_multiplier(msat: int | None, hrp: str) -> None:
    invoice = encode(**_args(amount_msat=msat))
    assert invoice.rsplit("1", 1)[0] == hrp
    assert decode(invoice).amount_msat == msat


def _fields(invoice: str) -> list[tuple[str, str]]:
    """(tag, data chars) of every tagged field, read from the text."""
    charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
    data = invoice.rsplit("1", 1)[1][7:-110]
    out = []
    while data:
        n = charset.index(data[1]) * 32 + charset.index(data[2])
        out.append((data[0], data[3 : 3 + n]))
        data = data[3 + n :]
    return out


def test_minimal_lengths_and_no_payee_field() -> None:
    fields = dict(_fields(encode(**_args(expiry=60, min_final_cltv_expiry_delta=18))))
    assert fields["x"] == "pu"  # 60 in 2 symbols, as in the spec's example
    assert fields["c"] == "j"  # 18 fits one symbol
    assert fields["9"] == "sgq"  # bits 8 and 14: 3 symbols, as in the spec vectors
    assert "n" not in fields
    zero = dict(_fields(encode(**_args(expiry=0, min_final_cltv_expiry_delta=0))))
    assert zero["x"] == zero["c"] == "q"  # one symbol, never empty
    assert decode(encode(**_args(expiry=0))).expiry == 0
    assert [t for t, _ in _fields(encode(**_args()))] == ["p", "s", "d", "c", "9"]


def test_c_is_always_written() -> None:
    assert "c" in dict(_fields(encode(**_args(min_final_cltv_expiry_delta=None))))


def test_deterministic_and_signed_by_the_key() -> None:
    assert encode(**_args()) == encode(**_args())
    assert decode(encode(**_args())).payee == PUB


@pytest.mark.parametrize(
    "changes",
    [
        {"currency": "sb"},
        {"currency": "BC"},
        {"amount_msat": 0},
        {"amount_msat": -1},
        {"amount_msat": True},
        {"amount_msat": 1.5},
        {"amount_msat": 21_000_000 * 100_000_000_000 + 1},
        {"timestamp": -1},
        {"timestamp": 2**35},
        {"payment_hash": "00" * 31},
        {"payment_hash": "zz" * 32},
        {"payment_hash": " " + "00" * 32},
        {"payment_hash": b"\0" * 32},
        {"payment_secret": "11" * 33},
        {"private_key": b"\0" * 32},
        {"private_key": ORDER.to_bytes(32, "big")},
        {"private_key": KEY.hex()},
        {"private_key": KEY[:31]},
        {"description": None},
        {"description_hash": "00" * 32},
        {"description": None, "description_hash": "00" * 31},
        {"description": "x" * 640},
        {"description": "ü" * 320},
        {"description": 5},
        {"expiry": -1},
        {"expiry": 2**63},
        {"expiry": "60"},
        {"min_final_cltv_expiry_delta": -5},
        {"features": (8,)},
        {"features": (14,)},
        {"features": (8, 14, 100)},
        {"features": (8, 14, -1)},
        {"features": "8,14"},
        {"route_hints": [[]]},
        {"route_hints": [[HOP] * 13]},
        {"route_hints": [["not a hop"]]},
        {"route_hints": [[RouteHop("04" + "00" * 32, "1x2x3", 0, 0, 0)]]},
        {"route_hints": [[RouteHop("02" + "00" * 32, "1x2", 0, 0, 0)]]},
        {"route_hints": [[RouteHop("02" + "00" * 32, "1x2x65536", 0, 0, 0)]]},
        {"route_hints": [[RouteHop("02" + "00" * 32, "1x2x-3", 0, 0, 0)]]},
        {"route_hints": [[RouteHop("02" + "00" * 32, "1x2x3", 2**32, 0, 0)]]},
        {"route_hints": [[RouteHop("02" + "00" * 32, "1x2x3", 0, -1, 0)]]},
        {"route_hints": [[RouteHop("02" + "00" * 32, "1x2x3", 0, 0, 2**16)]]},
        {"payment_metadata": "abc"},
        {"payment_metadata": "00" * 640},
        {"route_hints": [[HOP] * 12] * 12},  # over MAX_INVOICE_LENGTH
    ],
)
def test_bad_arguments_raise_value_error(changes: dict) -> None:
    with pytest.raises(ValueError):
        encode(**_args(**changes))


hops = st.builds(
    RouteHop,
    st.binary(min_size=33, max_size=33).map(lambda b: ("02" if b[0] & 1 else "03") + b[1:].hex()),
    st.builds(lambda a, b, c: f"{a}x{b}x{c}", st.integers(0, 2**24 - 1),
              st.integers(0, 2**24 - 1), st.integers(0, 2**16 - 1)),
    st.integers(0, 2**31 - 1),  # the package reads these as signed (see agreement tests)
    st.integers(0, 2**31 - 1),
    st.integers(0, 2**15 - 1),
)  # fmt: skip


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    key=st.integers(1, ORDER - 1).map(lambda n: n.to_bytes(32, "big")),
    currency=st.sampled_from(["bc", "tb", "tbs", "bcrt"]),
    amount=st.one_of(st.none(), st.integers(1, 21_000_000 * 100_000_000_000)),
    timestamp=st.integers(0, 2**35 - 1),
    ph=st.binary(min_size=32, max_size=32),
    sec=st.binary(min_size=32, max_size=32),
    desc=st.one_of(
        st.text(max_size=100).filter(lambda d: len(d.encode()) <= 639),
        st.binary(min_size=32, max_size=32),
    ),
    expiry=st.one_of(st.none(), st.integers(1, 2**59)),
    cltv=st.one_of(st.none(), st.integers(1, 2**59)),
    extra=st.sets(st.sampled_from(sorted(KNOWN_FEATURE_BITS - {8, 9, 14, 15}))),
    odd=st.sets(st.integers(25, 300).map(lambda n: 2 * n + 1), max_size=3),
    route_hints=st.lists(st.lists(hops, min_size=1, max_size=4), max_size=2),
    metadata=st.one_of(st.none(), st.binary(min_size=1, max_size=50).map(bytes.hex)),
)
def test_encode_property(
    key, currency, amount, timestamp, ph, sec, desc, expiry, cltv, extra, odd, route_hints,
    metadata,
) -> None:  # fmt: skip
    pairs = {b // 2: b for b in sorted(extra | odd)}  # one bit per pair: the package's limit
    features = {8, 14} | set(pairs.values())
    args = {
        "currency": currency,
        "amount_msat": amount,
        "timestamp": timestamp,
        "payment_hash": ph.hex(),
        "payment_secret": sec.hex(),
        "private_key": key,
        "description": desc if isinstance(desc, str) else None,
        "description_hash": desc.hex() if isinstance(desc, bytes) else None,
        "expiry": expiry,
        "min_final_cltv_expiry_delta": cltv,
        "features": sorted(features),
        "route_hints": route_hints,
        "payment_metadata": metadata,
    }
    _check_both(encode(**args), args)
