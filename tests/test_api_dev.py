"""POST /dev/pay and /dev/keysend: simulated payments flowing node -> follower -> store -> API."""

from __future__ import annotations

import base64
import json
import time

import pytest

from lnplugin.store import events

BOOST = {
    "action": "boost",
    "podcast": "The Show",
    "feedID": "920666",  # a string, as Fountain sends it
    "episode": "Episode 1",
    "ts": 33,
    "message": "Great episode!",
    "app_name": "Fountain",
    "sender_name": "alice",
    "value_msat_total": "50000",
}


def create(client, admin, **body):
    return client.post("/invoices", json=body, headers=admin).get_json()


def pay(client, admin, **body):
    return client.post("/dev/pay", json=body, headers=admin)


def settled_events(service, payment_hash: str) -> int:
    return service.store.conn.execute(
        "SELECT COUNT(*) FROM events WHERE type = 'invoice.incoming.settled' AND payment_hash = ?",
        (payment_hash,),
    ).fetchone()[0]


# -- /dev/pay ------------------------------------------------------------------------------


def test_pay_by_hash_settles_and_is_stored_before_the_answer(client, admin):
    inv = create(client, admin, amount=10)
    r = pay(client, admin, payment_hash=inv["payment_hash"])
    assert r.status_code == 200
    body = r.get_json()
    assert body["state"] == "SETTLED" and body["amount_received_msat"] == 10_000
    assert body["is_keysend"] is False
    got = client.get(f"/invoices/{inv['payment_hash']}", headers=admin).get_json()
    assert got["state"] == "SETTLED"  # no polling needed


def test_pay_by_bolt11_settles(client, admin):
    inv = create(client, admin, amount=10)
    r = pay(client, admin, payment_request=inv["payment_request"])
    assert r.status_code == 200
    assert r.get_json()["payment_hash"] == inv["payment_hash"]


def test_an_amountless_invoice_needs_amount_msat(client, admin):
    inv = create(client, admin, amount=0)
    r = pay(client, admin, payment_hash=inv["payment_hash"])
    assert r.status_code == 400
    assert "amount_msat" in r.get_json()["errors"]
    assert pay(client, admin, payment_hash=inv["payment_hash"], amount_msat=3000).status_code == 200
    got = client.get(f"/invoices/{inv['payment_hash']}", headers=admin).get_json()
    assert got["amount_received_msat"] == 3000


def test_paying_twice_is_409_and_counted_once(client, admin, service):
    inv = create(client, admin, amount=10)
    assert pay(client, admin, payment_hash=inv["payment_hash"]).status_code == 200
    r = pay(client, admin, payment_hash=inv["payment_hash"], amount_msat=99_000)
    assert r.status_code == 409
    assert r.get_json()["error"] is True
    got = client.get(f"/invoices/{inv['payment_hash']}", headers=admin).get_json()
    assert got["amount_received_msat"] == 10_000
    assert settled_events(service, inv["payment_hash"]) == 1
    incoming = client.get("/invoices/incoming", headers=admin).get_json()
    assert [i["payment_hash"] for i in incoming] == [inv["payment_hash"]]


def test_paying_an_expired_invoice_is_409(client, admin, service):
    inv = create(client, admin, amount=10, expiry=1)
    time.sleep(1.1)
    r = pay(client, admin, payment_hash=inv["payment_hash"])
    assert r.status_code == 409
    assert "expired" in r.get_json()["message"]
    got = client.get(f"/invoices/{inv['payment_hash']}", headers=admin).get_json()
    assert got["state"] == "EXPIRED" and got["settled"] is False
    assert settled_events(service, inv["payment_hash"]) == 0


def test_paying_an_unknown_invoice_is_404(client, admin):
    r = pay(client, admin, payment_hash="cd" * 32)
    assert r.status_code == 404
    assert r.get_json()["code"] == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "payment_request"),
        ({"payment_hash": "ab" * 32, "payment_request": "lnbcrt1"}, "payment_request"),
        ({"payment_hash": "xyz"}, "payment_hash"),
        ({"payment_hash": "ab" * 32 + "\n"}, "payment_hash"),
        ({"payment_request": "not-an-invoice"}, "payment_request"),
        ({"payment_hash": "ab" * 32, "amount_msat": 0}, "amount_msat"),
        ({"payment_hash": "ab" * 32, "amount_msat": "5"}, "amount_msat"),
        ({"payment_hash": "ab" * 32, "surprise": 1}, "surprise"),
    ],
    ids=[
        "neither",
        "both",
        "bad-hash",
        "hash-newline",
        "bad-bolt11",
        "zero-amount",
        "string-amount",
        "extra",
    ],
)
def test_pay_validation_errors_are_400_naming_the_field(client, admin, body, field):
    r = pay(client, admin, **body)
    assert r.status_code == 400
    assert field in r.get_json()["errors"]


def test_paying_less_than_the_amount_is_400(client, admin):
    inv = create(client, admin, amount=10)
    r = pay(client, admin, payment_hash=inv["payment_hash"], amount_msat=9_999)
    assert r.status_code == 400
    assert "amount_msat" in r.get_json()["errors"]


# -- /dev/keysend ----------------------------------------------------------------------------


