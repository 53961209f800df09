"""lnplugin.run.server: its startup helpers, and what the running server does with
connections whose request never arrives whole."""

from __future__ import annotations

import contextlib
import gc
import json
import socket
import weakref
from pathlib import Path
from urllib.parse import urlsplit

from lnplugin.run.server import (
    CLIENT_TIMEOUT,
    MAX_HEAD_BYTES,
    MAX_HEADERS,
    freeze_startup_objects,
)
from tests import e2e

# The servers whose deadlines these tests wait out are given a short
# `--client-timeout` (the default is 20 s) and heartbeat, so the tests wait
# seconds rather than the default's minute; the other servers keep the default.
TIMEOUT = 3.0
HEARTBEAT = 2.0  # the second heartbeat comes after TIMEOUT: a stream outlives it
QUICK = ("--client-timeout", str(TIMEOUT), "--sse-heartbeat", str(HEARTBEAT))


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_freezing_startup_objects_still_collects_later_garbage() -> None:
    before = _Node()
    try:
        freeze_startup_objects()
        # What existed at startup is out of the collector's sight...
        assert gc.get_freeze_count() > 0
        assert all(obj is not before for obj in gc.get_objects())
        # ...but a cycle made while serving is still found and freed.
        a, b = _Node(), _Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        gc.collect()
        assert gone() is None
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closes `sock` within a liveness bound (it sends
    nothing first: the request never arrived whole, so there is no answer)."""
    sock.settimeout(TIMEOUT + e2e.WAIT)
    try:
        return sock.recv(1024) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_a_request_that_never_arrives_whole_does_not_hold_its_connection(
    tmp_path: Path,
) -> None:
    """Connections that send nothing, or a request head that never ends, or a
    body shorter than announced, are closed; a served connection still works.
    (Each open connection counts against the server's connection limit, past
    which everyone is answered 503.)"""
    with e2e.Server(tmp_path / "data", *QUICK) as server:
        address = urlsplit(server.url)
        where = (address.hostname, address.port)
        silent = socket.create_connection(where)
        head = socket.create_connection(where)
        head.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        body = socket.create_connection(where)
        body.sendall(b"POST /decode HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        stream = server.session.get(  # its request arrived whole: it may stay open
            server.url + "/events",
            headers={"Authorization": f"Bearer {server.token}"},
            stream=True,
            timeout=TIMEOUT + e2e.WAIT,
        )
        try:
            assert [_closed_by_server(s) for s in (silent, head, body)] == [True, True, True]
            assert server.request("GET", "/health").status_code == 200
            # A second heartbeat is sent past the deadline.
            heartbeats = (line for line in stream.iter_lines() if line.startswith(b":"))
            assert next(heartbeats, None) and next(heartbeats, None)
        finally:
            stream.close()
            for s in (silent, head, body):
                s.close()


def _answer_to(where: tuple[str | None, int | None], head: bytes) -> tuple[bytes, bytes]:
    """The status line and body the server answers `head` with, read until
    the server closes the connection."""
    with socket.create_connection(where) as sock:
        sock.settimeout(CLIENT_TIMEOUT + e2e.WAIT)
        # Refused before all of it was read, the answer is still there.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head + b"Connection: close\r\n\r\n")
        answer = b""
        try:
            while more := sock.recv(65536):
                answer += more
        except ConnectionResetError:
            pass
        head_part, _, body = answer.partition(b"\r\n\r\n")
        return head_part.split(b"\r\n", 1)[0], body


def test_a_request_head_past_the_limits_is_refused(tmp_path: Path) -> None:
    """Headers and the request line are capped in size, and headers in
    number, as the body is: otherwise any client could make the server hold
    megabytes of head per connection, times every connection it may open."""
    with e2e.Server(tmp_path / "data") as server:
        address = urlsplit(server.url)
        where = (address.hostname, address.port)
        start = b"GET /health HTTP/1.1\r\nHost: x\r\n"
        one_big = start + b"X-Big: " + b"a" * (MAX_HEAD_BYTES + 1) + b"\r\n"
        many = start + b"".join(b"X-%d: a\r\n" % i for i in range(MAX_HEADERS + 1))
        long_url = b"GET /health?" + b"a" * (MAX_HEAD_BYTES + 1) + b" HTTP/1.1\r\nHost: x\r\n"
        usual = start + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 200) for i in range(40))
        too_large = b"HTTP/1.1 431 Request Header Fields Too Large"
        for head in (one_big, many):
            status, body = _answer_to(where, head)
            assert status == too_large
            assert json.loads(body) == {
                "code": 431,
                "error": True,
                "message": f"Request headers over {MAX_HEAD_BYTES} bytes or {MAX_HEADERS} headers",
            }
        status, body = _answer_to(where, long_url)
        assert status == b"HTTP/1.1 400 Bad Request"
        assert json.loads(body)["message"] == f"Request line over {MAX_HEAD_BYTES} bytes"
        assert _answer_to(where, usual)[0] == b"HTTP/1.1 200 OK"
        assert server.request("GET", "/health").status_code == 200


def _streams_open(server: e2e.Server) -> float:
    metrics = server.request("GET", "/metrics").text
    line = next(x for x in metrics.splitlines() if x.startswith("lnplugin_sse_streams_open "))
    return float(line.split()[1])


def test_a_client_that_stops_reading_an_answer_does_not_hold_its_connection(
    tmp_path: Path,
) -> None:
    """A stream whose client stops reading in the middle of its resumed
    history (an answer longer than the socket buffers hold) is cut off, and
    its stream slot freed: the history goes out in plain `send`s, not the
    live part's, whose own stall check never runs. Before, such a client held
    the slot, the connection and a store connection until it hung up, which a
    vanished one never does: with `--max-streams` of them every new stream
    was refused 503."""
    with e2e.Server(tmp_path / "data", "--max-streams", "1", *QUICK) as server:
        big = {"note": "x" * 4000}  # each event ~4.5 KB: 600 of them outgrow the buffers
        for _ in range(600):
            r = server.request("POST", "/invoices", json={"amount": 1, "metadata": big})
            assert r.status_code == 201, r.text
        address = urlsplit(server.url)
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect((address.hostname, address.port))
        stalled.sendall(
            f"GET /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.token}\r\n"
            "Last-Event-ID: 0\r\n\r\n".encode()
        )
        try:
            e2e.wait_for(lambda: _streams_open(server) == 1, "the stalled stream to open")
            # Never read: the server must give the slot back by itself.
            e2e.wait_for(
                lambda: _streams_open(server) == 0,
                "the stalled stream to be cut off",
                timeout=TIMEOUT + e2e.WAIT,
            )
            stream = server.request("GET", "/events", stream=True)
            assert stream.status_code == 200
            stream.close()
        finally:
            stalled.close()
