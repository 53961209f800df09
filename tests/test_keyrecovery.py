"""Public-key recovery straight through libsecp256k1 (`lnplugin.keyrecovery`)
answers exactly as coincurve does, on every recovery id, and refuses what
coincurve refuses."""

from __future__ import annotations

import coincurve
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lnplugin import keyrecovery

ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def test_the_direct_path_is_in_use() -> None:
    """coincurve ships libsecp256k1 as one library with its symbols exported;
    if a release stops doing so, decode falls back to coincurve (correct, but
    slower in a busy server), and this says so."""
    assert keyrecovery.USES_LIBRARY_DIRECTLY


@settings(max_examples=200, deadline=None)
@given(secret=st.integers(1, ORDER - 1), digest=st.binary(min_size=32, max_size=32))
def test_recovers_the_signer(secret: int, digest: bytes) -> None:
    key = coincurve.PrivateKey(secret.to_bytes(32, "big"))
    signature = key.sign_recoverable(digest, hasher=None)
    assert keyrecovery.recover_compressed(signature, digest) == key.public_key.format()


@settings(max_examples=200, deadline=None)
@given(
    signature=st.binary(min_size=64, max_size=64),
    recovery_id=st.integers(0, 3),
    digest=st.binary(min_size=32, max_size=32),
)
def test_answers_any_signature_as_coincurve_does(
    signature: bytes, recovery_id: int, digest: bytes
) -> None:
    signature65 = signature + bytes([recovery_id])
    try:
        expected: bytes | None = coincurve.PublicKey.from_signature_and_message(
            signature65, digest, hasher=None
        ).format()
    except Exception:
        expected = None
    try:
        got: bytes | None = keyrecovery.recover_compressed(signature65, digest)
    except ValueError:
        got = None
    assert got == expected


@pytest.mark.parametrize(
    "signature",
    [
        bytes(64),  # r = s = 0
        ORDER.to_bytes(32, "big") + (1).to_bytes(32, "big"),  # r out of range
        (1).to_bytes(32, "big") + ORDER.to_bytes(32, "big"),  # s out of range
    ],
    ids=["zero", "r too large", "s too large"],
)
def test_a_signature_with_no_key_is_a_value_error(signature: bytes) -> None:
    with pytest.raises(ValueError):
        keyrecovery.recover_compressed(signature + b"\x00", bytes(32))


def test_the_fallback_answers_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the library cannot be used directly, coincurve answers, the same way."""
    monkeypatch.setattr(keyrecovery, "_recover", None)
    key = coincurve.PrivateKey(bytes([5]) * 32)
    signature = key.sign_recoverable(bytes(32), hasher=None)
    assert keyrecovery.recover_compressed(signature, bytes(32)) == key.public_key.format()
    with pytest.raises(ValueError):
        keyrecovery.recover_compressed(bytes(65), bytes(32))
