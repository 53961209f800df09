"""The 26 BOLT11 spec vectors (tests/fixtures/bolt11_vectors.json), field by field.

Policy (docs/bolt11.md): V14 passes as published (wrong-length p/h/s/n are skipped); V16 decodes
with the payee that plain ECDSA recovery yields (no S normalisation).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from coincurve import PublicKey

from lnplugin.bolt11 import MAX_INVOICE_LENGTH, Bolt11Error, Invoice, decode

VECTORS = json.loads((Path(__file__).parent / "fixtures" / "bolt11_vectors.json").read_text())[
    "vectors"
]
BY_ID = {v["id"]: v for v in VECTORS}
VALID = [v for v in VECTORS if v["valid"]]
INVALID = [v for v in VECTORS if not v["valid"]]

NETWORKS = {"bitcoin mainnet": "bitcoin", "testnet": "testnet"}
SPEC_PUB = "03e7156ae33b0a208d0744199163177e909e80176e55d97a2f221ede0f934dd9ad"
V16_PAYEE = "02d0139ce7427d6dfffd26a326c18be754ef1e64672b42694ba5b23ef6e6e7803d"

# Our reason for each invalid vector must contain this text (it names the broken rule).
REASONS = {
    "V17": "unknown even feature bit(s): 100",
    "V18": "bad checksum",
    "V19": "no separator",
    "V20": "mixed case",
    "V21": "signature not recoverable",
    "V22": "too short",
    "V23": "invalid amount",
    "V24": "sub-millisatoshi amount",
    "V25": "missing s field",
    "V26": "high-S signature with n field",
}

HOP_RE = re.compile(r"(\w{66}) scid (\d+x\d+x\d+) base (\d+) ppm (\d+) cltvΔ (\d+)")


def test_fixture_has_26_vectors() -> None:
    assert len(VALID) == 16
    assert len(INVALID) == 10
    assert set(REASONS) == {v["id"] for v in INVALID}


def _fallback(text: str) -> tuple[str, str]:
    """'P2PKH addr' / 'segwit v0 addr' -> (type family, address)."""
    *kind, address = text.split()
    return " ".join(kind), address


@pytest.mark.parametrize("vector", VALID, ids=[v["id"] for v in VALID])
def test_valid_vector(vector: dict) -> None:
    exp = vector["expected"]
    inv = decode(vector["invoice"])
    assert isinstance(inv, Invoice)
    assert inv.network == NETWORKS[exp["network"]]
    assert inv.currency == {"bitcoin": "bc", "testnet": "tb"}[inv.network]
    assert inv.amount_msat == exp["amount_msat"]
    assert inv.timestamp == exp["timestamp"]
    assert inv.payment_hash == exp["payment_hash"]
    assert inv.payment_secret == exp["payment_secret"]
    assert inv.description == exp.get("d")
    assert inv.description_hash == exp.get("h")
    assert inv.expiry == exp["expiry"]
    assert inv.expires_at == exp["timestamp"] + exp["expiry"]
    assert inv.min_final_cltv_expiry_delta == exp["min_final_cltv_expiry_delta"]
    assert list(inv.features) == exp["feature_bits"]
    assert inv.payment_metadata == (
        exp["payment_metadata"].removeprefix("0x") if "payment_metadata" in exp else None
    )
    assert inv.payee == exp["payee"]
    assert inv.payee == (V16_PAYEE if vector["id"] == "V16" else SPEC_PUB)

    if "fallback" in exp:
        kind, address = _fallback(exp["fallback"])
        assert len(inv.fallbacks) == 1
        fb = inv.fallbacks[0]
        assert fb.address == address
        allowed = {
            "P2PKH": {"P2PKH"},
            "P2SH": {"P2SH"},
            "segwit v0": {"P2WPKH", "P2WSH"},
            "segwit v1": {"P2TR"},
        }[kind]
        assert fb.type in allowed
    else:
        assert inv.fallbacks == ()

    if "route_hint" in exp:
        hops = HOP_RE.findall(exp["route_hint"])
        assert hops
        assert len(inv.route_hints) == 1
        got = [
            (
                h.pubkey,
                h.short_channel_id,
                h.fee_base_msat,
                h.fee_proportional_millionths,
                h.cltv_expiry_delta,
            )
            for h in inv.route_hints[0]
        ]
        assert got == [(pk, scid, int(b), int(p), int(c)) for pk, scid, b, p, c in hops]
    else:
        assert inv.route_hints == ()

    # The spec's signing hash, the signature we extracted and its recovery id agree.
    sig65 = bytes.fromhex(inv.signature) + bytes([inv.recovery_id])
    recovered = PublicKey.from_signature_and_message(
        sig65, bytes.fromhex(exp["sighash"]), hasher=None
    )
    assert recovered.format(compressed=True).hex() == inv.payee


def test_recovery_ids_match_the_spec_notes() -> None:
    for vid in ("V06", "V08", "V10", "V14"):
        assert decode(BY_ID[vid]["invoice"]).recovery_id == 0
    for vid in ("V01", "V02", "V05", "V11", "V15", "V16"):
        assert decode(BY_ID[vid]["invoice"]).recovery_id == 1


def test_fallback_types() -> None:
    types = {
        vid: decode(BY_ID[vid]["invoice"]).fallbacks[0].type
        for vid in ("V05", "V06", "V07", "V08", "V09", "V10")
    }
    assert types == {
        "V05": "P2PKH",
        "V06": "P2PKH",
        "V07": "P2SH",
        "V08": "P2WPKH",
        "V09": "P2WSH",
        "V10": "P2TR",
    }


def _without_signature(inv: Invoice) -> dict:
    return {
        f: getattr(inv, f)
        for f in Invoice.__dataclass_fields__
        if f not in ("signature", "recovery_id", "payee")
    }


def test_v13_upper_case_equals_v12() -> None:
    assert decode(BY_ID["V13"]["invoice"]) == decode(BY_ID["V12"]["invoice"])


def test_v14_policy_skips_wrong_length_fixed_fields() -> None:
    """V14 = V12 plus p/h/s of length 51/53, n of 52/54, unknown tag, f version 19: all skipped."""
    v12, v14 = decode(BY_ID["V12"]["invoice"]), decode(BY_ID["V14"]["invoice"])
    assert _without_signature(v14) == _without_signature(v12)
    assert v14.payee == SPEC_PUB
    assert v14.fallbacks == ()  # f with version 19 is skipped


def test_v16_policy_high_s_without_n_is_accepted_with_plain_recovery() -> None:
    v01, v16 = decode(BY_ID["V01"]["invoice"]), decode(BY_ID["V16"]["invoice"])
    assert _without_signature(v16) == _without_signature(v01)
    assert v16.recovery_id == v01.recovery_id == 1
    order = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    s01, s16 = int(v01.signature[64:], 16), int(v16.signature[64:], 16)
    assert s16 == order - s01 and s16 > order // 2
    assert v16.signature[:64] == v01.signature[:64]
    # libsecp256k1's recovery of the high-S signature as published, no normalisation.
    assert v16.payee == V16_PAYEE


@pytest.mark.parametrize("vector", INVALID, ids=[v["id"] for v in INVALID])
def test_invalid_vector(vector: dict) -> None:
    with pytest.raises(Bolt11Error) as info:
        decode(vector["invoice"])
    assert REASONS[vector["id"]] in info.value.reason
    assert str(info.value) == info.value.reason


def test_error_is_not_a_value_error() -> None:
    assert not issubclass(Bolt11Error, ValueError)


@pytest.mark.parametrize("prefix", ["lightning:", "LIGHTNING:", "Lightning:"])
def test_lightning_prefix(prefix: str) -> None:
    plain = BY_ID["V02"]["invoice"]
    assert decode(prefix + plain) == decode(plain)
    assert decode(prefix + plain.upper()) == decode(plain)


def test_too_long_input_is_rejected_first() -> None:
    # Also longer than the limit by one when otherwise valid-looking.
    with pytest.raises(Bolt11Error, match="longer than 7089"):
        decode("lnbc1" + "q" * (MAX_INVOICE_LENGTH - 4))
    with pytest.raises(Bolt11Error, match="longer than"):
        decode("x" * 10_000_000)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "no separator"),
        ("1qqqqqq", "empty human-readable part"),
        ("lnbc1qqqqq", "too short"),
        ("lnbc1bqqqqqq", "invalid character"),
        ("lnbc1 qqqqqq", "invalid character"),
        ("lnbc1q_qqqqq", "invalid character"),
        ("lnbc1ünicode", "non-ASCII"),
        (BY_ID["V02"]["invoice"].replace("lnbc", "lnxy", 1), "bad checksum"),
    ],
)
def test_malformed_strings(text: str, reason: str) -> None:
    with pytest.raises(Bolt11Error, match=reason):
        decode(text)


def test_non_string_input() -> None:
    with pytest.raises(Bolt11Error, match="must be a string"):
        decode(b"lnbc1")  # type: ignore[arg-type]  # the wrong type is the test
