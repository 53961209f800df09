"""NIP-57 (Lightning Zaps) without I/O: reading a zap request, building its receipt.

A Nostr client zapping a Lightning Address sends a signed kind 9734 event,
the zap request, in the LNURL-pay callback's `nostr` parameter instead of
publishing it. The invoice's description hash is then SHA-256 of that text
exactly as received (the description is the zap request and nothing else),
and once the invoice is paid the address's server publishes a kind 9735
zap receipt, signed with the key its LNURL-pay answer named
(`nostrPubkey`), to the relays the request listed. Clients show a zap only
when such a receipt exists and verifies.

Facts used (NIP-57, docs/lnurl.md): the checks of Appendix D (valid
signature, tags, exactly one `p`, at most one `e`, at most one `P`, `a` a
valid event coordinate, `amount` equal to the callback's amount, a `relays`
tag); the receipt of Appendix E (`p`, optional `e`, `a`, `P` = the
request's author, `bolt11`, `description` = the request's JSON, optional
`preimage`; `created_at` the payment time, empty content).
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import nostr_sdk as ns

ZAP_REQUEST, ZAP_RECEIPT = 9734, 9735
# A callback URL holds a few kilobytes at most; a zap request with a long
# relay list and comment is well under this.
MAX_REQUEST_CHARS = 8192
MAX_RELAYS = 10  # relays a receipt is published to, the first usable ones listed
MAX_RELAY_URL = 512
_HEX64 = re.compile(r"[0-9a-f]{64}")
_COORDINATE = re.compile(r"(\d{1,10}):([0-9a-f]{64}):(.*)", re.DOTALL)


class ZapRequestError(ValueError):
    """A zap request the callback must refuse; the message is the reason."""


@dataclass(frozen=True)
class ZapRequest:
    text: str  # as received: its SHA-256 is the invoice's description hash
    sender: str  # the request's author (hex), the zap receipt's `P`
    content: str  # the zap comment
    relays: tuple[str, ...]  # where its receipt goes: ws(s) URLs, at most MAX_RELAYS
    event: dict[str, Any]  # the request as parsed, for the invoice's `metadata.zap_request`

    @property
    def description_hash(self) -> str:
        return description_hash(self.text)


def description_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def relay_url(value: str) -> bool:
    """A `ws://` or `wss://` URL with a host and a valid port, no credentials,
    nothing a request line cannot carry. Whether its address may be reached
    is decided when the receipt is sent (the SSRF guard, `lnplugin.zapper`)."""
    if len(value) > MAX_RELAY_URL or re.search(r"[\x00-\x20\x7f]", value) or not value.isascii():
        return False
    try:
        parts = urllib.parse.urlsplit(value)
        port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme in ("ws", "wss")
        and bool(parts.hostname)
        and port != 0
        and parts.username is None
        and parts.password is None
    )


def parse_request(text: str, amount_msat: int) -> ZapRequest:
    """The `nostr` parameter of a callback for `amount_msat`, checked as
    NIP-57 Appendix D says; ZapRequestError names what is wrong."""
    if len(text) > MAX_REQUEST_CHARS:
        raise ZapRequestError(f"nostr must be at most {MAX_REQUEST_CHARS} characters")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise ZapRequestError("nostr must be a zap request: a nostr event as JSON") from None
    if not isinstance(data, dict):
        raise ZapRequestError("nostr must be a zap request: a nostr event as JSON")
    if data.get("kind") != ZAP_REQUEST:
        raise ZapRequestError(f"nostr must be a zap request (kind {ZAP_REQUEST})")
    tags = data.get("tags")
    if not isinstance(tags, list) or not all(
        isinstance(t, list) and t and all(isinstance(v, str) for v in t) for t in tags
    ):
        raise ZapRequestError("nostr zap request's tags must be lists of text")
    if not _signed(text):
        raise ZapRequestError("nostr zap request has no valid signature (id, pubkey or sig)")
    if not tags:
        raise ZapRequestError("nostr zap request has no tags")
    by_name: dict[str, list[list[str]]] = {}
    for tag in tags:
        by_name.setdefault(tag[0], []).append(tag)
    p = by_name.get("p", [])
    if len(p) != 1:
        raise ZapRequestError(f"nostr zap request must have exactly one p tag (it has {len(p)})")
    if len(p[0]) < 2 or not _HEX64.fullmatch(p[0][1]):
        raise ZapRequestError("nostr zap request's p tag must be a hex public key")
    for name in ("e", "P"):
        found = by_name.get(name, [])
        if len(found) > 1:
            raise ZapRequestError(
                f"nostr zap request must have at most one {name} tag (it has {len(found)})"
            )
        if found and (len(found[0]) < 2 or not _HEX64.fullmatch(found[0][1])):
            kind = "event id" if name == "e" else "public key"
            raise ZapRequestError(f"nostr zap request's {name} tag must be a hex {kind}")
    for tag in by_name.get("a", []):
        if len(tag) < 2 or not _COORDINATE.fullmatch(tag[1]):
            raise ZapRequestError(
                "nostr zap request's a tag must be an event coordinate (kind:pubkey:d)"
            )
    for tag in by_name.get("amount", []):
        if len(tag) < 2 or tag[1] != str(amount_msat):
            raise ZapRequestError(
                f"nostr zap request's amount tag must equal the amount ({amount_msat})"
            )
    if "relays" not in by_name:
        raise ZapRequestError("nostr zap request has no relays tag")
    relays: list[str] = []
    for tag in by_name["relays"]:
        for url in tag[1:]:
            if relay_url(url) and url not in relays and len(relays) < MAX_RELAYS:
                relays.append(url)
    if not relays:
        raise ZapRequestError("nostr zap request's relays tag names no ws:// or wss:// relay")
    return ZapRequest(
        text=text,
        sender=str(data["pubkey"]),
        content=_text(data.get("content")),
        relays=tuple(relays),
        event=data,
    )


def _text(value: Any) -> str:
    """The comment as text the store can write: "" for a non-string, or one
    with a lone surrogate (JSON's "\\ud800"), which is no text."""
    if not isinstance(value, str):
        return ""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return ""
    return value


def _signed(text: str) -> bool:
    """Whether the event's id is its hash and its signature is its author's (nostr-sdk).

    nostr-sdk is imported at the first zap request, not with this module: the
    LNURL routes import it, and the bindings are the largest import of the
    server's start."""
    import nostr_sdk as ns

    try:
        return bool(ns.Event.from_json(text).verify())
    except Exception:  # the bindings raise their own error types for malformed events
        return False


def receipt(
    keys: ns.Keys, request_text: str, bolt11: str, preimage: str | None, paid_at: int
) -> str:
    """The signed kind 9735 zap receipt's JSON, dated `paid_at`: the same
    request and payment give the same event id however often it is built."""
    import nostr_sdk as ns  # the zap worker that calls this has it loaded already

    request: dict[str, Any] = json.loads(request_text)
    tags = [t for t in request["tags"] if t[0] in ("p", "e", "a", "k")]
    tags.append(["P", request["pubkey"]])
    tags.append(["bolt11", bolt11])
    tags.append(["description", request_text])
    if preimage:
        tags.append(["preimage", preimage])
    builder = (
        ns.EventBuilder(ns.Kind(ZAP_RECEIPT), "")
        .tags([ns.Tag.parse(t) for t in tags])
        .custom_created_at(ns.Timestamp.from_secs(paid_at))
    )
    return str(keys.sign_event(builder.finalize_unsigned(keys.public_key())).as_json())
