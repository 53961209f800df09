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
from lnplugin.store import Store, addresses, invoices

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
    ],
)
def test_payer_data_is_refused_with_the_reason(
    raw: str, requested: dict[str, object], reason: str
) -> None:
    with pytest.raises(lnurl.PayerDataError, match=reason):
        lnurl.parse_payer_data(raw, requested)  # type: ignore[arg-type]


def test_payer_data_keeps_kinds_the_address_did_not_ask_for() -> None:
    data = lnurl.parse_payer_data('{"name": "bob", "x-extra": [1]}', {"name": {}})
    assert data == {"name": "bob", "x-extra": [1]}


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
