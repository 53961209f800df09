"""LNURL-pay without I/O: metadata, the description hash, payer data, LUD-01 encoding.

The HTTP routes (`api/lnurlp.py`) and the command line (`lnplugin address
show`) both need the same answers from an address row, and a wallet checks
them byte for byte: the `h` of the invoice must be SHA-256 of exactly the
`metadata` string it was shown (LUD-06), followed by the `payerdata` text as
it arrived (LUD-18). So the metadata string is built in one function from the
row, deterministically, and nothing else ever re-serialises it.

Facts used (see docs/lnurl.md): usernames are `a-z0-9-_.` (LUD-16); the
metadata is a JSON array of [type, value] pairs with exactly one
`text/plain` and at most one image (LUD-06), plus `text/identifier` for an
address (LUD-16); an LNURL is the URL's UTF-8 bytes in bech32 under the
human-readable part `lnurl`, without bech32's 90-character limit (LUD-01).
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.parse
from typing import Any

import coincurve

USERNAME = re.compile(r"[a-z0-9\-_.]{1,64}")
TEXT_KINDS = ("name", "pubkey", "identifier", "email")
PAYER_DATA_KINDS = (*TEXT_KINDS, "auth")
MAX_PAYER_DATA_CHARS = 2000  # a GET URL holds about that much in all (LUD-12's note)
_HEX_PUBKEY = re.compile(r"[0-9a-fA-F]{66}|[0-9a-fA-F]{64}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
_HEX_K1 = re.compile(r"[0-9a-fA-F]{64}")
_HEX_COMPRESSED_KEY = re.compile(r"0[23][0-9a-fA-F]{64}")
_HEX_DER_SIG = re.compile(r"(?:[0-9a-fA-F]{2}){8,72}")


class PayerDataError(ValueError):
    """Payer data a wallet sent that the callback must refuse; the message is the reason."""


def domain_of(public_url: str) -> str:
    """The domain part of a Lightning Address served under `public_url` (host[:port])."""
    return urllib.parse.urlsplit(public_url).netloc.lower()


def identifier(username: str, public_url: str) -> str:
    """`username@domain`, the LUD-16 address."""
    return f"{username}@{domain_of(public_url)}"


def discovery_url(public_url: str, username: str) -> str:
    return f"{public_url}/.well-known/lnurlp/{username}"


def callback_url(public_url: str, username: str) -> str:
    return f"{public_url}/lnurlp/{username}/callback"


def verify_url(public_url: str, payment_hash: str) -> str:
    return f"{public_url}/lnurlp/verify/{payment_hash}"


def keysend_url(public_url: str, username: str) -> str:
    return f"{public_url}/.well-known/keysend/{username}"


def metadata(username: str, description: str, image: str | None, public_url: str) -> str:
    """The LUD-06 `metadata` string of an address.

    `image` is a `data:image/png;base64,...` (or jpeg) URI as stored; its
    payload goes in as LUD-06's `image/png;base64` entry.
    """
    entries: list[list[str]] = [
        ["text/plain", description],
        ["text/identifier", identifier(username, public_url)],
    ]
    if image:
        head, _, payload = image.partition(",")
        entries.append([head.removeprefix("data:"), payload])
    return json.dumps(entries, ensure_ascii=False, separators=(",", ":"))


def description_hash(metadata_text: str, payer_data_text: str | None = None) -> str:
    """Hex SHA-256 of the metadata, then the payer data as received (LUD-18)."""
    return hashlib.sha256((metadata_text + (payer_data_text or "")).encode("utf-8")).hexdigest()


def parse_payer_data(raw: str, requested: dict[str, Any]) -> dict[str, Any]:
    """The `payerdata` query parameter as an object, checked against what the
    address asked for (LUD-18): mandatory kinds present, known kinds well-formed.

    Kinds the address did not ask for are neither checked nor refused (LUD-18:
    the service "MUST still append everything as received"; the hash covers
    the text as received) and never stored as payer fields. When the address asks for
    `auth`, a given `auth` must carry a valid LUD-04 signature of its `k1`
    (`check_auth`); whether that k1 was issued, and is unused, is the
    caller's to check against the store.
    """
    if len(raw) > MAX_PAYER_DATA_CHARS:
        raise PayerDataError(f"payerdata must be at most {MAX_PAYER_DATA_CHARS} characters")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # nested too deep for the parser is not an object either
        raise PayerDataError("payerdata must be a JSON object") from None
    if not isinstance(data, dict):
        raise PayerDataError("payerdata must be a JSON object")
    for kind, option in requested.items():
        if option.get("mandatory") and data.get(kind) in (None, ""):
            raise PayerDataError(f"payerdata.{kind} is mandatory")
    if "auth" in requested and data.get("auth") is not None:
        check_auth(data["auth"])
    for kind in TEXT_KINDS:
        value = data.get(kind)
        if value is None or kind not in requested:  # not asked for: appended as received
            continue
        if not isinstance(value, str) or len(value) > 320:
            raise PayerDataError(f"payerdata.{kind} must be text of at most 320 characters")
        if not _is_unicode(value):
            # A lone surrogate (JSON's "\\ud800") is no text; the store, which
            # keeps the asked-for kinds as payer fields, could not write it.
            raise PayerDataError(f"payerdata.{kind} must be text without lone surrogates")
        if kind == "pubkey" and not _HEX_PUBKEY.fullmatch(value):
            raise PayerDataError("payerdata.pubkey must be a hex public key")
        if kind == "email" and not _EMAIL.fullmatch(value):
            raise PayerDataError("payerdata.email must be an email address")
    return data


def _is_unicode(text: str) -> bool:
    """Whether `text` can be written as UTF-8 (no lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_auth(value: Any) -> None:
    """Refuse (PayerDataError) a LUD-18 `auth` value unless it is `{key, k1,
    sig}` with `sig` a DER-encoded secp256k1 ECDSA signature of the 32 bytes
    of `k1` (not hashed again) by `key`, a compressed public key (LUD-04).

    Verification is libsecp256k1's (coincurve), which takes low-S signatures
    only, as libsecp256k1 and the wallets built on it produce.
    """
    if not isinstance(value, dict) or not all(
        isinstance(value.get(f), str) for f in ("key", "k1", "sig")
    ):
        raise PayerDataError("payerdata.auth must be an object with key, k1 and sig (hex text)")
    if not _HEX_K1.fullmatch(value["k1"]):
        raise PayerDataError("payerdata.auth.k1 must be 64 hex characters")
    if not _HEX_COMPRESSED_KEY.fullmatch(value["key"]):
        raise PayerDataError("payerdata.auth.key must be a compressed public key (66 hex)")
    if not _HEX_DER_SIG.fullmatch(value["sig"]):
        raise PayerDataError("payerdata.auth.sig must be a hex DER signature")
    try:
        key = coincurve.PublicKey(bytes.fromhex(value["key"]))
        valid = key.verify(bytes.fromhex(value["sig"]), bytes.fromhex(value["k1"]), hasher=None)
    except ValueError:  # a key off the curve, or a signature that is not DER
        valid = False
    if not valid:
        raise PayerDataError("payerdata.auth.sig is not a valid signature of k1 by key")


# -- LUD-01: bech32 ---------------------------------------------------------------

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _polymod(values: list[int]) -> int:
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i, gen in enumerate(_GENERATOR):
            chk ^= gen if (top >> i) & 1 else 0
    return chk


def _to_words(data: bytes) -> list[int]:
    acc, bits, words = 0, 0, []
    for byte in data:
        acc = (acc << 8) | byte
        bits += 8
        while bits >= 5:
            bits -= 5
            words.append((acc >> bits) & 31)
    if bits:
        words.append((acc << (5 - bits)) & 31)
    return words


def encode_lnurl(url: str) -> str:
    """The bech32 LNURL of `url`, upper case as LUD-01 asks for QR codes.

    Written here rather than taken from a library: it is twenty lines, and
    the `lnurl` package would bring an HTTP client and a BOLT11 decoder
    (with a pin on an old bitstring) into the runtime just for this. The
    tests check it against LUD-01's example and against that package.
    """
    hrp = "lnurl"
    data = _to_words(url.encode("utf-8"))
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    mod = _polymod([*expanded, *data, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(mod >> 5 * (5 - i)) & 31 for i in range(6)]
    return (hrp + "1" + "".join(_CHARSET[w] for w in data + checksum)).upper()