def test_keysend_boostagram_appears_in_incoming_parsed_and_raw(client, admin):
    boost_text = json.dumps(BOOST)
    r = client.post(
        "/dev/keysend",
        json={
            "amount_msat": 50_000,
            "custom_records": {"7629169": boost_text, "34349334": "hello from chat"},
        },
        headers=admin,
    )
    assert r.status_code == 200
    paid = r.get_json()
    assert paid["is_keysend"] is True and paid["state"] == "SETTLED"

    (inv,) = client.get("/invoices/incoming", headers=admin).get_json()
    assert inv["payment_hash"] == paid["payment_hash"]
    assert inv["amount"] == inv["value"] == 50
    assert inv["amount_received_msat"] == 50_000
    assert inv["settled"] is True and inv["state"] == "SETTLED"
    assert inv["payment_request"] == ""
    assert inv["is_keysend"] is True
    assert inv["preimage"]
    assert inv["keysend_message"] == "hello from chat"
    boost = inv["boostagram"]
    assert boost["message"] == "Great episode!"
    assert boost["podcast"] == "The Show"
    assert boost["feedID"] == 920666  # lenient: a numeric string becomes a number
    assert boost["value_msat_total"] == 50_000
    assert inv["custom_records"] == {
        "7629169": base64.b64encode(boost_text.encode()).decode(),
        "34349334": base64.b64encode(b"hello from chat").decode(),
    }


def test_keysend_hex_values_are_raw_bytes(client, admin):
    r = client.post(
        "/dev/keysend",
        json={"amount_msat": 1000, "custom_records": {"696969": "hex:00ff10", "818818": "hex:"}},
        headers=admin,
    )
    assert r.status_code == 200
    inv = client.get(f"/invoices/{r.get_json()['payment_hash']}", headers=admin).get_json()
    assert base64.b64decode(inv["custom_records"]["696969"]) == b"\x00\xff\x10"
    assert base64.b64decode(inv["custom_records"]["818818"]) == b""
    assert inv["boostagram"] is None and inv["keysend_message"] is None


def test_keysend_without_records_is_a_plain_payment(client, admin):
    r = client.post("/dev/keysend", json={"amount_msat": 2000}, headers=admin)
    inv = client.get(f"/invoices/{r.get_json()['payment_hash']}", headers=admin).get_json()
    assert inv["custom_records"] == {} and inv["amount"] == 2


def test_keysend_with_a_bad_boostagram_keeps_the_raw_record(client, admin):
    r = client.post(
        "/dev/keysend",
        json={"amount_msat": 1000, "custom_records": {"7629169": "{not json"}},
        headers=admin,
    )
    inv = client.get(f"/invoices/{r.get_json()['payment_hash']}", headers=admin).get_json()
    assert inv["boostagram"] is None
    assert base64.b64decode(inv["custom_records"]["7629169"]) == b"{not json"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"amount_msat": 0},
        {"amount_msat": 1.5},
        {"amount_msat": 1000, "custom_records": {"abc": "x"}},
        {"amount_msat": 1000, "custom_records": {"100": "x"}},
        {"amount_msat": 1000, "custom_records": {"7629169": "hex:zz"}},
        {"amount_msat": 1000, "custom_records": {"7629169": 5}},
        {"amount_msat": 1000, "custom_records": [1]},
    ],
    ids=[
        "missing-amount",
        "zero",
        "float",
        "type-not-number",
        "type-not-custom",
        "bad-hex",
        "value-not-string",
        "records-not-object",
    ],
)
def test_keysend_validation_errors_are_400_and_settle_nothing(client, admin, service, body):
    r = client.post("/dev/keysend", json=body, headers=admin)
    assert r.status_code == 400
    errors = r.get_json()["errors"]
    assert any(k.split(".")[0] in ("amount_msat", "custom_records") for k in errors), errors
    assert list(service.node.settled_since(0)) == []


def test_dev_routes_need_admin(client, make_token):
    token = make_token("invoices:create", "invoices:read", "transactions:read")
    headers = {"Authorization": f"Bearer {token}"}
    assert client.post("/dev/keysend", json={"amount_msat": 1}, headers=headers).status_code == 403
    assert (
        client.post("/dev/pay", json={"payment_hash": "ab" * 32}, headers=headers).status_code
        == 403
    )


def test_dev_routes_do_not_exist_when_another_node_is_selected(tmp_path, service):
    from lnplugin.api import create_app
    from lnplugin.config import load_settings
    from lnplugin.service import Service
    from lnplugin.store import tokens

    settings = load_settings({"data_dir": str(tmp_path / "lnd"), "node": "lnd"}, environ={})
    other = Service.build(settings, node=service.node)  # never started: no LND needed
    with other.store.transaction() as tx:
        _, token = tokens.create(tx, ["admin"])
    client = create_app(other).test_client()
    r = client.post(
        "/dev/pay", json={"payment_hash": "ab" * 32}, headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 404
    other.store.close()


@pytest.mark.parametrize(
    "boostagram",
    [
        "[" * 30_000,
        '{"action":"boost","value_msat_total":' + "9" * 30 + "}",  # beyond 64-bit integers
        '{"action":"boost","message":"\\ud800"}',  # a lone surrogate
    ],
    ids=["deeply-nested", "huge-integer", "lone-surrogate"],
)
def test_a_hostile_boostagram_does_not_block_later_payments(client, admin, service, boostagram):
    poison = client.post(
        "/dev/keysend",
        json={"amount_msat": 1000, "custom_records": {"7629169": boostagram}},
        headers=admin,
    )
    assert poison.status_code == 200
    inv = create(client, admin, amount=1)
    assert pay(client, admin, payment_hash=inv["payment_hash"]).status_code == 200
    incoming = client.get("/invoices/incoming", headers=admin).get_json()
    assert [i["payment_hash"] for i in incoming] == [
        inv["payment_hash"],
        poison.get_json()["payment_hash"],
    ]
    if boostagram.startswith("["):
        assert incoming[1]["boostagram"] is None
    else:
        assert incoming[1]["boostagram"]["action"] == "boost"
        (event,) = [
            e
            for e in events.after(service.store.conn, 0)
            if e["payment_hash"] == poison.get_json()["payment_hash"]
        ]
        assert events.payload(event)["data"]["boostagram"] == incoming[1]["boostagram"]
