"""Parse the raw onion hop payload Core Lightning hands to `htlc_accepted`.

CLN never shows keysend TLV records in `listinvoices`; the only reliable place
to see them is the `onion.payload` hex of the `htlc_accepted` hook: a BigSize
length prefix followed by a BOLT4 TLV stream whose types and lengths are
BigSize too (docs/protocols.md#cln-htlc_accepted-hook and
#tlv-streams-and-bigsize). Plugin mode stores the custom records
(type >= 65536: boostagrams 7629169, messages 34349334, ...) by payment hash.

This module is pure and strict so the hook can call it on untrusted input and
rely on exactly one failure mode: anything malformed raises `TlvError`, which
the hook logs before answering `continue` (it must never fail a payment).
"""

from __future__ import annotations

from collections.abc import Mapping

from lnplugin.boostagram import KEYSEND_PREIMAGE as KEYSEND_PREIMAGE_TYPE

CUSTOM_RECORD_MIN = 65536  # BOLT: types below this are reserved for the protocol


class TlvError(ValueError):
    """The payload is not a well-formed length-prefixed TLV stream."""


def read_bigsize(data: bytes, pos: int) -> tuple[int, int]:
    """Decode one BigSize at `pos`; return (value, next position).

    Non-minimal encodings are rejected, as BOLT1 requires, so one value has
    exactly one byte representation (no two payloads alias).
    """
    if pos >= len(data):
        raise TlvError("truncated BigSize")
    first = data[pos]
    if first < 0xFD:
        return first, pos + 1
    width, minimum = {0xFD: (2, 0xFD), 0xFE: (4, 0x10000), 0xFF: (8, 0x100000000)}[first]
    end = pos + 1 + width
    if end > len(data):
        raise TlvError("truncated BigSize")
    value = int.from_bytes(data[pos + 1 : end], "big")
    if value < minimum:
        raise TlvError("non-minimal BigSize")
    return value, end


def encode_bigsize(value: int) -> bytes:
    """The minimal BigSize encoding of `value` (0 <= value < 2**64)."""
    if not 0 <= value < 1 << 64:
        raise TlvError(f"BigSize out of range: {value}")
    if value < 0xFD:
        return bytes([value])
    if value < 0x10000:
        return b"\xfd" + value.to_bytes(2, "big")
    if value < 0x100000000:
        return b"\xfe" + value.to_bytes(4, "big")
    return b"\xff" + value.to_bytes(8, "big")


def parse_tlv_stream(data: bytes) -> dict[int, bytes]:
    """Every record of a TLV stream; types must strictly increase (BOLT1)."""
    records: dict[int, bytes] = {}
    pos = 0
    last_type = -1
    while pos < len(data):
        tlv_type, pos = read_bigsize(data, pos)
        length, pos = read_bigsize(data, pos)
        if tlv_type <= last_type:
            raise TlvError(f"TLV type {tlv_type} is not strictly increasing")
        if pos + length > len(data):
            raise TlvError(f"TLV {tlv_type} value truncated")
        records[tlv_type] = data[pos : pos + length]
        pos += length
        last_type = tlv_type
    return records


def parse_onion_payload(payload: str | bytes) -> dict[int, bytes]:
    """All records of a length-prefixed hop payload (hex string or bytes).

    The prefix must match the remaining bytes exactly; a 0x00 prefix is the
    legacy (pre-TLV) hop format, which carries no custom records and is
    rejected here rather than misread.
    """
    if isinstance(payload, str):
        try:
            data = bytes.fromhex(payload)
        except ValueError:
            raise TlvError("payload is not hex") from None
    else:
        data = bytes(payload)
    length, pos = read_bigsize(data, 0)
    if length == 0:
        raise TlvError("legacy (non-TLV) hop payload")
    if len(data) - pos != length:
        raise TlvError(f"length prefix {length} != {len(data) - pos} payload bytes")
    return parse_tlv_stream(data[pos:])


def custom_records(payload: str | bytes) -> dict[int, bytes]:
    """The custom records (type >= 65536) of a hop payload, minus the keysend preimage.

    The preimage (5482373484) is a secret, not user data; CLN's keysend plugin
    strips it before later plugins see the payload anyway.
    """
    return {
        t: v
        for t, v in parse_onion_payload(payload).items()
        if t >= CUSTOM_RECORD_MIN and t != KEYSEND_PREIMAGE_TYPE
    }


def encode_payload(records: Mapping[int, bytes]) -> str:
    """Hex of a length-prefixed TLV stream (used by the simulator and tests)."""
    body = b"".join(
        encode_bigsize(t) + encode_bigsize(len(v)) + bytes(v) for t, v in sorted(records.items())
    )
    if not body:
        raise TlvError("empty TLV stream")
    return (encode_bigsize(len(body)) + body).hex()
