"""Lenient parsing of Podcasting 2.0 keysend records (TLV 7629169 boostagrams, 34349334 chat).

Senders disagree about types; whatever they send, the raw record is kept and
parsing never raises.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from typing import Any

import pytest

from lnplugin.boostagram import (
    BOOSTAGRAM,
    CHAT_MESSAGE,
    parse_boostagram,
    parse_record_value,
    parse_records,
    parse_rss_payment,
    records_from_json,
    records_to_json,
)


def boost(**fields) -> bytes:
    return json.dumps(fields).encode()


def must_parse(raw: bytes) -> dict[str, Any]:
    """parse_boostagram() for a record that must parse: None fails here, not later."""
    result = parse_boostagram(raw)
    assert result is not None
    return result


def test_a_well_formed_boostagram_is_returned_as_sent():
    fields = {
        "action": "boost",
        "podcast": "Show",
        "feedID": 920666,
        "itemID": 1234,
        "ts": 60,
        "message": "hi",
        "value_msat_total": 10_000,
        "guid": "917393e3-1b1e-5cef-ace4-edaa54e1f810",
    }
    assert parse_boostagram(boost(**fields)) == fields


@pytest.mark.parametrize(
    "field", ["feedID", "itemID", "ts", "seconds_back", "value_msat", "value_msat_total"]
)
def test_numbers_sent_as_strings_become_numbers(field):
    assert must_parse(boost(**{field: "42"}))[field] == 42


def test_numbers_sent_as_whole_floats_become_integers():
    parsed = must_parse(boost(value_msat_total=5000.0, ts="12.0"))
    assert parsed["value_msat_total"] == 5000 and parsed["ts"] == 12


def test_a_guid_in_item_id_is_kept_as_a_string():
    guid = "c7f4b8e2-1111-2222-3333-444455556666"
    assert must_parse(boost(itemID=guid))["itemID"] == guid


def test_non_integer_text_in_a_number_field_is_kept_as_sent():
    assert must_parse(boost(ts="00:01:02", value_msat="1.5"))["ts"] == "00:01:02"
    assert must_parse(boost(value_msat="1.5"))["value_msat"] == "1.5"


@pytest.mark.parametrize("text", ["²", "¹²", "9" * 5000, "-" + "9" * 5000])
def test_number_text_int_cannot_read_is_kept_as_sent_instead_of_raising(text):
    """isdigit() passes superscripts and int() refuses 4300+ digits; either used to
    raise here, which stopped the settlement feed at that payment."""
    assert must_parse(boost(feedID=text, ts=text))["ts"] == text


def test_fields_that_are_not_numbers_by_spec_are_untouched():
    parsed = must_parse(boost(app_version=1.2, speed=1, name="123"))
    assert parsed["app_version"] == 1.2
    assert parsed["speed"] == 1
    assert parsed["name"] == "123"


def test_feed_id_casing_is_normalised_and_the_original_key_kept():
    parsed = must_parse(boost(feedId="920666"))
    assert parsed["feedID"] == 920666
    assert parsed["feedId"] == "920666"


def test_feed_id_in_the_spec_casing_wins_over_the_variant():
    assert must_parse(boost(feedID=1, feedId=2))["feedID"] == 1


def test_a_null_message_is_kept_as_null():
    parsed = must_parse(boost(action="stream", message=None))
    assert "message" in parsed and parsed["message"] is None


@pytest.mark.parametrize("suffix", [b"\n", b"\r\n", b"  \n\n", b"\x00"])
def test_trailing_whitespace_and_nul_are_ignored(suffix):
    assert parse_boostagram(boost(message="hi") + suffix) == {"message": "hi"}


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"", b"[1, 2]", b'"a string"', b"42", b"null", b"\xff\xfe{", b"{" * 5000],
    ids=["broken", "empty", "list", "string", "number", "null", "binary", "braces"],
)
def test_a_record_that_is_not_a_json_object_yields_no_boostagram(raw):
    assert parse_boostagram(raw) is None


@pytest.mark.parametrize("raw", [b"[" * 60_000, b'{"a":' * 12_000], ids=["list", "object"])
def test_deeply_nested_json_yields_no_boostagram_instead_of_raising(raw):
    # A keysend sender controls this record; it must never stop the follower.
    assert parse_boostagram(raw) is None
    assert parse_records({BOOSTAGRAM: raw}).boostagram is None


@pytest.mark.parametrize(
    ("raw", "kept"),
    [(b"1e999", "1e999"), (b"-1e999", "-1e999"), (b"NaN", "NaN"), (b"Infinity", "Infinity")],
)
def test_a_number_no_float_holds_is_kept_as_its_text(raw, kept):
    # Written back as bare NaN/Infinity, SQLite refused the boostagram as
    # malformed JSON and the payment could not be stored.
    parsed = parse_boostagram(b'{"message": "hi", "value_msat": ' + raw + b', "x": ' + raw + b"}")
    assert parsed == {"message": "hi", "value_msat": kept, "x": kept}
    assert json.loads(json.dumps(parsed, allow_nan=False)) == parsed
    header = parse_rss_payment(urllib.parse.quote('{"value_msat_total": ' + raw.decode() + "}"))
    assert header == {"value_msat_total": kept}


def test_bad_json_keeps_the_raw_record_and_raises_nothing():
    records = {BOOSTAGRAM: b"{oops", CHAT_MESSAGE: b"still here"}
    parsed = parse_records(records)
    assert parsed.boostagram is None
    assert parsed.keysend_message == "still here"
    text = records_to_json(records)
    assert text is not None
    stored = json.loads(text)
    assert base64.b64decode(stored[str(BOOSTAGRAM)]) == b"{oops"


def test_invalid_utf8_inside_a_json_string_does_not_break_parsing():
    parsed = parse_boostagram(b'{"message": "caf\xe9"}')
    assert parsed is not None and parsed["message"].startswith("caf")


def test_chat_message_34349334_is_decoded_as_text():
    parsed = parse_records({CHAT_MESSAGE: "héllo ⚡".encode()})
    assert parsed.keysend_message == "héllo ⚡"
    assert parsed.boostagram is None


def test_chat_message_with_invalid_utf8_is_decoded_with_replacement():
    assert parse_records({CHAT_MESSAGE: b"hi \xff"}).keysend_message == "hi \ufffd"


def test_no_records_means_no_boostagram_and_no_message():
    parsed = parse_records({})
    assert parsed.boostagram is None and parsed.keysend_message is None


def test_records_round_trip_through_alby_json_with_decimal_keys_and_base64():
    records = {7629169: b"{}", 5482373484: bytes(range(32)), 696969: b""}
    text = records_to_json(records)
    assert text is not None
    assert set(json.loads(text)) == {"7629169", "5482373484", "696969"}
    assert records_from_json(text) == records
    assert records_to_json({}) is None and records_from_json(None) == {}


def test_record_values_are_text_unless_prefixed_with_hex():
    assert parse_record_value("hello") == b"hello"
    assert parse_record_value("hex:00ff") == b"\x00\xff"
    assert parse_record_value("hex:") == b""
    assert parse_record_value("HEX:00") == b"HEX:00"  # only the lower-case prefix means hex
    with pytest.raises(ValueError):
        parse_record_value("hex:zz")


def test_a_lone_surrogate_record_value_is_a_value_error_that_says_so():
    with pytest.raises(ValueError, match="lone surrogate"):
        parse_record_value("\ud800")
