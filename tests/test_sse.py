"""Server-Sent Events over real HTTP: current state then changes, closing on
a final state, Last-Event-ID resume, heartbeats, scopes and admission."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.helpers_webhooks import Server, SSEClient, run_cli, wait_for

MAX_STREAMS = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(
        tmp_path_factory.mktemp("sse"),
        {},
        "--sse-heartbeat",
        "0.2",
        "--max-streams",
        str(MAX_STREAMS),
    ).start()
    yield srv
    srv.stop()


def _stream(server: Server, payment_hash: str, last_event_id: str | None = None) -> SSEClient:
    return SSEClient(f"{server.url}/invoices/{payment_hash}/events", server.token, last_event_id)


def test_created_then_settled_after_dev_pay_then_closed(server: Server) -> None:
    invoice = server.create_invoice()
    client = _stream(server, invoice["payment_hash"])
    assert client.ok
    assert client.response.headers["content-type"].startswith("text/event-stream")
    first = client.next()
    assert first.event == "invoice.incoming.created"
    assert first.json["data"]["state"] == "CREATED"
    assert first.json["data"]["payment_hash"] == invoice["payment_hash"]

    run_cli("dev", "pay", invoice["payment_hash"], data_dir=server.data_dir)
    rest = list(client.events())  # ends only when the server closes the stream
    assert [e.event for e in rest] == ["invoice.incoming.settled"]
    assert rest[0].json["data"]["state"] == "SETTLED"
    assert int(rest[0].id or 0) > int(first.id or 0)


def test_final_invoice_sends_its_state_and_closes(server: Server) -> None:
    invoice = server.create_invoice()
    server.pay(invoice["payment_hash"])
    events = list(_stream(server, invoice["payment_hash"]).events())
    assert [e.event for e in events] == ["invoice.incoming.settled"]
    assert events[0].json["data"]["settled"] is True


def test_last_event_id_resumes_an_invoice_stream(server: Server) -> None:
    invoice = server.create_invoice()
    client = _stream(server, invoice["payment_hash"])
    created = client.next()
    client.close()  # the client goes away; the payment happens meanwhile
    server.pay(invoice["payment_hash"])

    resumed = list(_stream(server, invoice["payment_hash"], created.id).events())
    assert [e.event for e in resumed] == ["invoice.incoming.settled"]
    # Resuming after the final event: 204, which stops EventSource reconnecting.
    done = _stream(server, invoice["payment_hash"], resumed[0].id)
    assert done.response.status_code == 204


def test_last_event_id_resumes_the_all_events_stream(server: Server) -> None:
    client = SSEClient(f"{server.url}/events", server.token)
    a = server.create_invoice()
    server.pay(a["payment_hash"])
    seen = client.events()
    got = [next(seen), next(seen)]
    assert [e.event for e in got] == ["invoice.incoming.created", "invoice.incoming.settled"]
    assert {e.json["data"]["payment_hash"] for e in got} == {a["payment_hash"]}
    client.close()

    b = server.create_invoice()
    server.pay(b["payment_hash"])
    resumed = SSEClient(f"{server.url}/events", server.token, got[-1].id).events()
    again = [next(resumed), next(resumed)]
    assert [e.event for e in again] == ["invoice.incoming.created", "invoice.incoming.settled"]
    assert {e.json["data"]["payment_hash"] for e in again} == {b["payment_hash"]}
    assert int(again[0].id or 0) > int(got[-1].id or 0)


def test_idle_streams_get_heartbeats(server: Server) -> None:
    invoice = server.create_invoice()
    client = _stream(server, invoice["payment_hash"])
    client.next()
    # The next line after the first event is a heartbeat comment (0.2 s here).
    line = next(client._lines)
    while line == "":
        line = next(client._lines)
    assert line.startswith(":")
    client.close()


def test_scopes_decide_what_a_stream_may_read(server: Server) -> None:
    creator = run_cli(
        "token", "create", "--scope", "invoices:create", data_dir=server.data_dir
    ).splitlines()[-1]
    assert SSEClient(f"{server.url}/events", creator).response.status_code == 403
    assert requests.get(f"{server.url}/events", timeout=5).status_code == 401
    invoice = server.create_invoice()
    assert _stream(server, invoice["payment_hash"][::-1]).response.status_code == 404
    assert _stream(server, "zz").response.status_code == 400
    assert _stream(server, invoice["payment_hash"], "abc").response.status_code == 400


def test_streams_beyond_the_limit_get_503_while_the_api_answers(server: Server) -> None:
    invoice = server.create_invoice()
    clients = []
    for _ in range(MAX_STREAMS):
        # Earlier tests' closed streams hold their slots until the server
        # notices (at the next heartbeat), so wait for each slot.
        client = wait_for(lambda: (c := _stream(server, invoice["payment_hash"])).ok and c)
        assert client.next().event == "invoice.incoming.created"
        clients.append(client)
    extra = _stream(server, invoice["payment_hash"])
    assert extra.response.status_code == 503
    assert extra.response.headers["Retry-After"]
    assert extra.response.json()["code"] == 503
    got = server.call("GET", f"/invoices/{invoice['payment_hash']}")
    assert got.status_code == 200
    for client in clients:
        client.close()
    # Slots come back once the server notices the closed connections.
    again = wait_for(lambda: (c := _stream(server, invoice["payment_hash"])).ok and c)
    assert again.next().event == "invoice.incoming.created"
    again.close()


def test_subscription_hands_over_to_direct_writes_in_order() -> None:
    """Queued events are flushed at the switch, duplicates (seq already sent)
    are skipped, the hub's later pushes are written directly, and a final
    event ends an invoice stream."""
    from lnplugin.hub import Subscription, message

    sub = Subscription(lambda row: True, 1, final_ends=True)
    created = message(5, "invoice.incoming.created", "{}")
    sub.push(5, "invoice.incoming.created", created)  # already sent as the first state
    sub.push(6, "invoice.incoming.created", message(6, "invoice.incoming.created", "{}"))
    written: list[bytes] = []
    sub.go_direct(written.append, 5, lambda limit: False, 1 << 20)
    assert written == [message(6, "invoice.incoming.created", "{}")]
    assert sub.heartbeat() and written[-1] == message(6, "invoice.incoming.created", "{}")
    assert sub.heartbeat() and written[-1].startswith(b":")  # idle: a keep-alive
    settled = message(7, "invoice.incoming.settled", "{}")
    sub.push(7, "invoice.incoming.settled", settled)
    sub.push(7, "invoice.incoming.settled", settled)
    assert written.count(settled) == 1
    assert sub.wait(0) and sub.finished
    sub.push(8, "invoice.incoming.settled", message(8, "x", "{}"))  # after the end: dropped
    assert written[-1] == settled


def test_subscription_ends_on_a_failed_write_or_a_stalled_client() -> None:
    from lnplugin.hub import Subscription, message

    def broken(data: bytes) -> None:
        raise OSError("gone")

    sub = Subscription(lambda row: True, None)
    sub.go_direct(broken, 0, lambda limit: False, 1 << 20)
    sub.push(1, "invoice.incoming.created", message(1, "invoice.incoming.created", "{}"))
    assert sub.wait(0) and sub.broken

    stalled = Subscription(lambda row: True, None)
    written: list[bytes] = []
    stalled.go_direct(written.append, 0, lambda limit: True, 1 << 20)
    stalled.push(1, "invoice.incoming.created", message(1, "invoice.incoming.created", "{}"))
    assert written == [] and stalled.wait(0) and stalled.overflowed


@pytest.mark.parametrize(
    "bad",
    ["-1", "+1", "1.5", "1e3", "abc", "²", "٣", "9223372036854775808", "9" * 30, "1" * 5000],
)
@pytest.mark.parametrize("where", ["header", "query"])
def test_an_event_id_that_is_not_a_64_bit_sequence_number_is_a_400(
    server: Server, bad: str, where: str
) -> None:
    invoice = server.create_invoice()
    for path in ("/events", f"/invoices/{invoice['payment_hash']}/events"):
        # Raw bytes in the header: not every case is Latin-1.
        field, body = _resume_refused(
            server, path, where, bad.encode() if where == "header" else bad
        )
        assert body["code"] == 400 and body["error"] is True
        assert "event id" in body["errors"][field]


def _resume_refused(
    server: Server, path: str, where: str, value: str | bytes
) -> tuple[str, dict[str, Any]]:
    """Resume `path` from `value` (in the header or the query); the field
    named and the answer's body, which must be a 400."""
    headers: dict[str, str | bytes] = dict(server.headers)
    params: dict[str, str | bytes] = {}
    if where == "header":
        field = "Last-Event-ID"
        headers[field] = value
    else:
        field = "last_event_id"
        params[field] = value
    # stream=True: a wrongly accepted id opens a stream that never ends.
    with requests.get(
        server.url + path, headers=headers, params=params, stream=True, timeout=15
    ) as reply:
        assert reply.status_code == 400, (path, reply.status_code)
        return field, reply.json()


