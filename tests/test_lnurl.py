"""The LNURL pieces that need no server: LUD-01 encoding, the LUD-06 metadata
string and its hash, and LUD-18 payer data checks."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import lnurl as lnurl_client
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lnplugin import lnurl
from lnplugin.api.schemas import AddressCreate
from lnplugin.store import Store, addresses, invoices, lnurl_auth

# LUD-01's own example.
LUD01_URL = (
    "https://service.com/api?q=3fc3645b439ce8e7f2553a69e5267081d96dcd340693afabe04be7b0ccd178df"
)
LUD01_LNURL = (
    "LNURL1DP68GURN8GHJ7UM9WFMXJCM99E3K7MF0V9CXJ0M385EKVCENXC6R2C35XVUKXEFCV5MKVV34X5EKZD3EV56"
    "NYD3HXQURZEPEXEJXXEPNXSCRVWFNV9NXZCN9XQ6XYEFHVGCXXCMYXYMNSERXFQ5FNS"
)


def test_encoding_matches_the_lud01_example() -> None:
    assert lnurl.encode_lnurl(LUD01_URL) == LUD01_LNURL


@given(username=st.from_regex(lnurl.USERNAME, fullmatch=True).filter(lambda u: u not in ".."))
def test_the_lnurl_package_decodes_what_we_encode(username: str) -> None:
    url = lnurl.discovery_url("https://pay.example.com", username)
    assert str(lnurl_client.decode(lnurl.encode_lnurl(url)).url) == url


def test_metadata_has_text_identifier_and_image_and_hashes_with_payer_data() -> None:
    text = lnurl.metadata("alice", "Tips", "data:image/png;base64,AAA=", "https://pay.example.com")
    assert json.loads(text) == [
        ["text/plain", "Tips"],
        ["text/identifier", "alice@pay.example.com"],
        ["image/png;base64", "AAA="],
    ]
    # The client library parses it as LUD-06 metadata.
    assert lnurl_client.LnurlPayMetadata(text).text == "Tips"
    payer = '{"name":"bob"}'
    assert lnurl.description_hash(text) == hashlib.sha256(text.encode()).hexdigest()
    assert (
        lnurl.description_hash(text, payer) == hashlib.sha256((text + payer).encode()).hexdigest()
    )


def test_an_address_under_a_port_keeps_it_in_its_domain() -> None:
    assert lnurl.identifier("bob", "http://127.0.0.1:8080") == "bob@127.0.0.1:8080"


@pytest.mark.parametrize(
    "raw,requested,reason",
    [
        ("[]", {}, "must be a JSON object"),
        ("nope", {}, "must be a JSON object"),
        ("{}", {"name": {"mandatory": True}}, "payerdata.name is mandatory"),
        ('{"name": ""}', {"name": {"mandatory": True}}, "payerdata.name is mandatory"),
        ('{"name": 5}', {"name": {"mandatory": False}}, "payerdata.name must be text"),
        ('{"pubkey": "zz"}', {"pubkey": {"mandatory": False}}, "payerdata.pubkey must be a hex"),
        ('{"email": "a"}', {"email": {"mandatory": False}}, "payerdata.email must be an email"),
        ('{"name": "' + "x" * 2000 + '"}', {}, "at most 2000 characters"),
        # Nested deeper than the parser goes: not an object, not a crash.
        ("[" * 1999, {}, "must be a JSON object"),
        # A lone surrogate is no text (and no store column takes it).
        ('{"name": "\\ud800"}', {"name": {"mandatory": False}}, "without lone surrogates"),
    ],
)
def test_payer_data_is_refused_with_the_reason(
    raw: str, requested: dict[str, object], reason: str
) -> None:
    with pytest.raises(lnurl.PayerDataError, match=reason):
        lnurl.parse_payer_data(raw, requested)


def test_payer_data_keeps_kinds_the_address_did_not_ask_for() -> None:
    data = lnurl.parse_payer_data('{"name": "bob", "x-extra": [1]}', {"name": {}})
    assert data == {"name": "bob", "x-extra": [1]}


# LUD-04's signature check example: k1, the linking key, and its DER signature of k1.
LUD04_AUTH = {
    "k1": "e2af6254a8df433264fa23f67eb8188635d15ce883e8fc020989d5f82ae6f11e",
    "key": "02c3b844b8104f0c1b15c507774c9ba7fc609f58f343b9b149122e944dd20c9362",
    "sig": "304402203767faf494f110b139293d9bab3c50e07b3bf33c463d4aa767256cd09132dc51022058"
    "21f8efacdb5c595b92ada255876d9201e126e2f31a140d44561cc1f7e9e43d",
}


def test_auth_accepts_the_lud04_example_and_refuses_each_flaw_with_the_reason() -> None:
    lnurl.check_auth(LUD04_AUTH)
    wrong_sig = "payerdata.auth.sig is not a valid signature of k1 by key"
    cases = [
        ("nope", "must be an object with key, k1 and sig"),
        ({"key": LUD04_AUTH["key"], "k1": LUD04_AUTH["k1"]}, "must be an object with key"),
        ({**LUD04_AUTH, "k1": "ab"}, "payerdata.auth.k1 must be 64 hex characters"),
        ({**LUD04_AUTH, "key": "04" + "11" * 32}, "payerdata.auth.key must be a compressed"),
        ({**LUD04_AUTH, "sig": "zz"}, "payerdata.auth.sig must be a hex DER signature"),
        ({**LUD04_AUTH, "k1": "00" * 32}, wrong_sig),  # another challenge
        ({**LUD04_AUTH, "key": "02" + "00" * 32}, wrong_sig),  # not a point on the curve
        ({**LUD04_AUTH, "sig": "30" * 20}, wrong_sig),  # not DER
    ]
    for value, reason in cases:
        with pytest.raises(lnurl.PayerDataError, match=reason):
            lnurl.check_auth(value)
    # Through parse_payer_data: checked only when the address asks for auth.
    raw = json.dumps({"auth": {**LUD04_AUTH, "k1": "00" * 32}})
    with pytest.raises(lnurl.PayerDataError, match=wrong_sig):
        lnurl.parse_payer_data(raw, {"auth": {"mandatory": False}})
    assert lnurl.parse_payer_data(raw, {"name": {"mandatory": False}})["auth"]["k1"] == "00" * 32
    with pytest.raises(lnurl.PayerDataError, match=r"payerdata\.auth is mandatory"):
        lnurl.parse_payer_data("{}", {"auth": {"mandatory": True}})


def test_auth_k1s_are_for_one_address_used_once_and_expire(tmp_path: Path) -> None:
    store = Store(tmp_path / "lnplugin.sqlite")
    try:
        now = 1_000_000
        with store.transaction() as tx:
            k1 = lnurl_auth.issue(tx, "alice", now)
            other = lnurl_auth.issue(tx, "alice", now)
            late = lnurl_auth.issue(tx, "alice", now)
        assert len({k1, other, late}) == 3 and all(len(bytes.fromhex(k)) == 32 for k in (k1, other))
        with store.transaction() as tx:
            assert not lnurl_auth.consume(tx, k1, "bob", now)  # issued for alice
            assert not lnurl_auth.consume(tx, "ab" * 32, "alice", now)  # never issued
            assert lnurl_auth.consume(tx, k1.upper(), "alice", now + 1)
            assert not lnurl_auth.consume(tx, k1, "alice", now + 2)  # used
            assert lnurl_auth.usable(tx, other, "alice", now + lnurl_auth.TTL - 1)
            assert not lnurl_auth.consume(tx, late, "alice", now + lnurl_auth.TTL)  # expired
            # Issuing sweeps expired rows.
            lnurl_auth.issue(tx, "alice", now + lnurl_auth.TTL)
            left = tx.execute("SELECT k1 FROM lnurl_auth_k1 ORDER BY k1").fetchall()
        assert other not in {k for (k,) in left} and len(left) == 1
    finally:
        store.close()


def test_keysend_records_name_the_address_whose_record_they_carry(tmp_path: Path) -> None:
    """Attribution happens in `record_fields`, for incoming payments only, on an
    exact (type, UTF-8 value) match; an update never clears a minted address."""
    store = Store(tmp_path / "lnplugin.sqlite")
    try:
        with store.transaction() as tx:
            addresses.insert(tx, AddressCreate(username="alice").columns())
            addresses.insert(
                tx,
                AddressCreate(
                    username="bob", keysend_custom_key=7629175, keysend_custom_value="pod-guid"
                ).columns(),
            )
            match = invoices.record_fields
            assert match({696969: b"alice"}, tx)["lightning_address"] == "alice"
            assert match({7629175: b"pod-guid", 696969: b"x"}, tx)["lightning_address"] == "bob"
            for records in ({696969: b"alice "}, {696969: b"\xff"}, {2**64 - 1: b"alice"}, {}):
                assert "lightning_address" not in match(records, tx), records
            # No transaction: an outgoing payment, whose records we sent, is not attributed.
            assert "lightning_address" not in match({696969: b"alice"})
    finally:
        store.close()


def test_the_rate_limit_storage_does_not_start_a_thread_per_request() -> None:
    """limits' memory storage starts a 10 ms sweep thread whenever the last one
    ended; ours sweeps at most every few seconds, and still counts and resets."""
    from lnplugin.api.public import _MemoryStorage

    storage = _MemoryStorage("lnplugin-memory://")
    timers = set()
    deadline = time.monotonic() + 0.2  # spans many 10 ms sweeps
    while time.monotonic() < deadline:
        storage.incr("k", expiry=60)
        timers.add(id(storage.timer))
        time.sleep(0.002)
    assert len(timers) <= 2, "a sweep thread was started for every few requests"
    assert storage.get("k") > 10
    storage.incr("short", expiry=0.05)
    time.sleep(0.1)
    assert storage.get("short") == 0  # an expired counter reads as reset


@pytest.mark.parametrize(
    ("public_url", "accepted"),
    [
        ("https://pay.example.com", True),
        ("http://abcdefghijklmnop.onion", True),  # LUD-01: http:// only for onion links
        ("http://127.0.0.1:8080", True),  # trying it on this machine
        ("http://localhost:8080", True),
        ("http://[::1]:8080", True),
        ("http://pay.example.com", False),
        ("http://203.0.113.7", False),
    ],
)
def test_wallets_take_lnurl_links_over_https_or_onion_only(public_url: str, accepted: bool) -> None:
    from lnplugin.api.public import wallets_accept

    assert wallets_accept(public_url) is accepted


@pytest.mark.parametrize(
    ("public_url", "warned"),
    [
        ("https://pay.example.com", False),
        ("https://pay.example.com/", False),  # stored without the slash
        ("https://pay.example.com:8443", False),
        ("https://example.com/ln", True),
        ("https://example.com/ln/pay/", True),
    ],
)
def test_a_path_in_the_public_url_is_warned_about_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, public_url: str, warned: bool
) -> None:
    """A wallet looks `alice@example.com` up at the domain's root, which a
    public URL with a path does not serve: the addresses lnplugin prints for
    it would not work, and nothing else would say so."""
    from flask import Flask

    from lnplugin.api.public import install
    from lnplugin.config import load_settings

    settings = load_settings({"public_url": public_url, "data_dir": tmp_path}, environ={})
    install(Flask("public-url-path"), settings)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    said = [w for w in warnings if "/.well-known/lnurlp/" in w]
    assert bool(said) is warned, warnings
    if warned:
        [line] = said
        assert line.startswith(f"--public-url {public_url.rstrip('/')} has a path: "), line
        assert "https://example.com/.well-known/lnurlp/" in line  # where wallets look
