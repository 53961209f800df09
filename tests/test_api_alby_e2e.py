"""The Alby Wallet API as an app meets it: a real `lnplugin serve` process on
the dev node, driven over HTTP with the bodies and URLs apps send.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import pytest

from tests.e2e import Server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with Server(tmp_path_factory.mktemp("alby") / "data") as running:
        yield running


def _count(server: Server) -> int:
    return len(server.request("GET", "/invoices", params={"items": 100}).json())


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"amount": 21000, "amount": 21}', "amount"),
        ('{"amount": 21, "description": "coffee", "description": "tea"}', "description"),
        ('{"amount": 21, "metadata": {"order": 1, "order": 2}}', "metadata.order"),
        ('{"amount": 21, "amount": 21}', "amount"),
    ],
    ids=["amount", "description", "nested", "same-value"],
)
def test_a_key_sent_twice_is_400_naming_it_and_writes_nothing(
    server: Server, body: str, field: str
) -> None:
    # JSON parsers disagree on which of two values for one key wins (RFC 8259
    # 4: "unpredictable"), so a proxy, a signature checker or a log may read
    # another amount than the one the invoice would be minted for.
    before = _count(server)
    r = server.request("POST", "/invoices", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    got = r.json()
    assert got["code"] == 400 and got["error"] is True
    assert list(got["errors"]) == [field]
    assert "more than once" in got["errors"][field]
    assert _count(server) == before


def test_a_key_sent_twice_in_a_decode_body_is_400(server: Server) -> None:
    r = server.request("POST", "/decode", data='{"invoice": "lnbc1x", "invoice": "lnbc1y"}')
    assert r.status_code == 400
    assert list(r.json()["errors"]) == ["invoice"]


@pytest.mark.parametrize("around", ["\n", "\r\n", "\t", " \n"])
def test_decode_in_the_path_takes_an_invoice_with_whitespace_around_it(
    server: Server, around: str
) -> None:
    # As POST /decode does: an invoice copied from a file or a text field often
    # ends in a newline, which a client's percent-encoding keeps in the path.
    invoice = server.request("POST", "/invoices", json={"amount": 21}).json()["payment_request"]
    r = server.request("GET", "/decode/bolt11/" + quote(around + invoice + around, safe=""))
    assert r.status_code == 200, r.text
    assert r.json()["amount"] == 21


def test_decode_of_a_newline_alone_is_400_not_404(server: Server) -> None:
    r = server.request("GET", "/decode/bolt11/%0A")
    assert r.status_code == 400, r.text
    assert list(r.json()["errors"]) == ["invoice"]
