"""NIP-47 without I/O: read a request event, build response, info and
notification events, and map invoices to NIP-47 transaction objects.

Kept apart from the relay connections (`relay.py`) and the worker that runs
methods against the store (`worker.py`), so every rule here is unit-tested
with plain values. Keys, event verification and decryption come from
rust-nostr's bindings (`nostr_sdk`), signatures from coincurve
(libsecp256k1's BIP-340). Encryption is put together here from
`cryptography`'s ChaCha20 and AES and the standard library's HMAC, under a
key derived once per app (see "encryption with a cached key per app"
below for why); tests/test_nwc_protocol.py holds it to the official NIP-44
vectors byte for byte and decrypts its output with nostr-sdk.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import hmac
import json
import os
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import coincurve
import nostr_sdk as ns
import orjson
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from lnplugin import compactjson
from lnplugin.alby import effective_state
from lnplugin.boostagram import records_from_json
from lnplugin.store.models import StoredInvoice

REQUEST, RESPONSE, INFO = 23194, 23195, 13194
AUTH = 22242  # NIP-42: a client's answer to a relay's challenge
NOTIFICATION_NIP44, NOTIFICATION_NIP04 = 23197, 23196
NIP44, NIP04 = "nip44_v2", "nip04"
ENCRYPTIONS = (NIP44, NIP04)
# Requests larger than this are dropped unread: a make_invoice with the
# largest allowed metadata (4096 characters) fits many times over.
MAX_CONTENT = 32 * 1024
MAX_METADATA = 4096  # NIP-47: larger metadata MUST be dropped
MAX_PAGE = 50  # list_transactions page size cap
# The largest answer sent, in bytes of plaintext, so that its event fits the
# 64 KB NIP-47 asks relays to take (rust-nostr's relay refuses events over
# 65,536 bytes). NIP-44 pads a message of over 32 KiB up to the next 8 KiB
# and base64 adds a third: 40,960 bytes make an event of ~55 KB, the next
# step (49,152) one of ~66 KB. NIP-04's events are smaller still.
MAX_ANSWER = 40960

# Offered only when the node declares hold invoices (`Feature.HOLD_INVOICES`).
HOLD_METHODS = ("make_hold_invoice", "settle_hold_invoice", "cancel_hold_invoice")
# What each token scope lets a connection call (docs/nwc.md).
SCOPE_METHODS = {
    "invoices:create": ("make_invoice", *HOLD_METHODS),
    "invoices:read": ("lookup_invoice", "list_transactions"),
    "transactions:read": ("lookup_invoice", "list_transactions"),
}
METHODS = ("get_info", "make_invoice", "lookup_invoice", "list_transactions", *HOLD_METHODS)
NOTIFICATIONS = ("payment_received", "hold_invoice_accepted")


class Drop(Exception):
    """The event is not an answerable request (bad signature, wrong kind, not
    for us, undecryptable, too large, expired): drop it with one log line."""


class Refuse(Exception):
    """Answer the request with a NIP-47 error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Request:
    event_id: str
    app_pubkey: str  # hex
    method: str
    params: dict[str, Any]
    encryption: str  # NIP44 or NIP04; what the answer is encrypted with
    created_at: int


def keys_from_hex(secret_hex: str) -> ns.Keys:
    return ns.Keys(ns.SecretKey.parse(secret_hex))


def new_key_pair() -> tuple[str, str]:
    """A fresh nostr key pair: (public key hex, secret key hex)."""
    keys = ns.Keys.generate()
    return keys.public_key().to_hex(), keys.secret_key().to_hex()


def offered(hold: bool) -> tuple[list[str], list[str]]:
    """The methods and notifications this wallet offers: the hold ones only
    on a node that can hold invoices."""
    if hold:
        return list(METHODS), list(NOTIFICATIONS)
    return [m for m in METHODS if m not in HOLD_METHODS], ["payment_received"]


def methods_for(scopes: frozenset[str], hold: bool = False) -> list[str]:
    allowed = {"get_info"}
    for scope in scopes:
        allowed.update(SCOPE_METHODS.get(scope, ()))
    return [m for m in offered(hold)[0] if m in allowed]


