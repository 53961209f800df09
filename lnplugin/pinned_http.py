"""One outbound HTTP request to a URL a stranger chose, behind the SSRF guard.

Webhook deliveries and rss::payment fetches both call URLs that someone
other than the operator picked, so both go through here: the host is
resolved once, every address is judged by `ssrf.check_address`, and the
connection goes to exactly the address that passed (a second lookup could
be answered differently: DNS rebinding). Redirects are never followed (the
caller sees the 3xx), and no more than `max_body` bytes are read.

Besides the timeouts per connect and per read, the whole attempt has a
deadline (the two added up): a server that sends a byte now and then, each
within the read timeout, would otherwise hold the calling thread for as long
as it liked (a webhook sender, of which there are only a few).
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from lnplugin import tls
from lnplugin.ssrf import Refused, check_address

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0


@dataclass(frozen=True)
class Response:
    """What came back: the status, the headers (names lower-cased; a repeated
    header keeps its first value) and at most `max_body` bytes of the body."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def resolve(host: str, port: int, allow: Sequence[str]) -> str:
    """Resolve once and return the first address that passes the guard; the
    connection then goes to exactly this address (no second lookup to rebind)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise Refused(f"cannot resolve {host}: {exc}") from None
    first_error: Refused | None = None
    for info in infos:
        address = str(info[4][0])
        try:
            check_address(ipaddress.ip_address(address.split("%")[0]), allow)
            return address
        except Refused as exc:
            first_error = first_error or exc
    raise first_error or Refused(f"cannot resolve {host}")


class _Deadline:
    """Cuts the connection off once `seconds` have passed: its socket is shut
    down, so the read waiting on it returns at once and the attempt fails.

    A timer thread does it; `watch` tells it the socket (from `connect`), and
    `end` (before the socket is closed) stops it touching the socket at all,
    so it can never shut down another socket that reuses the number.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.passed = False
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._ended = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            if self.passed:
                raise TimeoutError("deadline passed")
            self._sock = sock

    def end(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._ended = True
            self._sock = None

    def _expire(self) -> None:
        with self._lock:
            if self._ended:
                return
            self.passed = True
            if self._sock is not None:
                # The plain socket's shutdown, on an SSL socket too (the SSL
                # one would drop its TLS state under the reading thread).
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(self._sock, socket.SHUT_RDWR)


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to a checked IP while `Host` stays the URL's host."""

    def __init__(
        self, host: str, port: int, address: str, read_timeout: float, deadline: _Deadline
    ) -> None:
        super().__init__(host, port, timeout=CONNECT_TIMEOUT)
        self._address = address
        self._read_timeout = read_timeout
        self._deadline = deadline

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), CONNECT_TIMEOUT)
        self._deadline.watch(self.sock)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(self._read_timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """TLS to a checked IP, with SNI and certificate checks for the URL's host."""

    def __init__(
        self, host: str, port: int, address: str, read_timeout: float, deadline: _Deadline
    ) -> None:
        self._ctx = tls.client_context()  # the CAs every outbound client trusts
        super().__init__(host, port, timeout=CONNECT_TIMEOUT, context=self._ctx)
        self._address = address
        self._read_timeout = read_timeout
        self._deadline = deadline

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), CONNECT_TIMEOUT)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # The handshake after `watch`, so the deadline covers a slow one too.
        self.sock = self._ctx.wrap_socket(
            raw, server_hostname=tls.server_name(self.host), do_handshake_on_connect=False
        )
        self._deadline.watch(self.sock)
        self.sock.do_handshake()
        self.sock.settimeout(self._read_timeout)


class Failed(Exception):
    """No response: not an http(s) URL, refused by the guard, or a network
    error. The message is one line, safe to log (it names no path or query)."""

    def __init__(self, message: str, *, refused: bool = False, malformed: bool = False) -> None:
        super().__init__(message)
        self.refused = refused  # the guard said no: trying again will not help
        # The server answered, but with headers past http.client's limits (a
        # line over 64 KiB, more than 100 headers): its answer, not a network
        # fault, so asking again gets the same.
        self.malformed = malformed


def request(
    method: str,
    url: str,
    *,
    allow: Sequence[str],
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    max_body: int = 64 * 1024,
    read_timeout: float = READ_TIMEOUT,
) -> Response:
    """One attempt; raises `Failed` when there is no HTTP response at all,
    or not all of it (up to `max_body`) within `CONNECT_TIMEOUT + read_timeout`
    of the first connect."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Failed("refused: not an http(s) URL", refused=True)
    # A bad port or an unencodable host raises ValueError / UnicodeError here;
    # callers record that as a failed attempt of their own.
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        address = resolve(parts.hostname, port, allow)
    except Refused as exc:
        raise Failed(str(exc), refused=True) from None
    cls = _PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP
    deadline = _Deadline(CONNECT_TIMEOUT + read_timeout)
    conn = cls(parts.hostname, port, address, read_timeout, deadline)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request(method, path, body=body, headers={**(headers or {}), "connection": "close"})
        response = conn.getresponse()
        received: dict[str, str] = {}
        for name, value in response.getheaders():
            received.setdefault(name.lower(), value)
        data = response.read(max_body) if max_body else b""
        if deadline.passed:  # cut off in the body: the read ended short, with no error
            raise TimeoutError
        return Response(response.status, received, data)
    except (OSError, http.client.HTTPException) as exc:
        if deadline.passed:
            raise Failed(f"TimeoutError: no whole answer within {deadline.seconds:g} s") from None
        # http.client raises the bare HTTPException only for too many headers.
        malformed = (
            isinstance(exc, http.client.LineTooLong) or type(exc) is http.client.HTTPException
        )
        raise Failed(f"{exc.__class__.__name__}: {exc}"[:300], malformed=malformed) from None
    finally:
        deadline.end()
        conn.close()
