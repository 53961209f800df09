"""The LNURL pieces that need no server: LUD-01 encoding, the LUD-06 metadata
string and its hash, and LUD-18 payer data checks."""

from __future__ import annotations

import hashlib
import json

import lnurl as lnurl_client
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lnplugin import lnurl

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


@given(path=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_./", min_size=0, max_size=80))
def test_the_lnurl_package_decodes_what_we_encode(path: str) -> None:
    url = f"https://pay.example.com/{path}"
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