@pytest.mark.parametrize("where", ["header", "query"])
def test_an_event_id_this_server_never_sent_is_a_400_not_a_silent_skip(
    server: Server, where: str
) -> None:
    """Past the newest event (another server's id, or one from before a
    restore): resuming after it would skip every event up to it and leave an
    invoice's stream open after its payment."""
    invoice = server.create_invoice()
    for path in ("/events", f"/invoices/{invoice['payment_hash']}/events"):
        field, body = _resume_refused(server, path, where, str(2**62))
        reason = body["errors"][field]
        assert reason.startswith("is past the newest event (") and "reconnect without it" in reason


def _admitted(url: str, token: str, last: str) -> SSEClient:
    """Open a stream once the server has a slot for it. This module's server
    allows 3 streams, and a stream closed by an earlier test keeps its slot
    until its next heartbeat (0.2 s), so a 503 here means "not yet"."""

    def attempt() -> SSEClient | None:
        client = SSEClient(url, token, last)
        if client.response.status_code == 503:
            client.close()
            return None
        return client

    return wait_for(attempt, timeout=10)


def test_the_largest_event_id_parses_and_is_refused_as_one_never_sent(server: Server) -> None:
    """2^63 - 1 (with leading zeros, even) is a well-formed id, not an
    overflow; no server has sent it yet, so it is refused as past the newest."""
    for last in ("9223372036854775807", "0009223372036854775807"):
        headers = {**server.headers, "Last-Event-ID": last}
        with requests.get(f"{server.url}/events", headers=headers, stream=True, timeout=15) as r:
            assert r.status_code == 400
            assert r.json()["errors"]["Last-Event-ID"].startswith("is past the newest event")


