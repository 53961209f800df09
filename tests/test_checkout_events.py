"""What the checkout page adds to the events, over real transports
(`lnplugin serve` on the dev node, a local webhook receiver, SSE streams):

- `invoice.viewed`, once per invoice, the first time its checkout page is
  opened: not for a HEAD, not for the QR images or the state stream, and
  once for many openings at the same moment;
- webhook and SSE payloads carry the invoice's `qr_code_png`, `qr_code_svg`
  and `checkout_url`, as `GET /invoices/<payment_hash>` does.

Waits are liveness bounds, not timing assertions.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from tests.e2e import Server, scalar, wait_for
from tests.helpers_webhooks import Receiver, SSEClient, free_port

VIEWED = "invoice.viewed"
LINKS = ("qr_code_png", "qr_code_svg", "checkout_url")
ENV = {"LNPLUGIN_WEBHOOK_ALLOW": "127.0.0.0/8", "LNPLUGIN_WEBHOOK_RETRY_SCHEDULE": "0,0,0"}


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[Server]:
    port = free_port()
    data = tmp_path_factory.mktemp("checkout-events") / "data"
    args = ("--public-url", f"http://127.0.0.1:{port}", "--port", str(port))
    with Server(data, *args, "--rate-limit", "1000/minute", env=ENV) as srv:
        types = [VIEWED, "invoice.incoming.created", "invoice.incoming.settled"]
        reply = srv.request(
            "POST", "/webhook_endpoints", json={"url": receiver.url("/all"), "filter_types": types}
        )
        assert reply.status_code == 201, reply.text
        yield srv


def _invoice(server: Server, **body: Any) -> dict[str, Any]:
    reply = server.request("POST", "/invoices", json={"amount": 2100, **body})
    assert reply.status_code == 201, reply.text
    return dict(reply.json())


def _stored_views(server: Server, payment_hash: str) -> int:
    sql = "SELECT COUNT(*) FROM events WHERE type = ? AND payment_hash = ?"
    return int(scalar(server.data_dir, sql, VIEWED, payment_hash)[0])


def _received(receiver: Receiver, type_: str, payment_hash: str, at: str = "/all") -> list[Any]:
    return [r for r in receiver.of_type(type_, payment_hash) if r.path == at]


def test_opening_the_page_twice_sends_invoice_viewed_once(
    server: Server, receiver: Receiver
) -> None:
    stream = SSEClient(server.url + "/events", str(server.token))
    assert stream.ok
    try:
        inv = _invoice(server, description="Two coffees", webhook=receiver.url("/own"))
        page = inv["checkout_url"]
        # Neither a HEAD, nor the pictures, nor the state stream is a view.
        assert requests.head(page, timeout=10).status_code == 200
        assert requests.get(inv["qr_code_png"], timeout=10).status_code == 200
        assert requests.get(inv["qr_code_svg"], timeout=10).status_code == 200
        assert _stored_views(server, inv["payment_hash"]) == 0
        assert server.request("GET", f"/invoices/{inv['payment_hash']}").json()["viewed_at"] is None

        assert requests.get(page, timeout=10).status_code == 200
        assert requests.get(page, timeout=10).status_code == 200
        assert _stored_views(server, inv["payment_hash"]) == 1
        # A second invoice viewed afterwards: its event follows ours in the
        # stream, so reaching it means ours was the only one before it.
        later = _invoice(server)
        assert requests.get(later["checkout_url"], timeout=10).status_code == 200
        seen = []
        for event in stream.events():
            if event.event == VIEWED:
                seen.append(event.json)
                if event.json["data"]["payment_hash"] == later["payment_hash"]:
                    break
    finally:
        stream.close()
    ours = [e for e in seen if e["data"]["payment_hash"] == inv["payment_hash"]]
    assert len(ours) == 1
    data = ours[0]["data"]
    assert data["state"] == "CREATED" and data["viewed_at"] is not None
    assert data["checkout_url"] == page

    got = server.request("GET", f"/invoices/{inv['payment_hash']}").json()
    assert got["viewed_at"] == data["viewed_at"]
    # Webhooks: the endpoint that asked for it and the invoice's own URL, once each.
    for at in ("/all", "/own"):
        hits = wait_for(
            lambda at=at: _received(receiver, VIEWED, inv["payment_hash"], at), f"viewed at {at}"
        )
        assert len({r.headers["webhook-id"] for r in hits}) == 1
        assert hits[0].json["data"]["viewed_at"] == got["viewed_at"]


def test_many_first_openings_at_once_give_one_event(server: Server) -> None:
    inv = _invoice(server)
    with ThreadPoolExecutor(8) as pool:
        codes = list(
            pool.map(lambda _: requests.get(inv["checkout_url"], timeout=20).status_code, range(16))
        )
    assert codes == [200] * 16
    assert _stored_views(server, inv["payment_hash"]) == 1


def test_webhook_and_stream_payloads_carry_the_invoice_links(
    server: Server, receiver: Receiver
) -> None:
    inv = _invoice(server, description="linked")
    payment_hash = inv["payment_hash"]
    assert all(inv[k] for k in LINKS)
    # The invoice's own stream: its first message is read from the row, the
    # rest (and a resumed history) from the outbox.
    stream = SSEClient(f"{server.url}/invoices/{payment_hash}/events", str(server.token))
    assert stream.ok
    try:
        first = stream.next()
        assert {k: first.json["data"][k] for k in LINKS} == {k: inv[k] for k in LINKS}
        reply = server.request("POST", "/dev/pay", json={"payment_hash": payment_hash})
        assert reply.status_code == 200, reply.text
        settled = next(e for e in stream.events() if e.event == "invoice.incoming.settled")
    finally:
        stream.close()
    got = server.request("GET", f"/invoices/{payment_hash}").json()
    assert settled.json["data"] == got

    created = wait_for(
        lambda: _received(receiver, "invoice.incoming.created", payment_hash), "created hook"
    )
    assert {k: created[0].json["data"][k] for k in LINKS} == {k: inv[k] for k in LINKS}
    paid = wait_for(
        lambda: _received(receiver, "invoice.incoming.settled", payment_hash), "settled hook"
    )
    assert paid[0].json["data"] == got

    # `GET /events` resumed from before the invoice: the history carries them too.
    resumed = SSEClient(server.url + "/events", str(server.token), last_event_id="0")
    try:
        mine = next(
            e
            for e in resumed.events()
            if e.event == "invoice.incoming.created"
            and e.json["data"]["payment_hash"] == payment_hash
        )
    finally:
        resumed.close()
    assert mine.json["data"]["checkout_url"] == inv["checkout_url"]


def test_a_keysend_event_has_no_links(server: Server) -> None:
    stream = SSEClient(server.url + "/events", str(server.token))
    try:
        reply = server.request(
            "POST", "/dev/keysend", json={"amount_msat": 5000, "custom_records": {}}
        )
        assert reply.status_code == 200, reply.text
        event = next(e for e in stream.events() if e.event == "invoice.incoming.settled")
    finally:
        stream.close()
    assert event.json["data"]["payment_hash"] == reply.json()["payment_hash"]
    assert [event.json["data"][k] for k in LINKS] == [None, None, None]