def notifications_for(scopes: frozenset[str], hold: bool = False) -> list[str]:
    """Notifications go to connections that may read incoming payments."""
    return offered(hold)[1] if "invoices:read" in scopes else []


def _tags(event: ns.Event) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for tag in event.tags():
        vec = tag.to_vec()
        if vec and vec[0] not in out:
            out[vec[0]] = vec[1:]
    return out


def parse_event(raw: dict[str, Any] | str) -> ns.Event:
    """A signed event from its JSON; raises `Drop` when it is not one."""
    text = raw if isinstance(raw, str) else json.dumps(raw)
    if len(text) > MAX_CONTENT + 4096:
        raise Drop(f"event of {len(text)} bytes is over the size cap")
    try:
        event = ns.Event.from_json(text)
    except Exception as exc:  # the library raises its own error type
        raise Drop(f"not a nostr event ({exc})") from None
    if not event.verify():
        raise Drop("bad id or signature")
    return event


def addressee(raw: dict[str, Any]) -> str:
    """The wallet key a request is for: its first `p` tag (empty when none).

    Read from the event's JSON (checked by `parse_event` first) rather than
    from nostr-sdk's event, whose tags cross the bindings one call each."""
    for tag in raw.get("tags") or ():
        if isinstance(tag, list) and len(tag) >= 2 and tag[0] == "p":
            return str(tag[1])
    return ""


def read_request(event: ns.Event, keys: ns.Keys, now: int) -> Request:
    """Decrypt and validate a kind 23194 event addressed to `keys`.

    Raises `Drop` for what must not be answered, and `Refuse` for what is
    answered with an error. The encryption must be known before a `Refuse`
    can be encrypted, so an unsupported one is answered with NIP-04 (the
    scheme every client understands).
    """
    if event.kind().as_u16() != REQUEST:
        raise Drop(f"kind {event.kind().as_u16()} is not a request")
    tags = _tags(event)
    if tags.get("p", [""])[0] != keys.public_key().to_hex():
        raise Drop("request is addressed to another wallet")
    expiration = tags.get("expiration")
    if expiration:
        try:
            expires = int(expiration[0])
        except ValueError:
            raise Drop("unreadable expiration tag") from None
        if expires < now:  # NIP-47: ignored when received *after* that time
            raise Drop("request expired")
    if len(event.content()) > MAX_CONTENT:
        raise Drop(f"content of {len(event.content())} bytes is over the size cap")
    encryption = (tags.get("encryption") or [NIP04])[0]
    base = Request(
        event_id=event.id().to_hex(),
        app_pubkey=event.author().to_hex(),
        method="",
        params={},
        encryption=encryption if encryption in ENCRYPTIONS else NIP04,
        created_at=event.created_at().as_secs(),
    )
    if encryption not in ENCRYPTIONS:
        refusal = Refuse("UNSUPPORTED_ENCRYPTION", f"encryption {encryption!r} is not supported")
        raise Refused(base, refusal)
    try:
        plain = decrypt(keys, event.author(), encryption, event.content())
        body = json.loads(plain)
    except Exception as exc:
        raise Drop(f"undecryptable request ({type(exc).__name__})") from None
    if not isinstance(body, dict) or not isinstance(body.get("method"), str):
        raise Drop("request has no method")
    params = body.get("params") or {}
    request = Request(
        event_id=base.event_id,
        app_pubkey=base.app_pubkey,
        method=body["method"][:64],
        params=params if isinstance(params, dict) else {},
        encryption=encryption,
        created_at=base.created_at,
    )
    if not isinstance(params, dict):
        raise Refused(request, Refuse("OTHER", "params must be an object"))
    return request


class Refused(Exception):
    """A request read far enough to be answered, with the error to answer."""

    def __init__(self, request: Request, refusal: Refuse) -> None:
        super().__init__(refusal.message)
        self.request = request
        self.refusal = refusal


def decrypt(keys: ns.Keys, author: ns.PublicKey, encryption: str, content: str) -> str:
    if encryption == NIP44:
        return keys.nip44_decrypt(author, content)
    return keys.nip04_decrypt(author, content)


