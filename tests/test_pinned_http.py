"""`pinned_http.request` against real local servers that answer too slowly.

Webhook receivers and rss::payment record hosts are chosen by strangers, so
an attempt must end even when the other side keeps the connection busy with
a byte now and then, each well within the read timeout.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from lnplugin import pinned_http


class Trickler:
    """A TCP server that reads a request, then answers `head` and one more
    byte every `interval` seconds, for as long as the client listens."""

    def __init__(self, head: bytes, interval: float) -> None:
        self.head = head
        self.interval = interval
        self.done = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.done.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                conn.sendall(self.head)
                while not self.done.is_set():
                    conn.sendall(b"a")
                    time.sleep(self.interval)
            except OSError:
                return  # the client hung up

    def close(self) -> None:
        self.done.set()
        self._sock.close()


@pytest.fixture
def trickle_headers() -> Iterator[Trickler]:
    server = Trickler(b"HTTP/1.1 200 OK\r\nX-Slow: ", 0.3)
    yield server
    server.close()


@pytest.fixture
def trickle_body() -> Iterator[Trickler]:
    server = Trickler(b"HTTP/1.1 200 OK\r\nContent-Length: 60000\r\n\r\n", 0.3)
    yield server
    server.close()


def _request_in_thread(port: int) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []

    def run() -> None:
        try:
            out.append(
                pinned_http.request(
                    "POST",
                    f"http://127.0.0.1:{port}/hook",
                    allow=("127.0.0.0/8",),
                    body=b"{}",
                    read_timeout=1.0,
                )
            )
        except pinned_http.Failed as exc:
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


@pytest.mark.parametrize("which", ["trickle_headers", "trickle_body"])
def test_an_answer_trickled_a_byte_at_a_time_ends_the_attempt(
    which: str, request: pytest.FixtureRequest
) -> None:
    """Each byte comes well within the 1 s read timeout, so only a deadline
    for the whole attempt (connect timeout + read timeout) ends it; without
    one, a receiver could hold a sender thread for as long as it liked."""
    server: Trickler = request.getfixturevalue(which)
    thread, out = _request_in_thread(server.port)
    thread.join(60)  # far beyond the deadline: only a hang gets here
    assert not thread.is_alive(), "the attempt never ended"
    assert len(out) == 1 and isinstance(out[0], pinned_http.Failed), out
    assert str(out[0]) == (
        f"TimeoutError: no whole answer within {pinned_http.CONNECT_TIMEOUT + 1.0:g} s"
    )
    assert not out[0].refused and not out[0].malformed  # worth retrying


def test_a_prompt_answer_is_unaffected_by_the_deadline() -> None:
    server = Trickler(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", 0.3)
    try:
        thread, out = _request_in_thread(server.port)
        thread.join(60)
        assert len(out) == 1 and isinstance(out[0], pinned_http.Response), out
        assert out[0].status == 204
    finally:
        server.close()