# -- a server whose heartbeat never comes during a test ---------------------------
# With a 60 s heartbeat, anything that only happens at a heartbeat shows up as a
# client timeout (5 s, or SSEClient's 20 s), never as a slow pass.


ROUNDS = 60  # each leaves a stream open until its heartbeat: --max-streams below is above


@pytest.fixture(scope="module")
def quiet_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(
        tmp_path_factory.mktemp("sse-quiet"), {}, "--sse-heartbeat", "60", "--max-streams", "100"
    ).start()
    yield srv
    srv.stop()


def test_a_closed_stream_does_not_stall_the_next_requests(quiet_server: Server) -> None:
    """The loop may still close a parked stream's connection (a hang-up seen
    by a poll that began before the park), and the OS gives its descriptor
    number to the next connection, which must be served at once. The client
    reads only part of what the server sent, so its close is a reset (the
    hang-up that exposes the race); each round hits it a few times in a
    hundred, so there are many rounds."""
    request = (
        f"GET /events HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {quiet_server.token}\r\n\r\n"
    ).encode()
    for _ in range(ROUNDS):
        with socket.create_connection(("127.0.0.1", quiet_server.port), timeout=5) as sock:
            sock.sendall(request)
            assert sock.recv(100).startswith(b"HTTP/1.1 200")
        for _ in range(4):
            reply = requests.get(f"{quiet_server.url}/health", timeout=5)
            assert reply.status_code == 200


def _token(server: Server, *scopes: str) -> tuple[str, str]:
    """A new token: (id, secret)."""
    args = [a for scope in scopes for a in ("--scope", scope)]
    secret = run_cli("token", "create", *args, data_dir=server.data_dir).splitlines()[-1]
    newest = run_cli("token", "list", data_dir=server.data_dir).splitlines()[-1]
    return newest.split("\t")[0], secret


def test_revoking_a_token_ends_its_open_streams(quiet_server: Server) -> None:
    token_id, secret = _token(quiet_server, "invoices:read")
    _, other = _token(quiet_server, "invoices:read")
    invoice = quiet_server.create_invoice()
    everything = SSEClient(f"{quiet_server.url}/events", secret)
    one = SSEClient(f"{quiet_server.url}/invoices/{invoice['payment_hash']}/events", secret)
    bystander = SSEClient(f"{quiet_server.url}/events", other)
    assert one.next().event == "invoice.incoming.created"
    assert everything.ok and bystander.ok

    run_cli("token", "revoke", token_id, data_dir=quiet_server.data_dir)
    # Both streams end (well before the 60 s heartbeat; a read timeout fails
    # the test) without sending anything more...
    assert list(everything.events()) == []
    assert list(one.events()) == []
    # ...a reconnect is refused, and streams of other tokens go on.
    assert SSEClient(f"{quiet_server.url}/events", secret).response.status_code == 401
    later = quiet_server.create_invoice()
    got = bystander.next()
    assert got.json["data"]["payment_hash"] == later["payment_hash"]
    bystander.close()


def _threads(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Threads:")).split()[1])


def test_open_streams_hold_no_thread(quiet_server: Server) -> None:
    """Forty open streams, each live (it got an event), add no thread per
    stream: the whole server runs fewer threads than there are streams, and
    only the API's own worker pool (`--threads`, 16) may have grown meanwhile.
    A thread-per-stream server (one made or reserved per stream) has more."""
    assert quiet_server.proc is not None
    before = _threads(quiet_server.proc.pid)
    streams = [SSEClient(f"{quiet_server.url}/events", quiet_server.token) for _ in range(40)]
    try:
        assert all(s.ok for s in streams)
        made = quiet_server.create_invoice()
        for s in streams:
            assert s.next().json["data"]["payment_hash"] == made["payment_hash"]
        now = _threads(quiet_server.proc.pid)
        assert now < len(streams) and now <= before + 16, (before, now)
    finally:
        for s in streams:
            s.close()
