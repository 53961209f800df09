"""Podcasting 2.0 keysend records: boostagrams and messages.

Senders disagree about types (Fountain sends numbers as strings, Breez puts a
GUID in itemID, some apps spell `feedId`), so parsing is lenient: numbers that
arrive as digit strings become ints, anything unparseable is kept as sent, and
a record that is not a JSON object yields no boostagram at all. The raw bytes
are always kept elsewhere, so nothing a sender put on the wire is lost.
"""

from __future__ import annotations

import base64
import json
import math
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

BOOSTAGRAM = 7629169  # bLIP-10 podcast JSON
TIP_NOTE = 7629171
PODCAST_GUID = 7629175
KEYSEND_PREIMAGE = 5482373484
CHAT_MESSAGE = 34349334  # Whatsat / ThunderHub chat text
CHAT_SENDER_NAME = 34349340
CUSTOM_KEY_RECORDS = {696969, 112111100, 818818, 906608}
# Types the spec defines as integers; clients rely on them being numbers.
_INT_FIELDS = {
    "feedID",
    "itemID",
    "ts",
    "seconds_back",
    "value_msat",
    "value_msat_total",
    "reply_custom_key",
}


@dataclass(frozen=True, slots=True)
class ParsedRecords:
    boostagram: dict[str, Any] | None
    keysend_message: str | None


def _as_int(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        try:
            # int() refuses some strings isdigit() passes (superscripts) and any
            # past 4300 digits: those stay text, as anything unparseable does,
            # instead of failing the settlement that carries them.
            if text.isascii() and text.lstrip("-").isdigit():
                return int(text)
            number = float(text)
        except ValueError:
            return value
        return int(number) if number.is_integer() else value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _finite(text: str) -> float | str:
    """A JSON number as a float, or its text when no float holds it (`1e999`)."""
    number = float(text)
    return number if math.isfinite(number) else text


def _loads(text: str) -> Any:
    """`json.loads`, but every number it returns is finite.

    Python reads `NaN`, `Infinity` (not JSON) and `1e999` (JSON, but past
    any float) as non-finite floats, which `json.dumps` writes back as bare
    `NaN`/`Infinity`: text SQLite refuses as malformed JSON, so storing such
    a boostagram failed the transaction that records the payment, and with
    it the settlement feed. They are kept as sent, as text.

    A byte order mark before the JSON (some writers start UTF-8 with one) is
    passed over: `json.loads` refuses it, which lost the whole record.
    """
    return json.loads(text.lstrip("\ufeff"), parse_float=_finite, parse_constant=str)


def parse_boostagram(raw: bytes) -> dict[str, Any] | None:
    """Parse a 7629169 record; None when it is not a JSON object."""
    try:
        data = _loads(raw.decode("utf-8", errors="replace").strip().rstrip("\x00"))
    except (ValueError, RecursionError):  # deeply nested JSON from a hostile sender
        return None
    if not isinstance(data, dict):
        return None
    if "feedID" not in data and "feedId" in data:
        data["feedID"] = data["feedId"]
    for key in _INT_FIELDS & data.keys():
        data[key] = _as_int(data[key])
    return data


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\x00")


def parse_records(records: Mapping[int, bytes]) -> ParsedRecords:
    """Pull the boostagram and the chat message out of keysend TLV records."""
    boost = records.get(BOOSTAGRAM)
    message = records.get(CHAT_MESSAGE)
    return ParsedRecords(
        boostagram=parse_boostagram(boost) if boost is not None else None,
        keysend_message=_text(message) if message is not None else None,
    )


def records_to_json(records: Mapping[int, bytes]) -> str | None:
    """Alby's wire form: decimal-string TLV type -> base64 value."""
    if not records:
        return None
    return json.dumps(
        {str(k): base64.b64encode(v).decode() for k, v in sorted(records.items())},
        separators=(",", ":"),
    )


def records_from_json(text: str | None) -> dict[int, bytes]:
    if not text:
        return {}
    return {int(k): base64.b64decode(v) for k, v in json.loads(text).items()}


def parse_record_value(text: str) -> bytes:
    """A record value given on the command line or in /dev/keysend.

    `hex:0a0b` is raw bytes; anything else is UTF-8 text. ValueError when
    it is neither: bad hex, or a lone surrogate, which UTF-8 cannot encode.
    """
    if text.startswith("hex:"):
        try:
            return bytes.fromhex(text[4:])
        except ValueError:
            raise ValueError("invalid hex after hex:") from None
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("is not valid Unicode text (a lone surrogate)") from None


# -- rss::payment ---------------------------------------------------------------------
#
# A boost sent to a Lightning Address cannot carry a TLV record, so the
# Podcasting 2.0 "RSS Payment Metadata" convention puts
# `rss::payment::<action> <url> <truncated message>` in the LUD-12 comment
# (or the BOLT11 description, or a keysend chat message), and the response to
# `<url>` carries the whole record as URI-encoded JSON in an `x-rss-payment`
# header. Its field names differ from bLIP-10's for the same facts; they are
# renamed so a boost looks the same however it arrived.

RSS_PAYMENT_HEADER = "x-rss-payment"
RSS_PAYMENT_PREFIX = "rss::payment::"
_RSS_PAYMENT = re.compile(r"\s*rss::payment::(\S+)\s+(https?://\S+)(?:\s+(.*))?", re.S)
# x-rss-payment name -> bLIP-10 name, for the same fact.
RSS_TO_BLIP10 = {
    "feed_guid": "guid",
    "feed_title": "podcast",
    "item_guid": "episode_guid",
    "item_title": "episode",
    "position": "ts",
    "recipient_name": "name",
    "id": "uuid",
    "group": "boost_uuid",
}


@dataclass(frozen=True, slots=True)
class RssPaymentRef:
    """What the comment says: the action, the URL to fetch, the short message."""

    action: str
    url: str
    message: str | None


def rss_payment_ref(text: str | None) -> RssPaymentRef | None:
    """`rss::payment::<action> <url> <message>` at the start of `text`, or None."""
    if not text:
        return None
    match = _RSS_PAYMENT.fullmatch(text)
    if match is None:
        return None
    action, url, message = match.groups()
    return RssPaymentRef(action.lower(), url, (message or "").strip() or None)


def parse_rss_payment(header: str, ref: RssPaymentRef | None = None) -> dict[str, Any] | None:
    """The boostagram an `x-rss-payment` header value describes; None when it is
    not URI-encoded JSON holding an object.

    Fields with a bLIP-10 counterpart are renamed to it (a bLIP-10 name sent
    as well wins); everything else is kept as sent, and numbers are made
    lenient exactly as in `parse_boostagram`. The action and message of the
    comment fill in when the header lacks them.
    """
    try:
        data = _loads(urllib.parse.unquote(header.strip(), errors="replace"))
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    for rss_name, blip_name in RSS_TO_BLIP10.items():
        if rss_name in data:
            value = data.pop(rss_name)
            data.setdefault(blip_name, value)
    for key in _INT_FIELDS & data.keys():
        data[key] = _as_int(data[key])
    if ref is not None:
        data.setdefault("action", ref.action)
        if ref.message is not None:
            data.setdefault("message", ref.message)
    return data