def encrypt(keys: ns.Keys, peer: ns.PublicKey | str, encryption: str, content: str) -> str:
    """`content` encrypted from `keys` to `peer` (a key or its hex)."""
    peer_hex = peer if isinstance(peer, str) else peer.to_hex()
    if encryption == NIP44:
        return nip44_encrypt(conversation_key(_own(keys)[1], peer_hex), content)
    return nip04_encrypt(shared_x(_own(keys)[1], peer_hex), content)


# -- encryption with a cached key per app -----------------------------------------
#
# nostr-sdk derives the key (an ECDH, for NIP-44 also an HKDF-extract) on every
# call and copies each string through its bindings; a payment fanned out to a
# hundred apps paid that a hundred times (~0.2 ms an event). Here the key is
# derived once per app and kept, and the message is encrypted with
# `cryptography`'s ChaCha20 (NIP-44 v2) or AES-CBC (NIP-04) and the standard
# library's HMAC-SHA256 (~20 µs). tests/test_nwc_protocol.py checks NIP-44
# against the official vectors (same conversation keys, byte-identical
# payloads for the vectors' nonces), and both by decrypting with nostr-sdk.
# Decryption (requests) stays with nostr-sdk.

_NIP44_SALT = b"nip44-v2"


@functools.lru_cache(maxsize=4096)
def shared_x(secret_hex: str, peer_hex: str) -> bytes:
    """The x coordinate of secret x peer (ECDH); `peer` is a BIP-340 x-only key,
    lifted to its even-y point. NIP-04's key as it is."""
    point = coincurve.PublicKey(b"\x02" + bytes.fromhex(peer_hex))
    return point.multiply(bytes.fromhex(secret_hex)).format(compressed=True)[1:]


@functools.lru_cache(maxsize=4096)
def conversation_key(secret_hex: str, peer_hex: str) -> bytes:
    """NIP-44 v2: HKDF-extract(salt "nip44-v2", the shared x coordinate)."""
    return hmac.new(_NIP44_SALT, shared_x(secret_hex, peer_hex), hashlib.sha256).digest()


def nip04_encrypt(key: bytes, plaintext: str) -> str:
    """NIP-04: AES-256-CBC under the shared x, PKCS#7, `base64(ct)?iv=base64(iv)`."""
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext.encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    return f"{base64.b64encode(ciphertext).decode()}?iv={base64.b64encode(iv).decode()}"


