"""NIP-57 zap requests and receipts without I/O (`lnplugin/zaps.py`); the
whole flow, relay and all, is tests/test_zaps_e2e.py."""

from __future__ import annotations

import json

import nostr_sdk as ns
import pytest

from lnplugin import zaps

RECIPIENT = "32e1827635450ebb3c5a7d12c1f8e7b2b514439ac10a67eef3d9fd9c5c68e245"


def _request(tags: list[list[str]], content: str = "") -> str:
    sender = ns.Keys.generate()
    builder = ns.EventBuilder(ns.Kind(9734), content).tags([ns.Tag.parse(t) for t in tags])
    return str(sender.sign_event(builder.finalize_unsigned(sender.public_key())).as_json())


def test_relays_are_ws_urls_without_credentials_deduplicated_and_capped() -> None:
    listed = [
        "https://relay.example",
        "wss://user:pw@relay.example",
        "wss://a.example",
        "wss://a.example",
        "ws://b.example:0",
        *(f"wss://r{i}.example" for i in range(20)),
    ]
    parsed = zaps.parse_request(_request([["relays", *listed], ["p", RECIPIENT]]), 1000)
    assert parsed.relays[0] == "wss://a.example"
    assert len(parsed.relays) == zaps.MAX_RELAYS
    assert "wss://r8.example" in parsed.relays and "wss://r9.example" not in parsed.relays


def test_a_lone_surrogate_in_the_content_is_no_comment() -> None:
    text = _request([["relays", "wss://a.example"], ["p", RECIPIENT]], "ok")
    broken = text.replace('"content":"ok"', '"content":"\\ud800"')
    with pytest.raises(zaps.ZapRequestError, match="signature"):  # the id covers the content
        zaps.parse_request(broken, 1000)
    assert zaps._text("\ud800") == "" and zaps._text("hi") == "hi"


def test_the_receipt_is_the_same_event_however_often_it_is_built() -> None:
    """What makes a resend after a restart the same event to a relay (NIP-01
    ids are the hash of the content), so each zap has one receipt."""
    keys = ns.Keys.generate()
    text = _request(
        [["relays", "wss://a.example"], ["p", RECIPIENT], ["a", f"30023:{RECIPIENT}:x"]]
    )
    first = json.loads(zaps.receipt(keys, text, "lnbcrt1x", "00" * 32, 1_700_000_000))
    second = json.loads(zaps.receipt(keys, text, "lnbcrt1x", "00" * 32, 1_700_000_000))
    assert first["id"] == second["id"]
    assert first["created_at"] == 1_700_000_000 and first["kind"] == 9735
    assert ["a", f"30023:{RECIPIENT}:x"] in first["tags"]
    assert ["description", text] in first["tags"]
    assert ns.Event.from_json(json.dumps(first)).verify()
    without = json.loads(zaps.receipt(keys, text, "lnbcrt1x", None, 1_700_000_000))
    assert not any(t[0] == "preimage" for t in without["tags"])


@pytest.mark.parametrize(
    "tags,reason",
    [
        ([["relays", "wss://a.example"], ["p", RECIPIENT], ["P", "xx"]], "P tag must be a hex"),
        (
            [["relays", "wss://a.example"], ["p", RECIPIENT], ["P", RECIPIENT], ["P", RECIPIENT]],
            "at most one P tag",
        ),
        ([["relays", "wss://a.example"], ["p", "XYZ"]], "p tag must be a hex"),
        ([["relays", "wss://a.example"], ["p", RECIPIENT], ["amount", "999"]], "amount"),
    ],
)
def test_more_refusals(tags: list[list[str]], reason: str) -> None:
    with pytest.raises(zaps.ZapRequestError, match=reason):
        zaps.parse_request(_request(tags), 1000)


def test_an_overlong_request_is_refused_before_it_is_parsed() -> None:
    with pytest.raises(zaps.ZapRequestError, match="at most"):
        zaps.parse_request("x" * (zaps.MAX_REQUEST_CHARS + 1), 1000)
