"""The onion payload parser used by plugin mode's htlc_accepted hook."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lnplugin.nodes.cln.tlv import (
    TlvError,
    custom_records,
    encode_bigsize,
    encode_payload,
    parse_onion_payload,
    read_bigsize,
)

FIXTURES = Path(__file__).parent / "fixtures" / "cln"


def _htlc_payloads() -> list[str]:
    hooks = json.loads((FIXTURES / "hooks_b.json").read_text())
    return [h["params"]["onion"]["payload"] for h in hooks if h["kind"] == "hook:htlc_accepted"]


def test_real_keysend_payload_yields_boostagram_records() -> None:
    keysend = _htlc_payloads()[2]
    records = custom_records(keysend)
    assert sorted(records) == [696969, 7629169, 7629171]
    assert records[696969] == b"acct-42"
    assert records[7629171] == b"tip note"
    boost = json.loads(records[7629169])
    assert boost["action"] == "boost" and boost["message"] == "great episode"


def test_real_invoice_payloads_have_only_protocol_fields() -> None:
    for payload in _htlc_payloads()[:2]:
        assert custom_records(payload) == {}
        assert {2, 4, 8} <= set(parse_onion_payload(payload))


def test_amount_field_of_real_payload() -> None:
    fields = parse_onion_payload(_htlc_payloads()[0])
    assert int.from_bytes(fields[2], "big") == 50000


def test_round_trip_with_keysend_preimage_excluded() -> None:
    payload = encode_payload({2: b"\x01", 5482373484: b"\x00" * 32, 34349334: b"hi"})
    assert custom_records(payload) == {34349334: b"hi"}


@pytest.mark.parametrize(
    "payload",
    [
        "",  # nothing
        "zz",  # not hex
        "00",  # legacy hop payload
        "0302",  # length prefix longer than the data
        "020101",  # value truncated
        "0402010000",  # prefix shorter than the stream (trailing byte)
        "06040100020100",  # types not increasing
        "06020100020100",  # duplicate type
        "05fd00010100",  # non-minimal BigSize type
        "fd",  # truncated BigSize
    ],
)
def test_malformed_payloads_raise_tlv_error(payload: str) -> None:
    with pytest.raises(TlvError):
        parse_onion_payload(payload)


def test_bigsize_boundaries() -> None:
    for value in (0, 0xFC, 0xFD, 0xFFFF, 0x10000, 0xFFFFFFFF, 0x100000000, 2**64 - 1):
        encoded = encode_bigsize(value)
        assert read_bigsize(encoded, 0) == (value, len(encoded))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_only_tlv_error(data: bytes) -> None:
    for candidate in (data, data.hex()):
        with contextlib.suppress(TlvError):
            parse_onion_payload(candidate)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.integers(0, 2**64 - 1), st.binary(max_size=40), min_size=1))
def test_fuzz_round_trip(records: dict[int, bytes]) -> None:
    payload = encode_payload(records)
    assert parse_onion_payload(payload) == records
    # Any single-byte corruption either still parses or raises TlvError only.
    raw = bytearray(bytes.fromhex(payload))
    for i in range(0, len(raw), 7):
        raw[i] ^= 0x5A
        with contextlib.suppress(TlvError):
            parse_onion_payload(bytes(raw))
        raw[i] ^= 0x5A