def _padded_length(length: int) -> int:
    if length <= 32:
        return 32
    next_power = 1 << (length - 1).bit_length()
    chunk = 32 if next_power <= 256 else next_power // 8
    return chunk * ((length - 1) // chunk + 1)


def nip44_encrypt(key: bytes, plaintext: str, nonce: bytes | None = None) -> str:
    """A NIP-44 v2 payload (base64) of `plaintext` under conversation key `key`."""
    data = plaintext.encode()
    if not 1 <= len(data) <= 65535:
        raise ValueError("NIP-44 plaintext must be 1 to 65535 bytes")
    nonce = os.urandom(32) if nonce is None else nonce
    okm, block, counter = b"", b"", 1  # HKDF-expand(key, info=nonce, 76 bytes)
    while len(okm) < 76:
        block = hmac.new(key, block + nonce + bytes([counter]), hashlib.sha256).digest()
        okm += block
        counter += 1
    chacha_key, chacha_nonce, hmac_key = okm[:32], okm[32:44], okm[44:76]
    padded = len(data).to_bytes(2, "big") + data + bytes(_padded_length(len(data)) - len(data))
    # cryptography's ChaCha20 nonce is the 32-bit block counter (0) then the 96-bit nonce.
    cipher = Cipher(algorithms.ChaCha20(chacha_key, bytes(4) + chacha_nonce), mode=None)
    ciphertext = cipher.encryptor().update(padded)
    mac = hmac.new(hmac_key, nonce + ciphertext, hashlib.sha256).digest()
    return base64.b64encode(b"\x02" + nonce + ciphertext + mac).decode()


def result(method: str, value: dict[str, Any] | None) -> dict[str, Any]:
    return {"result_type": method, "error": None, "result": value}


def fit_page(method: str, transactions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The longest leading part of `transactions` whose answer stays within
    `MAX_ANSWER`. Twenty transactions with long descriptions and metadata
    near NIP-47's 4096 characters are far over it: such an answer could not
    be encrypted (NIP-44 holds 65,535 bytes) or was refused by the relay, so
    the app got no answer at all. A shorter page is an answer, and the app
    pages on from its offset plus what it got. Never empty while there is a
    transaction: one alone is far smaller (its metadata is at most 4096
    characters, its description 639 bytes)."""
    size = len(compactjson.dumps(result(method, {"transactions": []})).encode())
    for i, tx in enumerate(transactions):
        size += len(compactjson.dumps(tx).encode()) + (1 if i else 0)  # the comma
        if size > MAX_ANSWER:
            return transactions[:i]
    return transactions


def error(method: str, code: str, message: str) -> dict[str, Any]:
    return {"result_type": method, "error": {"code": code, "message": message}, "result": None}


@dataclass(frozen=True, slots=True)
class SignedEvent:
    id: str
    json: str

    def as_json(self) -> str:
        return self.json


def _sign(
    keys: ns.Keys, kind: int, content: str, tags: list[list[str]], not_before: int = 0
) -> SignedEvent:
    """A NIP-01 event: id = SHA-256 of the canonical array, BIP-340 signature.

    Serialising here and signing with coincurve's libsecp256k1 costs a fifth
    of building the event through nostr-sdk's bindings (whose per-call
    marshalling dominates), which matters when one payment fans out to
    hundreds of connections. The tests verify every event with nostr-sdk.
    Content is base64 and tags are hex here, so JSON's escaping is NIP-01's;
    orjson writes compact UTF-8, NIP-01's form, at a tenth of `json.dumps`'s
    cost with non-default separators.
    """
    pubkey, _, secret = _own(keys)
    created_at = max(int(time.time()), not_before)
    canonical = orjson.dumps([0, pubkey, created_at, kind, tags, content])
    digest = hashlib.sha256(canonical).digest()
    sig = secret.sign_schnorr(digest, os.urandom(32))
    event = {
        "id": digest.hex(),
        "pubkey": pubkey,
        "created_at": created_at,
        "kind": kind,
        "tags": tags,
        "content": content,
        "sig": sig.hex(),
    }
    return SignedEvent(digest.hex(), orjson.dumps(event).decode())


# The service's keys as hex and as coincurve's key, read out of nostr-sdk once
# per `Keys` object (each read crosses the bindings: ~50 µs an event).
_OWN: dict[int, tuple[ns.Keys, str, str, coincurve.PrivateKey]] = {}


def _own(keys: ns.Keys) -> tuple[str, str, coincurve.PrivateKey]:
    """(public key hex, secret key hex, signing key) of `keys`."""
    known = _OWN.get(id(keys))
    if known is None or known[0] is not keys:
        secret_hex = keys.secret_key().to_hex()
        known = (
            keys,
            keys.public_key().to_hex(),
            secret_hex,
            coincurve.PrivateKey(bytes.fromhex(secret_hex)),
        )
        _OWN[id(keys)] = known  # holds `keys`, so its id is not reused meanwhile
    return known[1], known[2], known[3]


def response_event(keys: ns.Keys, request: Request, body: dict[str, Any]) -> SignedEvent:
    plain = compactjson.dumps(body)
    content = encrypt(keys, request.app_pubkey, request.encryption, plain)
    tags = [["p", request.app_pubkey], ["e", request.event_id]]
    if request.encryption == NIP44:
        tags.append(["encryption", NIP44])
    return _sign(keys, RESPONSE, content, tags)


def info_event(
    keys: ns.Keys,
    hold: bool = False,
    scopes: frozenset[str] | None = None,
    not_before: int = 0,
) -> SignedEvent:
    """The replaceable kind 13194 event of one wallet key (`hold`: the node
    can hold invoices). With the `scopes` of the connection the key is for,
    what that connection may call and hear, as its `get_info` says: each
    connection has a key of its own, so an app reading the info event (as
    Alby's SDK does, for the wallet's capabilities) is not offered methods
    it would get RESTRICTED for. Without (a spare key, the shared one), all
    the wallet offers.

    Dated `not_before` at the earliest: a replaceable event replaces another
    only when newer, and a spare's info event may be from this very second."""
    if scopes is None:
        methods, notifications = offered(hold)
    else:
        methods, notifications = methods_for(scopes, hold), notifications_for(scopes, hold)
    content = " ".join([*methods, *(["notifications"] if notifications else [])])
    tags = [["encryption", " ".join(ENCRYPTIONS)]]
    if notifications:
        tags.append(["notifications", " ".join(notifications)])
    return _sign(keys, INFO, content, tags, not_before)


def notification_events(
    keys: ns.Keys,
    app_pubkey: str,
    notification_type: str,
    notification: dict[str, Any],
) -> list[SignedEvent]:
    """One notification as NIP-47 asks of a wallet offering both schemes:
    kind 23197 with NIP-44 and kind 23196 with NIP-04. Both always, whatever
    scheme the app's requests use: a client picks the kind it listens to
    from the info event, and one connection string may be in two apps."""
    plain = compactjson.dumps(
        {"notification_type": notification_type, "notification": notification}
    )
    schemes = ((NOTIFICATION_NIP44, NIP44), (NOTIFICATION_NIP04, NIP04))
    return [
        _sign(keys, kind, encrypt(keys, app_pubkey, scheme, plain), [["p", app_pubkey]])
        for kind, scheme in schemes
    ]


def auth_event(keys: ns.Keys, relay_url: str, challenge: str) -> SignedEvent:
    """NIP-42's answer to a relay's `["AUTH", <challenge>]`: kind 22242 with
    `relay` and `challenge` tags, signed by one wallet key. Relays never
    pass it on to anyone."""
    return _sign(keys, AUTH, "", [["relay", relay_url], ["challenge", challenge]])


def connection_uri(
    service_pubkey: str, relays: list[str], secret_hex: str, lud16: str | None = None
) -> str:
    """NIP-47's URI; `lud16` (recommended) is the Lightning Address an app
    may put in its user's profile, URL-encoded like the relays."""
    query = [*(f"relay={quote(r, safe='')}" for r in relays), f"secret={secret_hex}"]
    if lud16:
        query.append(f"lud16={quote(lud16, safe='')}")
    return f"nostr+walletconnect://{service_pubkey}?{'&'.join(query)}"


# -- transaction objects ------------------------------------------------------------

_STATES = {
    "SETTLED": "settled",
    "OPEN": "pending",
    "CREATED": "pending",  # OPEN, as `effective_state` names it until it expires
    "ACCEPTED": "accepted",
    "EXPIRED": "expired",
    "CANCELED": "failed",
    "FAILED": "failed",
}


def metadata(inv: StoredInvoice, address_domain: str | None = None) -> dict[str, Any]:
    """What NIP-47 clients recognise: comment, payer_data, the boostagram and
    keysend TLV records; plus the metadata the invoice was created with.

    An address payment's stored metadata is the payer data as received
    (`payer_data`, Alby's key, holding LUD-18's `payerdata`); NIP-47's
    `payer_data` is made here from the kinds the address asked for instead,
    so what a payer sent unasked is not passed on to apps.

    `recipient_data.identifier` is the Lightning Address paid (NIP-47: "the
    lightning address of the recipient"): the store keeps its username, and
    `address_domain` (of `--public-url`) completes it; without one, the
    username alone."""
    out: dict[str, Any] = {}
    if inv.metadata:
        try:
            stored = json.loads(inv.metadata)
        except ValueError:
            stored = None
        if isinstance(stored, dict):
            if inv.source == "lnurl":
                stored.pop("payer_data", None)
            out.update(stored)
    if inv.comment:
        out["comment"] = inv.comment
    payer = {
        k: v
        for k, v in (
            ("name", inv.payer_name),
            ("email", inv.payer_email),
            ("pubkey", inv.payer_pubkey),
        )
        if v
    }
    if payer:
        out["payer_data"] = payer
    if inv.boostagram:
        with contextlib.suppress(ValueError):
            out["boostagram"] = json.loads(inv.boostagram)
    records = records_from_json(inv.custom_records)
    if records:
        out["tlv_records"] = [{"type": k, "value": v.hex()} for k, v in sorted(records.items())]
    if inv.lightning_address:
        at = f"@{address_domain}" if address_domain else ""
        out["recipient_data"] = {"identifier": inv.lightning_address + at}
    return _within_limit(out)


def _within_limit(out: dict[str, Any]) -> dict[str, Any]:
    """The metadata, or as much of it as fits NIP-47's 4096 characters.

    A boostagram is in it twice: parsed (`boostagram`, ours) and as hex in
    `tlv_records` (NIP-47's form), so a record of ~1,400 bytes is over the
    limit, and dropping everything lost the boostagram a podcast app came
    for. So the parsed copy gives way first, then the records (the parsed
    copy, half their size, back in their place), and only then all of it
    (NIP-47: larger metadata MUST be dropped)."""
    if metadata_fits(out):
        return out
    for drop in ("boostagram", "tlv_records"):
        if drop in out:
            smaller = {k: v for k, v in out.items() if k != drop}
            if metadata_fits(smaller):
                return smaller
    return {}


def metadata_fits(value: Any) -> bool:
    """Within NIP-47's 4096 characters, counted as the compact JSON that is sent."""
    return len(compactjson.dumps(value)) <= MAX_METADATA


def notification(
    notification_type: str, inv: StoredInvoice, address_domain: str | None = None
) -> dict[str, Any]:
    """A notification's object. `hold_invoice_accepted` has the fields NIP-47
    lists for it, as of the moment of acceptance (no preimage, even if the
    invoice was settled before the notification went out)."""
    if notification_type != "hold_invoice_accepted":
        return transaction(inv, address_domain=address_domain)
    note: dict[str, Any] = {
        "type": "incoming",
        "state": "accepted",
        "invoice": inv.payment_request or None,
        "description": inv.description,
        "description_hash": inv.description_hash,
        "payment_hash": inv.payment_hash,
        "amount": int(inv.amount_received_msat or inv.amount_msat or 0),
        "created_at": inv.created_at,
        "expires_at": inv.expires_at,
        "settle_deadline": inv.settle_deadline,
        "metadata": metadata(inv, address_domain),
    }
    return {k: v for k, v in note.items() if v is not None}


def transaction(
    inv: StoredInvoice, now: float | None = None, *, address_domain: str | None = None
) -> dict[str, Any]:
    """The NIP-47 transaction object of a stored invoice or payment
    (`address_domain`: see `metadata`)."""
    settled = inv.state == "SETTLED"
    # Held (ACCEPTED) or settled: what the payer sent, as `hold_invoice_accepted`
    # says; else what was asked (0 for an any-amount invoice).
    held = inv.state == "ACCEPTED" and inv.amount_received_msat is not None
    amount = inv.amount_received_msat if settled or held else (inv.amount_msat or 0)
    # Expired the moment its expiry passes unpaid, not when the follower's
    # sweep next marks it so (as the REST API's invoice object does).
    state = effective_state(inv.state, inv.expires_at, int(now or time.time()))
    tx: dict[str, Any] = {
        "type": inv.type,
        "state": _STATES.get(state, state.lower()),
        "invoice": inv.payment_request or None,
        "description": inv.description,
        "description_hash": inv.description_hash,
        "preimage": inv.preimage if settled else None,
        "payment_hash": inv.payment_hash,
        "amount": int(amount),
        "fees_paid": int(inv.fee_msat or 0),
        "created_at": inv.created_at,
        "expires_at": inv.expires_at if inv.payment_request else None,
        "settled_at": inv.settled_at,
        # Held (ACCEPTED) hold invoices: the block by which to settle or cancel.
        "settle_deadline": inv.settle_deadline if inv.state == "ACCEPTED" else None,
        "metadata": metadata(inv, address_domain),
    }
    return {k: v for k, v in tx.items() if v is not None}
