"""secp256k1 public-key recovery for BOLT11 signatures, run without giving up Python's lock.

Why this module exists: a BOLT11 invoice without an ``n`` field names its payee only through
its signature, so every decode recovers a public key. coincurve (cffi) releases Python's lock,
the GIL, around each of the three libsecp256k1 calls a recovery takes. Each call lasts
microseconds, but in a busy server each release hands the lock to the thread that was waiting
for it (the HTTP server's event loop) and costs two context switches, about 40 µs, to get it
back: more than the recovery itself. ``docs/benchmarks.md`` has the measurements.

So the same three calls go through ``ctypes.PyDLL`` (which keeps the lock) into the same
libsecp256k1 that coincurve ships and has already loaded; nothing of the library is
reimplemented here. If that library cannot be found or does not answer like coincurve on a
known signature, recovery falls back to coincurve, which is always correct, only slower in a
loaded server.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from pathlib import Path

import coincurve
from coincurve import PublicKey

__all__ = ["USES_LIBRARY_DIRECTLY", "recover_compressed"]

# Flags from libsecp256k1's include/secp256k1.h. A verify context serves recovery (the
# flag is ignored by current releases, which need no precomputation for it).
_CONTEXT_VERIFY = (1 << 0) | (1 << 8)
_EC_COMPRESSED = (1 << 1) | (1 << 8)


def _via_coincurve(signature65: bytes, digest: bytes) -> bytes:
    key = PublicKey.from_signature_and_message(signature65, digest, hasher=None)
    return key.format(compressed=True)


def _direct() -> Callable[[bytes, bytes], bytes] | None:
    """The lock-holding recovery, or None when coincurve's library cannot serve it."""
    libraries = sorted(Path(coincurve.__file__).parent.glob("_libsecp256k1*"))
    if len(libraries) != 1:
        return None
    try:
        lib = ctypes.PyDLL(str(libraries[0]))
        create = lib.secp256k1_context_create
        parse = lib.secp256k1_ecdsa_recoverable_signature_parse_compact
        recover = lib.secp256k1_ecdsa_recover
        serialize = lib.secp256k1_ec_pubkey_serialize
    except (OSError, AttributeError):
        return None
    create.argtypes, create.restype = [ctypes.c_uint], ctypes.c_void_p
    parse.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
    recover.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p]
    serialize.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.POINTER(ctypes.c_size_t),
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    parse.restype = recover.restype = serialize.restype = ctypes.c_int
    context = create(_CONTEXT_VERIFY)  # lives as long as the process
    if not context:
        return None

    def recover_compressed(signature65: bytes, digest: bytes) -> bytes:
        # Buffers per call: another thread may run between two of these calls.
        parsed = ctypes.create_string_buffer(65)  # secp256k1_ecdsa_recoverable_signature
        if not parse(context, parsed, signature65[:64], signature65[64]):
            raise ValueError("signature not parseable")
        point = ctypes.create_string_buffer(64)  # secp256k1_pubkey
        if not recover(context, point, parsed, digest):
            raise ValueError("signature not recoverable")
        out = ctypes.create_string_buffer(33)
        size = ctypes.c_size_t(33)
        written = serialize(context, out, ctypes.byref(size), point, _EC_COMPRESSED)
        if not written or size.value != 33:
            raise ValueError("public key not serialisable")
        return out.raw

    return recover_compressed if _answers_like_coincurve(recover_compressed) else None


def _answers_like_coincurve(candidate: Callable[[bytes, bytes], bytes]) -> bool:
    """Whether `candidate` recovers what coincurve does on a signature made here."""
    digest = bytes(range(32))
    signature = coincurve.PrivateKey(bytes([7]) * 32).sign_recoverable(digest, hasher=None)
    try:
        return candidate(signature, digest) == _via_coincurve(signature, digest)
    except ValueError:
        return False


_recover = _direct()

#: Whether recovery runs through libsecp256k1 directly (False: through coincurve).
USES_LIBRARY_DIRECTLY = _recover is not None


def recover_compressed(signature65: bytes, digest: bytes) -> bytes:
    """The 33-byte compressed public key that made `signature65` (r || s || recovery id, the
    id 0-3) over the 32-byte `digest`. Raises ValueError if there is none."""
    if _recover is None:
        try:
            return _via_coincurve(signature65, digest)
        except Exception as exc:  # coincurve raises its own exception types
            raise ValueError("signature not recoverable") from exc
    return _recover(signature65, digest)
