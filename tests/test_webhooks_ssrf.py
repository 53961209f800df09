"""The SSRF guard and the one URL check, shared by `POST /webhook_endpoints`,
the invoice `webhook` field and the delivery worker.

Every IPv6 spelling that carries an IPv4 address is judged by that address:
Python's `is_global` calls `::127.0.0.1` and `64:ff9b::a9fe:a9fe` global.
The connect-time cases go through `webhooks.post`, which resolves and
checks exactly as the worker does, against a real local receiver.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import pytest

from lnplugin import ssrf, webhooks
from tests.helpers_webhooks import Receiver

# (address, what the guard must say it leads to)
REFUSED = [
    pytest.param("127.0.0.1", "loopback", id="v4-loopback"),
    pytest.param("169.254.169.254", "link-local", id="v4-metadata"),
    pytest.param("10.1.2.3", "private", id="v4-rfc1918"),
    pytest.param("100.64.0.1", "shared (carrier-grade NAT)", id="v4-cgnat"),
    pytest.param("192.0.2.1", "reserved/non-public", id="v4-documentation"),
    pytest.param("0.0.0.0", "", id="v4-unspecified"),
    pytest.param("224.0.0.1", "multicast", id="v4-multicast"),
    pytest.param("::1", "loopback", id="v6-loopback"),
    pytest.param("::", "", id="v6-unspecified"),
    pytest.param("fe80::1", "link-local", id="v6-link-local"),
    pytest.param("fd00:ec2::254", "private", id="v6-ula-aws-metadata"),
    pytest.param("fec0::1", "non-public", id="v6-site-local"),
    pytest.param("5f00::1", "non-public", id="v6-reserved"),
    pytest.param("ff02::1", "multicast", id="v6-multicast"),
    pytest.param("2001:db8::1", "reserved/non-public", id="v6-documentation"),
    pytest.param("::ffff:127.0.0.1", "127.0.0.1, which is a loopback", id="mapped"),
    pytest.param("::ffff:a9fe:a9fe", "169.254.169.254, which is a link-local", id="mapped-meta"),
    pytest.param("::ffff:0:7f00:1", "127.0.0.1, which is a loopback", id="translated"),
    pytest.param("::127.0.0.1", "127.0.0.1, which is a loopback", id="compatible"),
    pytest.param("::a9fe:a9fe", "169.254.169.254, which is a link-local", id="compatible-meta"),
    pytest.param("64:ff9b::a9fe:a9fe", "169.254.169.254, which is a link-local", id="nat64-meta"),
    pytest.param("64:ff9b::7f00:1", "127.0.0.1, which is a loopback", id="nat64-loopback"),
    pytest.param("64:ff9b::a01:203", "10.1.2.3, which is a private", id="nat64-private"),
    pytest.param("64:ff9b:1::a9fe:a9fe", "169.254.169.254", id="nat64-local-use"),
    pytest.param("2002:7f00:1::", "127.0.0.1, which is a loopback", id="6to4-loopback"),
    pytest.param("2002:a9fe:a9fe::1", "169.254.169.254", id="6to4-meta"),
    # Teredo: server 169.254.169.254 (bits 32-63), client 8.8.8.8 (NOT of the last 32 bits)
    pytest.param("2001:0:a9fe:a9fe::f7f7:f7f7", "169.254.169.254", id="teredo-server"),
    # Teredo: server 8.8.8.8, client 127.0.0.1
    pytest.param("2001:0:808:808::80ff:fffe", "127.0.0.1, which is a loopback", id="teredo-client"),
]

ACCEPTED = [
    pytest.param("8.8.8.8", id="v4"),
    pytest.param("2606:4700:4700::1111", id="v6"),
    pytest.param("::ffff:8.8.8.8", id="mapped"),
    pytest.param("::8.8.8.8", id="compatible"),
    pytest.param("64:ff9b::808:808", id="nat64"),
    pytest.param("2002:808:808::1", id="6to4"),
    pytest.param("2001:0:808:808::f7f7:f7f7", id="teredo"),
]


@pytest.mark.parametrize(("address", "says"), REFUSED)
def test_non_public_spellings_are_refused(address: str, says: str) -> None:
    with pytest.raises(ssrf.Refused) as refused:
        ssrf.check_address(ipaddress.ip_address(address), ())
    assert str(refused.value).startswith(f"refused: {ipaddress.ip_address(address)} ")
    assert says in str(refused.value)
    assert "--webhook-allow" in str(refused.value)


@pytest.mark.parametrize("address", ACCEPTED)
def test_public_spellings_pass(address: str) -> None:
    ssrf.check_address(ipaddress.ip_address(address), ())


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("::ffff:127.0.0.1", ["127.0.0.1"]),
        ("::ffff:0:a9fe:a9fe", ["169.254.169.254"]),
        ("::127.0.0.1", ["127.0.0.1"]),
        ("::1", []),
        ("::", []),
        ("64:ff9b::c000:201", ["192.0.2.1"]),
        ("64:ff9b:1::c000:201", ["192.0.2.1"]),
        ("2002:c000:201::1", ["192.0.2.1"]),
        # RFC 4380's example: server 65.54.227.120, client 192.0.2.45
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", ["65.54.227.120", "192.0.2.45"]),
        ("2606:4700:4700::1111", []),
        ("8.8.8.8", []),
    ],
)
def test_embedded_ipv4(address: str, expected: list[str]) -> None:
    found = ssrf.embedded_ipv4(ipaddress.ip_address(address))
    assert [str(ip) for ip in found] == expected


@pytest.mark.parametrize(
    ("address", "allow"),
    [
        ("127.0.0.1", "127.0.0.0/8"),
        ("::ffff:127.0.0.1", "127.0.0.0/8"),  # the IPv4 address inside
        ("64:ff9b::7f00:1", "127.0.0.0/8"),
        ("2001:0:808:808::80ff:fffe", "127.0.0.0/8"),  # Teredo client; its server is public
        ("64:ff9b::a9fe:a9fe", "64:ff9b::/96"),  # the address as written
        ("::1", "::1/128"),
    ],
)
def test_the_allow_list_matches_the_address_or_the_ipv4_inside(address: str, allow: str) -> None:
    ip = ipaddress.ip_address(address)
    with pytest.raises(ssrf.Refused):
        ssrf.check_address(ip, ())
    ssrf.check_address(ip, (allow,))


def test_teredo_is_refused_when_either_end_is_not_public() -> None:
    # server 8.8.8.8 allowed, client 10.1.2.3 (NOT = f5fe:fdfc) is not
    with pytest.raises(ssrf.Refused, match=r"10\.1\.2\.3"):
        ssrf.check_address(ipaddress.ip_address("2001:0:808:808::f5fe:fdfc"), ("8.8.8.0/24",))


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("::127.0.0.1", "::7f00:1"),
        ("example.com", None),
        ("a..b", None),
    ],
)
def test_literal_address_parses_as_the_resolver_does(host: str, address: str | None) -> None:
    found = ssrf.literal_address(host)
    assert (str(found) if found is not None else None) == address


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/x", "http"),
        ("https:///nohost", "host"),
        ("http://[::1/x", "not a valid URL"),
        ("http://localhost:99999/x", "port"),
        ("http://localhost:0/x", "port"),
        ("http://localhost:http/x", "port"),
        ("http://user:pass@example.com/", "credentials"),
        ("http://user@example.com/", "credentials"),
        ("http://:pass@example.com/", "credentials"),
        ("http://a..b/", "label"),
        (f"http://{'a' * 64}.example/", "label"),
        ("http://exa mple.com/", "spaces"),
        # What the sender could never put in a request line: refused up front,
        # not dead-lettered after every retry failed.
        ("http://127.0.0.1:9/inv two", "spaces or control characters"),
        ("http://127.0.0.1:9/crlf\r\nX-Injected: yes", "spaces or control characters"),
        ("https://shop.example/hooks/\u0001", "control characters"),
        ("https://shop.example/\x7f", "control characters"),
        ("https://shop.example/caf\u00e9", "ASCII path"),
        ("https://shop.example/x?name=Jos\u00e9", "ASCII path and query"),
        ("http://-shop.example/", "label"),
        ("http://shop.example\\@evil/", "credentials"),  # parsers disagree on "\\"
        ("http://" + ("a" * 60 + ".") * 5 + "com/", "longer than 253"),
    ],
)
def test_bad_urls_are_rejected_with_a_reason(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        ssrf.check_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hook?token=abc",
        "http://localhost:8080/x",
        "https://bücher.example/paid",
        "https://shop.example/caf%C3%A9?q=a%20b",
        "http://example.com./",
        "http://_hooks.example.com/",
        "http://[2606:4700:4700::1111]:443/",
        "http://127.1/",  # a literal: the guard decides on it, not the syntax check
    ],
)
def test_good_urls_pass(url: str) -> None:
    assert ssrf.check_url(url) == url


# -- connect time ----------------------------------------------------------------------


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.close()


@pytest.mark.parametrize(
    "host",
    ["[::127.0.0.1]", "[::ffff:127.0.0.1]", "[64:ff9b::7f00:1]", "[2002:7f00:1::]", "127.1"],
)
def test_the_sender_refuses_before_connecting(receiver: Receiver, host: str) -> None:
    """The URL is stored already (validation bypassed); the sender's own
    check on the address it would connect to refuses it."""
    port = receiver.url().split(":")[-1].split("/")[0]
    outcome = webhooks.post(f"http://{host}:{port}/x", b"{}", {}, ())
    assert not outcome.ok and outcome.status_code is None
    assert outcome.error is not None and outcome.error.startswith("refused:")
    assert "127.0.0.1" in outcome.error and "loopback" in outcome.error
    assert receiver.received == []


def test_an_allow_listed_mapped_address_reaches_the_receiver(receiver: Receiver) -> None:
    """`::ffff:127.0.0.1` is 127.0.0.1 to a dual-stack socket: allowing
    127.0.0.0/8 lets it through, and the POST arrives."""
    port = receiver.url().split(":")[-1].split("/")[0]
    url = f"http://[::ffff:127.0.0.1]:{port}/mapped"
    assert not webhooks.post(url, b"{}", {}, ()).ok
    outcome = webhooks.post(url, b"{}", {}, ("127.0.0.0/8",))
    assert outcome.ok and outcome.status_code == 200, outcome
    assert [r.path for r in receiver.received] == ["/mapped"]
