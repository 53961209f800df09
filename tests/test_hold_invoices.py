"""Hold invoices and cancel on the dev node, through the API: create for a
payment hash, ACCEPTED with a settle deadline, settle by preimage, cancel,
the safety cancel before the deadline, and 501 on a node that cannot hold.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bolt11 as reference
import pytest

from lnplugin import invoicing
from lnplugin.api import create_app
from lnplugin.config import load_settings
from lnplugin.follower import Follower
from lnplugin.nodes.base import InvoiceNotOpen, InvoiceRequest, InvoiceUpdate
from lnplugin.nodes.cln import ClnNode
from lnplugin.nodes.dev import DevNode
from lnplugin.nodes.dev.node import HTLC_CLTV_DELTA
from lnplugin.service import Service
from lnplugin.store import Store, events, tokens
from lnplugin_sim.cln_sim import ClnSim
from tests import e2e
from tests.helpers_openapi import conforms
from tests.helpers_present import present

tmp = e2e.fixture_tmp  # a short directory: unix socket paths must be short


def secret_pair() -> tuple[str, str]:
    preimage = secrets.token_bytes(32)
    return preimage.hex(), hashlib.sha256(preimage).hexdigest()


def hold(client, headers, payment_hash: str, **body):
    return client.post(
        "/invoices", json={"amount": 50, "payment_hash": payment_hash, **body}, headers=headers
    )


def event_types(service: Service, payment_hash: str) -> list[str]:
    rows = service.store.conn.execute(
        "SELECT type FROM events WHERE payment_hash = ? ORDER BY seq", (payment_hash,)
    ).fetchall()
    return [r[0] for r in rows]


def get(client, headers, payment_hash: str) -> dict:
    return client.get(f"/invoices/{payment_hash}", headers=headers).get_json()


def test_hold_invoice_is_accepted_then_settled_by_its_preimage(client, admin, service) -> None:
    preimage, payment_hash = secret_pair()
    created = hold(client, admin, payment_hash, description="escrow")
    assert created.status_code == 201, created.get_json()
    inv = created.get_json()
    assert inv["state"] == "CREATED" and inv["payment_hash"] == payment_hash
    assert inv["settle_deadline"] is None and inv["preimage"] is None
    decoded = reference.decode(inv["payment_request"])
    assert decoded.payment_hash == payment_hash and decoded.amount_msat == 50_000

    paid = client.post("/dev/pay", json={"payment_hash": payment_hash}, headers=admin)
    assert paid.status_code == 200
    assert paid.get_json()["state"] == "ACCEPTED"
    height = service.node.get_info().block_height
    got = get(client, admin, payment_hash)
    assert got["state"] == "ACCEPTED" and got["settled"] is False
    assert got["settle_deadline"] == height + HTLC_CLTV_DELTA
    assert got["amount_received_msat"] == 50_000

    wrong = client.post(
        f"/invoices/{payment_hash}/settle", json={"preimage": "00" * 32}, headers=admin
    )
    assert wrong.status_code == 400
    assert "payment hash" in wrong.get_json()["errors"]["preimage"]
    settled = client.post(
        f"/invoices/{payment_hash}/settle", json={"preimage": preimage}, headers=admin
    )
    assert settled.status_code == 200, settled.get_json()
    body = settled.get_json()
    assert body["state"] == "SETTLED" and body["settled"] is True
    assert body["preimage"] == preimage
    # A retry (its answer was lost) gets the settled invoice again, as from
    # LND's SettleInvoice and NWC's settle_hold_invoice; a wrong preimage is
    # still refused.
    again = client.post(
        f"/invoices/{payment_hash}/settle", json={"preimage": preimage}, headers=admin
    )
    assert again.status_code == 200 and again.get_json()["settled_at"] == body["settled_at"]
    assert wrong_status(client, admin, payment_hash) == 400
    assert event_types(service, payment_hash) == [
        events.INCOMING_CREATED,
        events.INCOMING_ACCEPTED,
        events.INCOMING_SETTLED,
    ]


def wrong_status(client, headers, payment_hash: str) -> int:
    r = client.post(
        f"/invoices/{payment_hash}/settle", json={"preimage": "00" * 32}, headers=headers
    )
    return r.status_code


def test_settling_an_unpaid_hold_invoice_is_409(client, admin) -> None:
    preimage, payment_hash = secret_pair()
    assert hold(client, admin, payment_hash).status_code == 201
    r = client.post(f"/invoices/{payment_hash}/settle", json={"preimage": preimage}, headers=admin)
    assert r.status_code == 409
    assert "not paid yet" in r.get_json()["message"]


def test_an_expired_invoice_is_not_canceled_after_its_expired_event(client, admin) -> None:
    # Final as it is: a cancel would send `canceled` after `expired`.
    made = client.post("/invoices", json={"amount": 5, "expiry": 1}, headers=admin).get_json()
    while time.time() < made["creation_date"] + 1:  # its expiry passes (not yet swept)
        time.sleep(0.05)
    r = client.post(f"/invoices/{made['payment_hash']}/cancel", headers=admin)
    assert r.status_code == 409
    assert "expired" in r.get_json()["message"]


def test_a_late_safety_cancel_says_when_it_came() -> None:
    from lnplugin.follower import cancel_reason

    assert cancel_reason(856, 880, 24) == (
        "canceled by lnplugin at block 856, 24 blocks before its settle deadline 880: "
        "not settled or canceled within hold_cancel_margin (24 blocks) of it"
    )
    assert "at its settle deadline 137:" in cancel_reason(137, 137, 24)
    assert "3 blocks past its settle deadline 137:" in cancel_reason(140, 137, 24)


def test_canceling_a_held_invoice_fails_the_payment_back(client, admin, service) -> None:
    preimage, payment_hash = secret_pair()
    assert hold(client, admin, payment_hash).status_code == 201
    assert (
        client.post("/dev/pay", json={"payment_hash": payment_hash}, headers=admin).status_code
        == 200
    )
    r = client.post(f"/invoices/{payment_hash}/cancel", headers=admin)
    assert r.status_code == 200
    body = r.get_json()
    assert body["state"] == "CANCELED"
    assert body["cancel_reason"] == "canceled through the API"
    assert body["amount_received_msat"] == 0  # the payer has the money back
    # Settling afterwards is refused, by lnplugin and by the node.
    again = client.post(
        f"/invoices/{payment_hash}/settle", json={"preimage": preimage}, headers=admin
    )
    assert again.status_code == 409
    with pytest.raises(InvoiceNotOpen):
        service.node.settle_invoice(preimage)
    # The node's own CANCELED (sweep) adds nothing: one canceled event.
    service.follower.sweep()
    assert event_types(service, payment_hash).count(events.INCOMING_CANCELED) == 1


def test_cancel_refuses_payment_of_a_regular_invoice(client, admin, service) -> None:
    inv = client.post("/invoices", json={"amount": 10}, headers=admin).get_json()
    r = client.post(f"/invoices/{inv['payment_hash']}/cancel", headers=admin)
    assert r.status_code == 200 and r.get_json()["state"] == "CANCELED"
    paid = client.post("/dev/pay", json={"payment_hash": inv["payment_hash"]}, headers=admin)
    assert paid.status_code == 409
    # Canceling again answers the canceled invoice, without a second event.
    assert client.post(f"/invoices/{inv['payment_hash']}/cancel", headers=admin).status_code == 200
    assert event_types(service, inv["payment_hash"]).count(events.INCOMING_CANCELED) == 1


def test_canceling_a_settled_invoice_is_409(client, admin) -> None:
    inv = client.post("/invoices", json={"amount": 10}, headers=admin).get_json()
    assert (
        client.post(
            "/dev/pay", json={"payment_hash": inv["payment_hash"]}, headers=admin
        ).status_code
        == 200
    )
    r = client.post(f"/invoices/{inv['payment_hash']}/cancel", headers=admin)
    assert r.status_code == 409
    assert r.get_json()["error"] is True
    assert get(client, admin, inv["payment_hash"])["state"] == "SETTLED"


def test_hold_requests_are_validated_per_field(client, admin) -> None:
    r = hold(client, admin, "xyz")
    assert r.status_code == 400 and "payment_hash" in r.get_json()["errors"]
    preimage, payment_hash = secret_pair()
    r = hold(client, admin, payment_hash, preimage=preimage)
    assert r.status_code == 400 and "settle" in r.get_json()["errors"]["preimage"]
    assert hold(client, admin, payment_hash).status_code == 201
    assert hold(client, admin, payment_hash).status_code == 409  # one invoice per hash
    r = client.post(f"/invoices/{payment_hash}/settle", json={"preimage": "ab"}, headers=admin)
    assert r.status_code == 400 and "64 hex" in r.get_json()["errors"]["preimage"]
    r = client.post(f"/invoices/{payment_hash}/settle", json={}, headers=admin)
    assert r.get_json()["errors"] == {"preimage": "is required"}


def test_settle_and_cancel_need_invoices_create(client, make_token) -> None:
    _, payment_hash = secret_pair()
    creator = {"Authorization": f"Bearer {make_token('invoices:create')}"}
    reader = {"Authorization": f"Bearer {make_token('invoices:read')}"}
    assert hold(client, creator, payment_hash).status_code == 201
    assert client.post(f"/invoices/{payment_hash}/cancel", headers=reader).status_code == 403
    r = client.post(
        f"/invoices/{payment_hash}/settle", json={"preimage": "00" * 32}, headers=reader
    )
    assert r.status_code == 403
    assert client.post(f"/invoices/{payment_hash}/cancel", headers=creator).status_code == 200


def test_a_token_that_may_not_read_settles_and_cancels_only_invoices_it_made(
    client, make_token, admin
) -> None:
    shop = {"Authorization": f"Bearer {make_token('invoices:create')}"}
    other = {"Authorization": f"Bearer {make_token('invoices:create')}"}
    reader = {"Authorization": f"Bearer {make_token('invoices:create', 'invoices:read')}"}
    preimage, held = secret_pair()
    assert hold(client, shop, held, payer_email="payer@example.com").status_code == 201
    made = client.post("/invoices", json={"amount": 5, "payer_name": "Ann"}, headers=admin)
    regular = made.get_json()["payment_hash"]
    # Another create-only token hears "no such invoice", and changes nothing.
    for payment_hash in (held, regular):
        refused = client.post(f"/invoices/{payment_hash}/cancel", headers=other)
        assert refused.status_code == 404
        assert refused.get_json()["message"] == f"No invoice with payment hash {payment_hash}"
    refused = client.post(f"/invoices/{held}/settle", json={"preimage": preimage}, headers=other)
    assert refused.status_code == 404 and "payer@example.com" not in refused.get_data(as_text=True)
    assert [get(client, admin, h)["state"] for h in (held, regular)] == ["CREATED", "CREATED"]
    # Its maker may, and so may a token that may read every invoice anyway.
    assert client.post(f"/invoices/{held}/cancel", headers=shop).get_json()["state"] == "CANCELED"
    canceled = client.post(f"/invoices/{regular}/cancel", headers=reader).get_json()
    assert canceled["state"] == "CANCELED" and canceled["payer_name"] == "Ann"


def test_held_invoice_is_canceled_before_its_deadline_and_says_why(client, admin, service) -> None:
    _, payment_hash = secret_pair()
    assert hold(client, admin, payment_hash).status_code == 201
    assert (
        client.post("/dev/pay", json={"payment_hash": payment_hash}, headers=admin).status_code
        == 200
    )
    margin = service.follower.hold_cancel_margin
    mined = client.post(
        "/dev/mine", json={"blocks": HTLC_CLTV_DELTA - margin - 1}, headers=admin
    ).get_json()
    assert service.follower.cancel_near_deadline() == 0  # margin + 1 blocks left
    assert get(client, admin, payment_hash)["state"] == "ACCEPTED"
    client.post("/dev/mine", json={"blocks": 1}, headers=admin)
    assert service.follower.cancel_near_deadline() == 1
    got = get(client, admin, payment_hash)
    assert got["state"] == "CANCELED"
    assert f"at block {mined['block_height'] + 1}" in got["cancel_reason"]
    assert f"{margin} blocks before its settle deadline" in got["cancel_reason"]
    row = service.store.conn.execute(
        "SELECT payload FROM events WHERE payment_hash = ? AND type = ?",
        (payment_hash, events.INCOMING_CANCELED),
    ).fetchone()
    assert "settle deadline" in events.payload(row)["data"]["cancel_reason"]
    paid = client.post("/dev/pay", json={"payment_hash": payment_hash}, headers=admin)
    assert paid.status_code == 409


def test_the_sweep_finds_a_hold_state_the_feed_never_carried(tmp_path: Path) -> None:
    """What a restart relies on: lnplugin was not following when the payment
    was accepted, and the sweep re-checks the invoices it holds."""
    node = DevNode(tmp_path / "dev")
    store = Store(tmp_path / "store.sqlite")
    follower = Follower(node, store)
    preimage, payment_hash = secret_pair()
    minted = node.create_hold_invoice(InvoiceRequest(amount_msat=7000), payment_hash)
    with store.transaction() as tx:
        tx.execute(
            "INSERT INTO invoices (identifier, type, payment_hash, payment_request, state,"
            " amount_msat, created_at, expiry, expires_at, source) VALUES"
            " ('h1', 'incoming', ?, ?, 'OPEN', 7000, ?, ?, ?, 'api')",
            (
                payment_hash,
                minted.payment_request,
                minted.created_at,
                minted.expiry,
                minted.expires_at,
            ),
        )
    node.pay(payment_hash)
    follower.sweep()
    with store.snapshot() as conn:
        state, deadline = conn.execute(
            "SELECT state, settle_deadline FROM invoices WHERE payment_hash = ?", (payment_hash,)
        ).fetchone()
    assert (state, deadline) == ("ACCEPTED", node.block_height() + HTLC_CLTV_DELTA)
    node.settle_invoice(preimage)
    follower.sweep()  # the settle index carries it
    with store.snapshot() as conn:
        row = conn.execute(
            "SELECT state, preimage FROM invoices WHERE payment_hash = ?", (payment_hash,)
        ).fetchone()
    assert tuple(row) == ("SETTLED", preimage)
    node.close()
    store.close()


@pytest.fixture
def cln_service(tmp: Path) -> Iterator[tuple[Service, dict[str, str]]]:
    with ClnSim(tmp / "sim", tmp / "rpc") as sim:
        settings = load_settings(
            {
                "data_dir": str(tmp / "data"),
                "node": "cln",
                "cln_socket": str(sim.socket_path),
                "network": "regtest",
            },
            environ={},
        )
        svc = Service.build(settings, ClnNode(sim.socket_path, network="regtest"))
        with svc.store.transaction() as tx:
            _, token = tokens.create(tx, ["admin"])
        yield svc, {"Authorization": f"Bearer {token}"}
        svc.store.close()
        svc.node.close()


def test_standalone_cln_answers_501(cln_service) -> None:
    svc, headers = cln_service
    client = create_app(svc).test_client()
    _, payment_hash = secret_pair()
    r = hold(client, headers, payment_hash)
    assert r.status_code == 501
    body = r.get_json()
    assert body["error"] is True and "plugin" in body["message"]
    regular = client.post("/invoices", json={"amount": 5}, headers=headers).get_json()
    r = client.post(f"/invoices/{regular['payment_hash']}/cancel", headers=headers)
    assert r.status_code == 501


def test_standalone_clns_501s_are_answers_the_openapi_document_lists(cln_service) -> None:
    """A client generated from /openapi.json must know the 501 that a hold
    invoice on a node that cannot hold gets, from POST /invoices as from cancel."""
    svc, headers = cln_service
    client = create_app(svc).test_client()
    document = client.get("/openapi.json").get_json()
    _, payment_hash = secret_pair()
    made = hold(client, headers, payment_hash)
    assert made.status_code == 501
    conforms(document, "POST", "/invoices", made)
    regular = client.post("/invoices", json={"amount": 5}, headers=headers).get_json()
    canceled = client.post(f"/invoices/{regular['payment_hash']}/cancel", headers=headers)
    assert canceled.status_code == 501
    conforms(
        document,
        "POST",
        "/invoices/{payment_hash}/cancel",
        canceled,
        payment_hash=regular["payment_hash"],
    )


def test_a_description_hash_core_lightning_cannot_make_is_a_400_naming_it(cln_service) -> None:
    """Core Lightning's `invoice` puts only the hash of a description it is
    given in an invoice: a bare `description_hash` is a request it cannot
    make, not a node failure (a 502 reads as one to retry), so the answer
    is a 400 naming the field, and nothing is stored."""
    svc, headers = cln_service
    client = create_app(svc).test_client()
    r = client.post("/invoices", json={"amount": 5, "description_hash": "ab" * 32}, headers=headers)
    assert r.status_code == 400, r.get_json()
    reason = r.get_json()["errors"]["description_hash"]
    assert "Core Lightning" in reason and "description" in reason
    assert client.get("/invoices/incoming", headers=headers).get_json() == []
    assert svc.follower.node_errors["create_invoice"] == 0  # the node did not fail


def test_a_hold_invoice_another_app_made_is_stored_but_never_auto_canceled(
    tmp_path: Path,
) -> None:
    node = DevNode(tmp_path / "dev")
    store = Store(tmp_path / "store.sqlite")
    follower = Follower(node, store, hold_cancel_margin=24)
    _, payment_hash = secret_pair()
    node.create_hold_invoice(InvoiceRequest(amount_msat=1000), payment_hash)  # not via lnplugin
    node.pay(payment_hash)
    follower.apply([InvoiceUpdate(present(node.lookup_invoice(payment_hash)), 0)])
    with store.snapshot() as conn:
        row = conn.execute(
            "SELECT state, source FROM invoices WHERE payment_hash = ?", (payment_hash,)
        ).fetchone()
    assert tuple(row) == ("ACCEPTED", "node")
    node.mine(HTLC_CLTV_DELTA)  # past its deadline: the other app's to handle
    assert follower.cancel_near_deadline() == 0
    assert present(node.lookup_invoice(payment_hash)).state == "ACCEPTED"
    node.close()
    store.close()


@pytest.fixture
def quiet(tmp_path: Path) -> Iterator[tuple[DevNode, Store, Follower]]:
    """A dev node, a store and a follower whose threads do not run: each
    sweep, expiry and safety cancel happens when the test calls it."""
    node = DevNode(tmp_path / "dev")
    store = Store(tmp_path / "store.sqlite")
    yield node, store, Follower(node, store, hold_cancel_margin=24)
    node.close()
    store.close()


def made_by_lnplugin(follower: Follower, payment_hash: str, **asked: Any) -> None:
    """A hold invoice minted and stored as `POST /invoices` does it."""
    minted = invoicing.mint(follower, InvoiceRequest(amount_msat=9000, **asked), payment_hash)
    with follower.store.transaction() as tx:
        invoicing.insert(tx, invoicing.node_fields(minted, hold=True, source="api"))


def test_a_settle_within_the_margin_cancels_instead_and_says_why(quiet) -> None:
    node, _, follower = quiet
    preimage, payment_hash = secret_pair()
    made_by_lnplugin(follower, payment_hash)
    node.pay(payment_hash)
    follower.sweep()
    node.mine(HTLC_CLTV_DELTA - 24)  # the safety cancel's next look would cancel it
    found = invoicing.own_incoming(follower, payment_hash)
    assert found.state == "ACCEPTED"
    with pytest.raises(invoicing.WrongState) as refused:
        invoicing.settle(follower, found, preimage)
    assert refused.value.message.startswith("Too late to settle: the invoice was canceled by")
    assert "24 blocks before its settle deadline" in refused.value.message
    row = invoicing.fresh(follower, payment_hash)
    assert row.state == "CANCELED" and row.cancel_reason is not None
    assert row.cancel_reason in refused.value.message
    assert present(node.lookup_invoice(payment_hash)).state == "CANCELED"  # failed back on the node
    assert follower.cancel_near_deadline() == 0  # nothing left for it
    with pytest.raises(invoicing.WrongState) as again:  # a retry is told why, too
        invoicing.settle(follower, row, preimage)
    assert again.value.message == (
        f"The invoice is CANCELED ({row.cancel_reason}); only an ACCEPTED hold invoice can be "
        "settled"
    )


def test_the_dev_node_settles_no_htlc_past_its_deadline(quiet) -> None:
    node, _, _ = quiet
    preimage, payment_hash = secret_pair()
    node.create_hold_invoice(InvoiceRequest(amount_msat=1000), payment_hash)
    held = node.pay(payment_hash)
    assert held.settle_deadline == node.block_height() + HTLC_CLTV_DELTA
    node.mine(HTLC_CLTV_DELTA)
    with pytest.raises(InvoiceNotOpen, match="expired at block"):
        node.settle_invoice(preimage)
    canceled = node.cancel_invoice(payment_hash)
    assert canceled.state == "CANCELED" and canceled.amount_received_msat == 0


def test_a_hold_invoice_paid_unheard_before_its_expiry_is_held_not_expired(quiet) -> None:
    """lnplugin was down (or its hold feed away) when the payment came, and
    back after the invoice's expiry: the node holds the payment, so the
    invoice is ACCEPTED, to be settled or canceled, not EXPIRED."""
    node, store, follower = quiet
    preimage, payment_hash = secret_pair()
    _, unpaid = secret_pair()
    # Expiry 5 s, not 1: the node checks it against the clock at `pay`, and
    # with creation counted in whole seconds a 1 s expiry could pass before
    # a busy host got there. The expiry sweep is handed a time past it.
    made_by_lnplugin(follower, payment_hash, expiry=5)
    made_by_lnplugin(follower, unpaid, expiry=5)
    node.pay(payment_hash)
    later = int(time.time()) + 6
    assert follower.expire(later) == 1  # the unpaid one
    assert invoicing.fresh(follower, unpaid).state == "EXPIRED"
    held = invoicing.fresh(follower, payment_hash)
    assert held.state == "ACCEPTED" and held.settle_deadline is not None
    with store.snapshot() as conn:
        types = [
            r[0]
            for r in conn.execute(
                "SELECT type FROM events WHERE payment_hash = ? ORDER BY seq", (payment_hash,)
            )
        ]
    assert types == [events.INCOMING_CREATED, events.INCOMING_ACCEPTED]
    assert invoicing.settle(follower, held, preimage).state == "SETTLED"


def test_two_clients_settling_at_once_both_get_the_settled_invoice(quiet) -> None:
    """Two requests read the invoice ACCEPTED before either settled it (a
    client retrying on a timeout while its first request is still running):
    the second finds it settled on the node. As with LND's SettleInvoice, a
    settle of a settled invoice with its preimage is answered again, not
    refused, and there is one settled event."""
    node, store, follower = quiet
    preimage, payment_hash = secret_pair()
    made_by_lnplugin(follower, payment_hash)
    node.pay(payment_hash)
    follower.sweep()
    first = invoicing.own_incoming(follower, payment_hash)
    second = invoicing.own_incoming(follower, payment_hash)
    assert first.state == second.state == "ACCEPTED"
    settled = invoicing.settle(follower, first, preimage)
    again = invoicing.settle(follower, second, preimage)
    assert settled.state == again.state == "SETTLED"
    assert again.settled_at == settled.settled_at and again.preimage == preimage
    with store.snapshot() as conn:
        types = [
            r[0]
            for r in conn.execute(
                "SELECT type FROM events WHERE payment_hash = ? ORDER BY seq", (payment_hash,)
            )
        ]
    assert types == [events.INCOMING_CREATED, events.INCOMING_ACCEPTED, events.INCOMING_SETTLED]


def test_a_cancel_with_a_body_it_does_not_understand_cancels_nothing(
    client, admin, service
) -> None:
    """A cancel cannot be undone: a body that is not JSON, or names a field
    cancel does not take, is a 400 naming it, as a settle's is, and the
    invoice stays payable; no body, or `{}`, cancels."""
    made = client.post("/invoices", json={"amount": 5}, headers=admin).get_json()
    url = f"/invoices/{made['payment_hash']}/cancel"
    garbled = client.post(url, data="reason=fraud", headers=admin)
    assert garbled.status_code == 400
    assert garbled.get_json()["errors"] == {"body": "is not valid JSON"}
    unknown = client.post(url, json={"reason": "fraud"}, headers=admin)
    assert unknown.status_code == 400
    assert set(unknown.get_json()["errors"]) == {"reason"}
    assert get(client, admin, made["payment_hash"])["state"] == "CREATED"
    assert event_types(service, made["payment_hash"]) == [events.INCOMING_CREATED]
    assert client.post(url, json={}, headers=admin).status_code == 200
    assert client.post(url, headers=admin).status_code == 200  # a canceled one, answered again
    assert event_types(service, made["payment_hash"]) == [
        events.INCOMING_CREATED,
        events.INCOMING_CANCELED,
    ]
