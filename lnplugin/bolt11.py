"""A fast, strict BOLT11 decoder and a fast encoder.

Why this module exists: apps call decode constantly, and the ``bolt11`` PyPI package spends
almost all of its ~2.7 ms per invoice packing bits with ``bitstring``. Here the whole bech32
data part becomes one Python int (``int(..., 32)`` after a byte translation, all in C), fields
are sliced out of that int with shifts, the checksum runs eight symbols per step from
precomputed tables, and the only expensive step left is the secp256k1 public-key recovery in
libsecp256k1 (via coincurve). See ``docs/bolt11.md`` for the policy choices (spec vectors V14
and V16) and for where the ``bolt11`` package disagrees with the spec.

``decode`` raises only :class:`Bolt11Error`, whatever the input. ``encode`` is called by trusted
code (the dev node and the node simulators) and raises ``ValueError`` on bad arguments.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from hashlib import sha256
from struct import Struct
from struct import iter_unpack as _iter_unpack

from coincurve import PrivateKey, PublicKey

from lnplugin.keyrecovery import recover_compressed

__all__ = [
    "MAX_INVOICE_LENGTH",
    "Bolt11Error",
    "Fallback",
    "Invoice",
    "RouteHop",
    "decode",
    "encode",
]

#: Longest string a QR code can carry (alphanumeric mode, version 40, level L). Anything longer
#: cannot have come from a scan, so it is rejected before any work is done.
MAX_INVOICE_LENGTH = 7089

# --------------------------------------------------------------------------------------------
# Result types
# --------------------------------------------------------------------------------------------


class Bolt11Error(Exception):
    """The invoice breaks a BOLT11 rule. ``reason`` (== ``str(e)``) names the rule.

    Deliberately not a ``ValueError``: callers catch exactly this and turn it into a 400, and a
    stray ``ValueError`` from a bug elsewhere must not be mistaken for "bad invoice".
    """

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True, slots=True)
class RouteHop:
    """One entry of an ``r`` field: a private channel from ``pubkey`` towards the payee."""

    pubkey: str  # hex, 33-byte compressed key
    short_channel_id: str  # "BLOCKxTXxOUT"
    fee_base_msat: int
    fee_proportional_millionths: int
    cltv_expiry_delta: int


@dataclass(frozen=True, slots=True)
class Fallback:
    """An ``f`` field: an on-chain address to pay if the Lightning payment fails.

    ``address`` is None when the program cannot form a valid address (wrong length for its
    version); the raw ``version`` and ``program`` are kept so nothing is lost.
    """

    version: int  # 0..16 witness version, 17 P2PKH, 18 P2SH
    address: str | None
    program: str  # hex

    @property
    def type(self) -> str:
        """ "P2PKH" | "P2SH" | "P2WPKH" | "P2WSH" | "P2TR" | "witness"."""
        if self.version == 17:
            return "P2PKH"
        if self.version == 18:
            return "P2SH"
        size = len(self.program) // 2
        if self.version == 0 and size == 20:
            return "P2WPKH"
        if self.version == 0 and size == 32:
            return "P2WSH"
        if self.version == 1 and size == 32:
            return "P2TR"
        return "witness"


@dataclass(frozen=True, slots=True)
class Invoice:
    """A decoded, signature-checked BOLT11 invoice."""

    currency: str  # "bc" | "tb" | "tbs" | "bcrt"
    network: str  # "bitcoin" | "testnet" | "signet" | "regtest"
    amount_msat: int | None  # None = any amount
    timestamp: int
    payment_hash: str
    payment_secret: str | None
    description: str | None
    description_hash: str | None
    expiry: int
    min_final_cltv_expiry_delta: int
    payee: str
    features: tuple[int, ...]
    route_hints: tuple[tuple[RouteHop, ...], ...]
    fallbacks: tuple[Fallback, ...]
    payment_metadata: str | None
    signature: str  # hex r||s
    recovery_id: int

    @property
    def expires_at(self) -> int:
        """Unix time after which a payer should not pay (spec: timestamp + expiry)."""
        return self.timestamp + self.expiry


# --------------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------------

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
# int(x, 32) digits, in the order of the bech32 alphabet: char _CHARSET[i] -> _INT32_DIGITS[i].
_INT32_DIGITS = "0123456789abcdefghijklmnopqrstuv"
# bytes.translate table: bech32 char -> its base-32 digit for int(); everything else -> "!",
# which int() rejects (so "_", "+", "-", spaces that int() would tolerate never get through).
_TO_INT32 = bytes(
    ord(_INT32_DIGITS[_CHARSET.index(chr(b))]) if chr(b) in _CHARSET else ord("!")
    for b in range(256)
)
_CHARVAL = {ch: i for i, ch in enumerate(_CHARSET)}
# Two bech32 chars for every 10-bit value, so the encoder emits 8 chars per 5 bytes.
_PAIRS = tuple(a + b for a in _CHARSET for b in _CHARSET)

_BECH32_CONST = 1
_BECH32M_CONST = 0x2BC830A3
_GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)

_MASK30 = (1 << 30) - 1
_MASK520 = (1 << 520) - 1
_SIG_SYMBOLS = 104  # 520 bits
_TIMESTAMP_SYMBOLS = 7  # 35 bits
_MAX_FIELD_SYMBOLS = 1023  # 10-bit data_length
_MAX_FIELD_BYTES = _MAX_FIELD_SYMBOLS * 5 // 8  # 639

_SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_ORDER = _SECP256K1_ORDER // 2

_MSAT_PER_BTC = 100_000_000_000
_MAX_MSAT = 21_000_000 * _MSAT_PER_BTC
# x and c must fit a signed 64-bit integer (SQLite, JSON consumers, LND's uint64).
_MAX_INT_FIELD = (1 << 63) - 1

_NETWORKS = {"bc": "bitcoin", "tb": "testnet", "tbs": "signet", "bcrt": "regtest"}
# currency -> (P2PKH version byte, P2SH version byte, segwit address HRP)
_ADDRESS_PARAMS = {
    "bc": (0x00, 0x05, "bc"),
    "tb": (0x6F, 0xC4, "tb"),
    "tbs": (0x6F, 0xC4, "tb"),
    "bcrt": (0x6F, 0xC4, "bcrt"),
}

#: Feature bits meaningful in an invoice (BOLT 9 context "9"): var_onion_optin, payment_secret,
#: basic_mpp, route_blinding, attribution_data, payment_metadata. An unknown *even* bit means
#: "you must understand this to pay", so decoding fails; unknown odd bits are reported only.
KNOWN_FEATURE_BITS = frozenset({8, 9, 14, 15, 16, 17, 24, 25, 36, 37, 48, 49})

_HRP_RE = re.compile(r"ln(\D*)(.*)\Z", re.S)
_AMOUNT_RE = re.compile(r"([0-9]+)([munp]?)\Z")
_MULTIPLIER_MSAT = {"": _MSAT_PER_BTC, "m": 100_000_000, "u": 100_000, "n": 100}
_HOP = Struct(">33sQIIH")  # pubkey, scid, fee_base, fee_ppm, cltv_delta = 51 bytes
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


# --------------------------------------------------------------------------------------------
# bech32 checksum: one table lookup per symbol for odd symbols, 4 lookups per 8 symbols otherwise
# --------------------------------------------------------------------------------------------


def _gen_xor(top: int) -> int:
    x = 0
    for i in range(5):
        if (top >> i) & 1:
            x ^= _GEN[i]
    return x


_STEP = tuple(_gen_xor(b) for b in range(32))


def _step(c: int, v: int) -> int:
    """One BIP-173 polymod step: the reference loop over _GEN folded into a 32-entry table."""
    return ((c & 0x1FFFFFF) << 5) ^ v ^ _STEP[c >> 25]


def _build_chunk_tables() -> tuple[tuple[int, ...], ...]:
    """Tables for eight symbols per step.

    Processing eight symbols v1..v8 from state c is linear over GF(2). v3..v8 only shift into
    the low 30 bits, so they are XORed in as they are; c and v1, v2 (40 bits t = c<<10 | v1<<5 |
    v2) go through reduction R(t). R is linear, so it splits into four tables of 10-bit slices.
    """

    def reduce(t: int) -> int:
        c = t >> 10
        c = _step(c, (t >> 5) & 31)
        c = _step(c, t & 31)
        for _ in range(6):
            c = _step(c, 0)
        return c

    tables = []
    for k in range(4):
        basis = [reduce(1 << (10 * k + j)) for j in range(10)]
        tab = [0] * 1024
        for x in range(1, 1024):
            low = x & -x
            tab[x] = tab[x ^ low] ^ basis[low.bit_length() - 1]
        tables.append(tuple(tab))
    return tuple(tables)


_R0, _R1, _R2, _R3 = _build_chunk_tables()


def _polymod_int(c: int, value: int, nsym: int) -> int:
    """Continue the polymod from state ``c`` over ``nsym`` 5-bit symbols packed in ``value``."""
    head = nsym & 7
    rest = nsym - head
    if head:
        top = value >> (5 * rest)
        for shift in range(5 * (head - 1), -1, -5):
            c = ((c & 0x1FFFFFF) << 5) ^ ((top >> shift) & 31) ^ _STEP[c >> 25]
    if rest:
        r0, r1, r2, r3 = _R0, _R1, _R2, _R3
        buf = (value & ((1 << (5 * rest)) - 1)).to_bytes(rest * 5 // 8, "big")
        for hi, lo in _iter_unpack(">IB", buf):
            t = (c << 10) | (hi >> 22)
            c = (
                (((hi & 0x3FFFFF) << 8) | lo)
                ^ r0[t & 1023]
                ^ r1[(t >> 10) & 1023]
                ^ r2[(t >> 20) & 1023]
                ^ r3[t >> 30]
            )
    return c


_HRP_STATE_CACHE: dict[str, int] = {}


def _hrp_state(hrp: str) -> int:
    """Polymod state after the HRP expansion (cached: a service sees few distinct HRPs).

    Starting from 0 with a leading symbol 1 is the same as BIP-173's initial state 1.
    """
    c = _HRP_STATE_CACHE.get(hrp)
    if c is None:
        c = 1
        codes = hrp.encode("ascii")
        for b in codes:
            c = _step(c, b >> 5)
        c = _step(c, 0)
        for b in codes:
            c = _step(c, b & 31)
        if len(hrp) <= 32 and len(_HRP_STATE_CACHE) < 512:  # bounded: input is untrusted
            _HRP_STATE_CACHE[hrp] = c
    return c


def _symbols_to_str(value: int, nsym: int) -> str:
    """``nsym`` 5-bit symbols packed in ``value`` -> bech32 characters (two per table lookup)."""
    pad = -nsym & 7
    pairs = _PAIRS
    buf = value.to_bytes((nsym + pad) * 5 // 8, "big")
    out = "".join(
        [
            pairs[hi >> 22]
            + pairs[(hi >> 12) & 1023]
            + pairs[(hi >> 2) & 1023]
            + pairs[((hi & 3) << 8) | lo]
            for hi, lo in _iter_unpack(">IB", buf)
        ]
    )
    return out[pad:]


def _bech32_encode(hrp: str, value: int, nsym: int, const: int) -> str:
    """Encode ``nsym`` symbols in ``value`` under ``hrp`` with a bech32 (const=1) or bech32m
    checksum."""
    full = value << 30
    checksum = _polymod_int(_hrp_state(hrp), full, nsym + 6) ^ const
    return hrp + "1" + _symbols_to_str(full | checksum, nsym + 6)


# --------------------------------------------------------------------------------------------
# Addresses for fallbacks
# --------------------------------------------------------------------------------------------


def _base58check(payload: bytes) -> str:
    raw = payload + sha256(sha256(payload).digest()).digest()[:4]
    n = int.from_bytes(raw, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(_B58[r])
    zeros = len(raw) - len(raw.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(out))


def _fallback_address(currency: str, version: int, program: bytes) -> str | None:
    """The address for the invoice's network, or None if the program is not a valid one."""
    p2pkh, p2sh, seg_hrp = _ADDRESS_PARAMS[currency]
    size = len(program)
    if version == 17 or version == 18:
        if size != 20:
            return None
        return _base58check(bytes((p2pkh if version == 17 else p2sh,)) + program)
    if not 2 <= size <= 40 or (version == 0 and size not in (20, 32)):
        return None
    nbits = 8 * size
    nsym = -(-nbits // 5)
    value = (version << (5 * nsym)) | (int.from_bytes(program, "big") << (5 * nsym - nbits))
    const = _BECH32_CONST if version == 0 else _BECH32M_CONST
    return _bech32_encode(seg_hrp, value, nsym + 1, const)


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


def _parse_hrp(hrp: str) -> tuple[str, int | None]:
    match = _HRP_RE.match(hrp)
    if match is None:
        raise Bolt11Error("human-readable part must start with 'ln'")
    currency, amount = match.groups()
    if currency not in _NETWORKS:
        raise Bolt11Error(f"unknown currency prefix {currency[:16]!r}")
    if not amount:
        return currency, None
    m = _AMOUNT_RE.match(amount)
    if m is None:
        raise Bolt11Error("invalid amount or multiplier")
    digits, multiplier = m.groups()
    if digits[0] == "0":
        raise Bolt11Error("amount must be a positive integer without leading zeros")
    if len(digits) > 25:  # far above 21M BTC in any unit; also keeps int() cheap
        raise Bolt11Error("amount exceeds 21 million BTC")
    number = int(digits)
    if multiplier == "p":
        if number % 10:
            raise Bolt11Error("sub-millisatoshi amount (p amount must end in 0)")
        msat = number // 10
    else:
        msat = number * _MULTIPLIER_MSAT[multiplier]
    if msat > _MAX_MSAT:
        raise Bolt11Error("amount exceeds 21 million BTC")
    return currency, msat


def _field_bytes(field: int, nsym: int) -> bytes:
    """Field data as bytes: the 5-bit groups concatenated, trailing pad bits (<8) dropped."""
    nbits = 5 * nsym
    nbytes = nbits >> 3
    return (field >> (nbits - 8 * nbytes)).to_bytes(nbytes, "big")


def _der(sig64: bytes) -> bytes:
    """DER-encode a compact r||s so coincurve's verify (which wants DER) can check it."""
    parts = []
    for half in (sig64[:32], sig64[32:]):
        half = half.lstrip(b"\0") or b"\0"
        if half[0] & 0x80:
            half = b"\0" + half
        parts.append(b"\x02" + bytes((len(half),)) + half)
    body = parts[0] + parts[1]
    return b"\x30" + bytes((len(body),)) + body


def _set_bits(value: int) -> tuple[int, ...]:
    bits = []
    while value:
        low = value & -value
        bits.append(low.bit_length() - 1)
        value ^= low
    return tuple(bits)


def _int_field(tag: str, field: int, nsym: int) -> int:
    if nsym > 1 and field >> (5 * (nsym - 1)) == 0:
        raise Bolt11Error(f"non-minimal encoding of {tag} field")
    if field > _MAX_INT_FIELD:
        raise Bolt11Error(f"{tag} field value too large")
    return field


def decode(invoice: str) -> Invoice:
    """Decode and fully validate a BOLT11 invoice (signature included).

    Accepts an optional ``lightning:`` prefix (any case) and an all-upper-case invoice.
    Raises only :class:`Bolt11Error`.
    """
    if not isinstance(invoice, str):
        raise Bolt11Error("invoice must be a string")
    if len(invoice) > MAX_INVOICE_LENGTH:
        raise Bolt11Error(f"invoice longer than {MAX_INVOICE_LENGTH} characters")
    s = invoice
    if s[:10].lower() == "lightning:":
        s = s[10:]
    if not s.isascii():
        raise Bolt11Error("invoice contains non-ASCII characters")
    lower = s.lower()
    if lower != s:
        if s.upper() != s:
            raise Bolt11Error("mixed case")
        s = lower
    pos = s.rfind("1")
    if pos < 0:
        raise Bolt11Error("no separator '1'")
    if pos == 0:
        raise Bolt11Error("empty human-readable part")
    hrp = s[:pos]
    data = s[pos + 1 :]
    nsym = len(data)
    if nsym < 6:
        raise Bolt11Error("too short")
    try:
        value = int(data.encode("ascii").translate(_TO_INT32), 32)
    except ValueError:
        raise Bolt11Error("invalid character in data part") from None
    if _polymod_int(_hrp_state(hrp), value, nsym) != _BECH32_CONST:
        raise Bolt11Error("bad checksum")

    currency, amount_msat = _parse_hrp(hrp)

    body_len = nsym - 6 - _SIG_SYMBOLS
    if body_len < _TIMESTAMP_SYMBOLS:
        raise Bolt11Error("too short")
    value >>= 30
    sig_int = value & _MASK520
    body = value >> 520

    timestamp = body >> (5 * (body_len - _TIMESTAMP_SYMBOLS))
    payment_hash = payment_secret = description_hash = payee = metadata = None
    description: str | None = None
    expiry = min_cltv = None
    features: tuple[int, ...] | None = None
    routes: list[tuple[RouteHop, ...]] = []
    fallbacks: list[Fallback] = []
    charval = _CHARVAL

    i = _TIMESTAMP_SYMBOLS
    while i < body_len:
        if i + 3 > body_len:
            raise Bolt11Error("truncated tagged field")
        tag = data[i]
        ln = charval[data[i + 1]] * 32 + charval[data[i + 2]]
        end = i + 3 + ln
        if end > body_len:
            raise Bolt11Error(f"{tag} field longer than the data part")
        field = (body >> (5 * (body_len - end))) & ((1 << (5 * ln)) - 1)
        i = end
        # Wrong-length p/h/s/n are skipped (spec vector V14), later duplicates are ignored (the
        # spec says to use the first p that was not skipped).
        if tag == "p":
            if ln == 52 and payment_hash is None:
                payment_hash = field >> 4
        elif tag == "s":
            if ln == 52 and payment_secret is None:
                payment_secret = field >> 4
        elif tag == "d":
            if description is None:
                raw = _field_bytes(field, ln)
                try:
                    description = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise Bolt11Error("d field is not valid UTF-8") from None
        elif tag == "h":
            if ln == 52 and description_hash is None:
                description_hash = field >> 4
        elif tag == "n":
            if ln == 53 and payee is None:
                payee = (field >> 1).to_bytes(33, "big")
        elif tag == "x":
            if expiry is None:
                expiry = _int_field("x", field, ln)
        elif tag == "c":
            if min_cltv is None:
                min_cltv = _int_field("c", field, ln)
        elif tag == "9":
            if features is None:
                if ln and field >> (5 * (ln - 1)) == 0:
                    raise Bolt11Error("non-minimal encoding of 9 field")
                features = _set_bits(field)
        elif tag == "r":
            raw = _field_bytes(field, ln)
            if len(raw) % 51:
                raise Bolt11Error("r field length is not a multiple of 51 bytes")
            if raw:
                routes.append(
                    tuple(
                        RouteHop(
                            pk.hex(),
                            f"{scid >> 40}x{(scid >> 16) & 0xFFFFFF}x{scid & 0xFFFF}",
                            base,
                            ppm,
                            cltv,
                        )
                        for pk, scid, base, ppm, cltv in _HOP.iter_unpack(raw)
                    )
                )
        elif tag == "f":
            if ln:
                version = field >> (5 * (ln - 1))
                if version <= 18:  # 19..31: unknown version, skipped
                    program = _field_bytes(field & ((1 << (5 * (ln - 1))) - 1), ln - 1)
                    fallbacks.append(
                        Fallback(
                            version, _fallback_address(currency, version, program), program.hex()
                        )
                    )
        elif tag == "m" and metadata is None:
            metadata = _field_bytes(field, ln)
        # anything else: unknown field, skipped

    if payment_hash is None:
        raise Bolt11Error("missing p field (payment hash)")
    if payment_secret is None:
        raise Bolt11Error("missing s field (payment secret)")
    if description is None and description_hash is None:
        raise Bolt11Error("missing d or h field (description)")
    if description is not None and description_hash is not None:
        raise Bolt11Error("both d and h fields present")
    if features is None:
        features = ()
    else:
        unknown = [b for b in features if not b & 1 and b not in KNOWN_FEATURE_BITS]
        if unknown:
            shown = ", ".join(map(str, unknown[:8])) + (", ..." if len(unknown) > 8 else "")
            raise Bolt11Error(f"unknown even feature bit(s): {shown}")

    sig = sig_int.to_bytes(65, "big")
    recovery_id = sig[64]
    if recovery_id > 3:
        raise Bolt11Error("invalid signature recovery id")
    pad = -5 * body_len & 7
    digest = sha256(
        hrp.encode("ascii") + (body << pad).to_bytes((5 * body_len + pad) >> 3, "big")
    ).digest()
    if payee is not None:
        if int.from_bytes(sig[32:64], "big") > _HALF_ORDER:
            raise Bolt11Error("high-S signature with n field")
        try:
            ok = PublicKey(payee).verify(_der(sig[:64]), digest, hasher=None)
        except Exception:
            raise Bolt11Error("n field is not a valid public key") from None
        if not ok:
            raise Bolt11Error("signature does not match n field")
        payee_hex = payee.hex()
    else:
        try:
            payee_hex = recover_compressed(sig, digest).hex()
        except ValueError:
            raise Bolt11Error("signature not recoverable") from None

    return Invoice(
        currency,
        _NETWORKS[currency],
        amount_msat,
        timestamp,
        payment_hash.to_bytes(32, "big").hex(),
        payment_secret.to_bytes(32, "big").hex(),
        description,
        None if description_hash is None else description_hash.to_bytes(32, "big").hex(),
        3600 if expiry is None else expiry,
        18 if min_cltv is None else min_cltv,
        payee_hex,
        features,
        tuple(routes),
        tuple(fallbacks),
        None if metadata is None else metadata.hex(),
        sig[:64].hex(),
        recovery_id,
    )


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------


def _hex_arg(name: str, value: object, size: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a hex string")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise ValueError(f"{name} must be a hex string") from None
    if len(value) != 2 * len(raw) or (size is not None and len(raw) != size):
        want = f"{size} bytes of " if size is not None else ""
        raise ValueError(f"{name} must be {want}hex without separators")
    return raw


def _int_arg(name: str, value: object, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}]")
    return value


def _amount_str(msat: int) -> str:
    """Shortest amount string: the largest multiplier that represents the amount exactly."""
    if msat % _MSAT_PER_BTC == 0:
        return str(msat // _MSAT_PER_BTC)
    for mult, unit in (("m", 100_000_000), ("u", 100_000), ("n", 100)):
        if msat % unit == 0:
            return f"{msat // unit}{mult}"
    return f"{msat * 10}p"


def _scid_int(scid: object) -> int:
    parts = scid.split("x") if isinstance(scid, str) else ()
    if len(parts) != 3 or not all(p.isdigit() and p.isascii() for p in parts):
        raise ValueError(f"short_channel_id must look like BLOCKxTXxOUT, got {scid!r}")
    block, tx, out = map(int, parts)
    if block >= 1 << 24 or tx >= 1 << 24 or out >= 1 << 16:
        raise ValueError(f"short_channel_id out of range: {scid!r}")
    return (block << 40) | (tx << 16) | out


def encode(
    *,
    currency: str,
    amount_msat: int | None,
    timestamp: int,
    payment_hash: str,
    payment_secret: str,
    private_key: bytes,
    description: str | None = None,
    description_hash: str | None = None,
    expiry: int | None = None,
    min_final_cltv_expiry_delta: int | None = None,
    features: Iterable[int] = (8, 14),
    route_hints: Sequence[Sequence[RouteHop]] = (),
    payment_metadata: str | None = None,
) -> str:
    """Build and sign a BOLT11 invoice (lower case, no ``n`` field: payers recover the key).

    Encodings are minimal (amount with the largest exact multiplier, shortest x/c/9). ``c`` is
    always written (18 when None) because the spec says a writer MUST include it; ``x`` is
    omitted when None (readers default to 3600). Raises ValueError on any bad argument.
    """
    if currency not in _NETWORKS:
        raise ValueError(f"currency must be one of {sorted(_NETWORKS)}")
    hrp = "ln" + currency
    if amount_msat is not None:
        hrp += _amount_str(_int_arg("amount_msat", amount_msat, 1, _MAX_MSAT))
    _int_arg("timestamp", timestamp, 0, (1 << 35) - 1)
    phash = _hex_arg("payment_hash", payment_hash, 32)
    secret = _hex_arg("payment_secret", payment_secret, 32)
    if not isinstance(private_key, bytes | bytearray) or len(private_key) != 32:
        raise ValueError("private_key must be 32 bytes")
    try:
        key = PrivateKey(bytes(private_key))
    except Exception:
        raise ValueError("private_key is not a valid secp256k1 secret") from None
    if (description is None) == (description_hash is None):
        raise ValueError("exactly one of description and description_hash is required")

    # Fields are appended to one int: (tag << 10 | length) then the data, 5 bits per symbol.
    acc = timestamp
    nsym = _TIMESTAMP_SYMBOLS

    def put_bytes(tag: int, raw: bytes) -> None:
        nonlocal acc, nsym
        nbits = 8 * len(raw)
        ln = -(-nbits // 5)
        acc = (((acc << 15) | (tag << 10) | ln) << (5 * ln)) | (
            int.from_bytes(raw, "big") << (5 * ln - nbits)
        )
        nsym += 3 + ln

    def put_int(tag: int, number: int) -> None:
        nonlocal acc, nsym
        ln = max(1, -(-number.bit_length() // 5))
        acc = (((acc << 15) | (tag << 10) | ln) << (5 * ln)) | number
        nsym += 3 + ln

    put_bytes(1, phash)  # p
    put_bytes(16, secret)  # s
    if description is not None:
        if not isinstance(description, str):
            raise ValueError("description must be a string")
        raw = description.encode("utf-8")
        if len(raw) > _MAX_FIELD_BYTES:
            raise ValueError(f"description longer than {_MAX_FIELD_BYTES} UTF-8 bytes")
        put_bytes(13, raw)  # d
    else:
        put_bytes(23, _hex_arg("description_hash", description_hash, 32))  # h
    if expiry is not None:
        put_int(6, _int_arg("expiry", expiry, 0, _MAX_INT_FIELD))  # x
    cltv = 18 if min_final_cltv_expiry_delta is None else min_final_cltv_expiry_delta
    put_int(24, _int_arg("min_final_cltv_expiry_delta", cltv, 0, _MAX_INT_FIELD))  # c

    if isinstance(features, str | bytes):
        raise ValueError("features must be an iterable of bit numbers")
    bits = 0
    for bit in features:
        _int_arg("feature bit", bit, 0, 5 * _MAX_FIELD_SYMBOLS - 1)
        if not bit & 1 and bit not in KNOWN_FEATURE_BITS:
            raise ValueError(f"unknown even feature bit {bit} would make the invoice unpayable")
        bits |= 1 << bit
    if not bits & (3 << 14):
        raise ValueError("features must include payment_secret (14 or 15): s is always written")
    if not bits & (3 << 8):
        raise ValueError("features must include var_onion_optin (8 or 9), payment_secret needs it")
    put_int(5, bits)  # 9

    for route in route_hints:
        hops = list(route)
        if not 1 <= len(hops) <= 12:
            raise ValueError("each route hint needs 1 to 12 hops")
        raw = b""
        for hop in hops:
            if not isinstance(hop, RouteHop):
                raise ValueError("route hints must contain RouteHop objects")
            pk = _hex_arg("route hop pubkey", hop.pubkey, 33)
            if pk[0] not in (2, 3):
                raise ValueError("route hop pubkey must be a compressed public key")
            raw += _HOP.pack(
                pk,
                _scid_int(hop.short_channel_id),
                _int_arg("fee_base_msat", hop.fee_base_msat, 0, 0xFFFFFFFF),
                _int_arg(
                    "fee_proportional_millionths", hop.fee_proportional_millionths, 0, 0xFFFFFFFF
                ),
                _int_arg("cltv_expiry_delta", hop.cltv_expiry_delta, 0, 0xFFFF),
            )
        put_bytes(3, raw)  # r

    if payment_metadata is not None:
        meta = _hex_arg("payment_metadata", payment_metadata)
        if len(meta) > _MAX_FIELD_BYTES:
            raise ValueError(f"payment_metadata longer than {_MAX_FIELD_BYTES} bytes")
        put_bytes(27, meta)  # m

    total = len(hrp) + 1 + nsym + _SIG_SYMBOLS + 6
    if total > MAX_INVOICE_LENGTH:
        raise ValueError(f"invoice would be {total} characters, over {MAX_INVOICE_LENGTH}")

    pad = -5 * nsym & 7
    digest = sha256(hrp.encode("ascii") + (acc << pad).to_bytes((5 * nsym + pad) >> 3, "big"))
    sig = key.sign_recoverable(digest.digest(), hasher=None)
    return _bech32_encode(
        hrp, (acc << 520) | int.from_bytes(sig, "big"), nsym + _SIG_SYMBOLS, _BECH32_CONST
    )
