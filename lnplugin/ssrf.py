"""Which webhook targets lnplugin may POST to: one URL check and one address
guard, shared by `POST /webhook_endpoints`, the `webhook` field of
`POST /invoices` and the delivery worker.

Every URL that passes `check_url` can be handed to the sender without it
raising (port in range, host that the resolver can encode), and
`check_address` decides on the address lnplugin would really reach: for
IPv6 spellings that carry an IPv4 address (mapped, compatible, NAT64, 6to4,
Teredo), on that IPv4 address, because Python's `is_global` calls several
of them global although they lead to loopback or the metadata service.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_UNSENDABLE = re.compile(r"[\x00-\x20\x7f]")  # what http.client refuses in a request line
MAX_HOST = 253  # a DNS name's length in text form (RFC 1035), without the final dot
_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")  # after IDNA: LDH, plus _

_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
_MAPPED = ipaddress.ip_network("::ffff:0:0/96")  # IPv4-mapped
_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # IPv4-translated (SIIT)
_COMPATIBLE = ipaddress.ip_network("::/96")  # IPv4-compatible (deprecated)
_PRIVATE = tuple(  # RFC 1918 and IPv6 unique-local: a private network's own addresses
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class Refused(Exception):
    """The target is not allowed (SSRF guard) or not a valid http(s) URL."""


# -- the URL ------------------------------------------------------------------------


def check_url(value: str) -> str:
    """An absolute http(s) URL with a host, a port in 1-65535 and no credentials.

    Raises ValueError with the reason (pydantic shows it under the field).
    The host must be something the sender can look up: an IP literal or a
    name whose labels are 1-63 characters after IDNA encoding, so a stored
    URL never fails for a reason that no retry can fix.
    """
    if _UNSENDABLE.search(value):
        # The sender could never put it in a request line: every delivery
        # would fail until the event is dead-lettered.
        raise ValueError("must not contain spaces or control characters (percent-encode them)")
    try:
        parts = urlsplit(value)
    except ValueError as exc:  # e.g. an unclosed "[" around an IPv6 host
        raise ValueError(f"is not a valid URL ({exc})") from None
    if not (parts.path + parts.query).isascii():
        raise ValueError(
            "must have an ASCII path and query (percent-encode other characters as UTF-8)"
        )
    if parts.scheme not in ("http", "https"):
        raise ValueError("must be an http:// or https:// URL")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ValueError("has an invalid port (must be 1-65535)") from None
    if port == 0:
        raise ValueError("has an invalid port (must be 1-65535)")
    if not host:
        raise ValueError("must include a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not contain credentials (user:password@)")
    if literal_address(host) is None:
        _check_name(host)
    return value


def _check_name(host: str) -> None:
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError(
            "has an invalid host name (each dot-separated label must be 1-63 characters)"
        ) from None
    name = ascii_host.removesuffix(".")
    if len(name) > MAX_HOST:
        raise ValueError(f"has a host name longer than {MAX_HOST} characters")
    for label in name.split("."):
        if not _LABEL.fullmatch(label):
            raise ValueError(
                f"has an invalid host name label {label[:63]!r} (letters, digits, '-', '_'; "
                "1-63 characters, not starting or ending with '-')"
            )


def literal_address(host: str) -> IPAddress | None:
    """The address `host` denotes without DNS, parsed as the connect path's
    resolver parses it (so `127.1` and `2130706433` are 127.0.0.1 here too);
    None for a name."""
    try:
        infos = socket.getaddrinfo(host, None, flags=socket.AI_NUMERICHOST)
    except (OSError, UnicodeError, ValueError):
        return None
    return ipaddress.ip_address(str(infos[0][4][0]).split("%")[0])


# -- the address --------------------------------------------------------------------


def embedded_ipv4(ip: IPAddress) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 address(es) an IPv6 address leads to, or () when it carries none.

    Mapped, translated, compatible and NAT64 addresses keep it in the last
    32 bits (for the local-use NAT64 prefix 64:ff9b:1::/48 this assumes the
    usual /96 layout), 6to4 in bits 16-47; Teredo has two: the server in
    bits 32-63 and the client as the bitwise NOT of the last 32 bits.
    `::` and `::1` are not IPv4-compatible addresses but themselves.
    """
    if not isinstance(ip, ipaddress.IPv6Address):
        return ()
    last32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _MAPPED or ip in _TRANSLATED or any(ip in net for net in _NAT64):
        return (last32,)
    if ip in _COMPATIBLE:
        return (last32,) if int(ip) > 1 else ()
    if ip.sixtofour is not None:
        return (ip.sixtofour,)
    if ip.teredo is not None:
        return ip.teredo  # (server, client)
    return ()


def is_public(ip: IPAddress) -> bool:
    """Public unicast: `is_global` and not multicast; for IPv6 also inside
    2000::/3, the only range IANA hands out as global unicast (Python calls
    some reserved and deprecated site-local ranges global)."""
    if ip.is_multicast or not ip.is_global:
        return False
    return ip.version == 4 or ip in _GLOBAL_UNICAST


def check_address(ip: IPAddress, allow: Sequence[str]) -> None:
    """Refuse anything that is not a public unicast address, unless allow-listed.

    Not public: loopback, RFC 1918, link-local (incl. the cloud metadata
    address 169.254.169.254), CGNAT (100.64/10, Alibaba's metadata), ULA
    (fd00::/8, AWS's IPv6 metadata), documentation and reserved ranges. An
    IPv6 address with an IPv4 address inside is judged by that IPv4 address
    (both of Teredo's); an allow-listed range matches the address as
    written or the IPv4 address inside it.
    """
    if _allowed(ip, allow):
        return
    inner = embedded_ipv4(ip)
    for target in inner or (ip,):
        if _allowed(target, allow) or is_public(target):
            continue
        via = f"{ip} leads to {target}, which is" if target != ip else f"{ip} is"
        raise Refused(f"refused: {via} a {_kind(target)} address (allow it with --webhook-allow)")


def _allowed(ip: IPAddress, allow: Iterable[str]) -> bool:
    return any(ip in ipaddress.ip_network(cidr, strict=False) for cidr in allow)


def _kind(ip: IPAddress) -> str:
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local/metadata"
    if ip.is_multicast:
        return "multicast"
    if any(ip in net for net in _PRIVATE):  # not `is_private`: it counts documentation ranges
        return "private"
    if ip in _SHARED:
        return "shared (carrier-grade NAT)"
    return "reserved/non-public"


def refusal(url: str, allow: Sequence[str]) -> str | None:
    """Why an IP-literal target is refused at registration, or None.

    Only literals: a name is checked at delivery time, on the addresses it
    resolves to then, because DNS answers change.
    """
    ip = literal_address(urlsplit(url).hostname or "")
    if ip is None:
        return None
    try:
        check_address(ip, allow)
    except Refused as exc:
        return str(exc)
    return None
