"""`invoice.incoming.expired` over real transports: an invoice that passes its
expiry unpaid reaches a webhook endpoint, its own `webhook` URL and an SSE
stream once, with the state EXPIRED; a paid one never expires.

The expiry is one second; waits are liveness bounds, not timing assertions.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers_webhooks import Receiver, Server, SSEClient, wait_for

ALLOW = {"LNPLUGIN_WEBHOOK_ALLOW": "127.0.0.0/8", "LNPLUGIN_WEBHOOK_RETRY_SCHEDULE": "0,0,0,0"}
EXPIRED = "invoice.incoming.expired"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("expired"), ALLOW).start()
    yield srv
    srv.stop()


def test_an_unpaid_invoice_past_its_expiry_fires_expired_everywhere_once(
    server: Server, receiver: Receiver
) -> None:
    server.add_endpoint(receiver.url("/all"), types=[EXPIRED])
    stream = SSEClient(server.url + "/events", server.token)
    assert stream.ok
    try:
        invoice = server.create_invoice(
            amount=5, expiry=1, webhook=receiver.url("/own"), description="too late"
        )
        payment_hash = invoice["payment_hash"]
        event = next(e for e in stream.events() if e.event == EXPIRED)
    finally:
        stream.close()
    assert f'"payment_hash":"{payment_hash}"' in event.data.replace(" ", "")
    got = wait_for(lambda: len(receiver.of_type(EXPIRED, payment_hash)) >= 2 or None)
    assert got
    hits = receiver.of_type(EXPIRED, payment_hash)
    assert sorted(r.path for r in hits) == ["/all", "/own"]
    assert all(r.json["data"]["state"] == "EXPIRED" for r in hits)
    again = server.call("GET", f"/invoices/{payment_hash}").json()
    assert again["state"] == "EXPIRED" and again["settled"] is False


def test_a_paid_invoice_never_gets_an_expired_event(server: Server, receiver: Receiver) -> None:
    paid = server.create_invoice(amount=5, expiry=4)  # time enough to pay it on a busy machine
    server.pay(paid["payment_hash"])
    # An unpaid twin created after it expires later; once its event is in,
    # the paid one (older, shorter-lived) has had every chance to be swept.
    twin = server.create_invoice(amount=5, expiry=5, webhook=receiver.url("/twin"))
    wait_for(lambda: receiver.of_type(EXPIRED, twin["payment_hash"]) or None)
    assert receiver.of_type(EXPIRED, paid["payment_hash"]) == []
    assert server.call("GET", f"/invoices/{paid['payment_hash']}").json()["state"] == "SETTLED"
