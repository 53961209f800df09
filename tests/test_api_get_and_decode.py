"""GET /invoices/<payment_hash>, and decoding BOLT11 in Alby's shape (GET and POST).

A bad invoice is always a 400 with a reason, never a 5xx.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from lnplugin import bolt11

VECTORS = {
    v["id"]: v
    for v in json.loads((Path(__file__).parent / "fixtures" / "bolt11_vectors.json").read_text())[
        "vectors"
    ]
}

# Alby's DecodedInvoice fields plus the extensions, with their JSON types.
DECODE_FIELDS: dict[str, tuple[type, ...]] = {
    "currency": (str,),
    "created_at": (int,),
    "expiry": (int,),
    "payee": (str,),
    "msatoshi": (int, type(None)),
    "description": (str, type(None)),
    "description_hash": (str, type(None)),
    "payment_hash": (str,),
    "min_final_cltv_expiry": (int,),
    "amount": (int, type(None)),
    "payee_alias": (str, type(None)),
    "payment_secret": (str, type(None)),
    "features": (list,),
    "route_hints": (list,),
    "fallbacks": (list,),
    "expires_at": (int,),
    "is_expired": (bool,),
}


@pytest.fixture
def reader(make_token):
    return {"Authorization": f"Bearer {make_token('invoices:read')}"}


@pytest.fixture
def invoice(client, admin):
    body = {"amount": 21, "description": "decode me", "expiry": 3600}
    return client.post("/invoices", json=body, headers=admin).get_json()


# -- GET /invoices/<payment_hash> --------------------------------------------------------------


def test_get_returns_the_invoice_by_payment_hash(client, reader, invoice):
    r = client.get(f"/invoices/{invoice['payment_hash']}", headers=reader)
    assert r.status_code == 200
    assert r.get_json() == invoice


def test_get_accepts_an_upper_case_hash(client, reader, invoice):
    r = client.get(f"/invoices/{invoice['payment_hash'].upper()}", headers=reader)
    assert r.get_json()["identifier"] == invoice["identifier"]


def test_get_an_unknown_hash_is_404(client, reader):
    r = client.get("/invoices/" + "ef" * 32, headers=reader)
    assert r.status_code == 404
    assert r.get_json()["error"] is True


@pytest.mark.parametrize("bad", ["xyz", "ab" * 31, "ab" * 33, "zz" * 32, "ab" * 32 + "%0A"])
def test_get_a_malformed_hash_is_400(client, reader, bad):
    r = client.get(f"/invoices/{bad}", headers=reader)
    assert r.status_code == 400
    assert "payment_hash" in r.get_json()["errors"]


def test_get_an_outgoing_payment_needs_transactions_read(client, service, make_token):
    from lnplugin.store import invoices

    paid = "cd" * 32
    with service.store.transaction() as tx:
        invoices.insert(
            tx,
            {
                "type": "outgoing",
                "payment_hash": paid,
                "state": "SETTLED",
                "amount_msat": 5000,
                "created_at": 1,
                "expiry": 0,
                "expires_at": 1,
                "settled_at": 1,
            },
        )
    receiving_only = {"Authorization": f"Bearer {make_token('invoices:read')}"}
    r = client.get(f"/invoices/{paid}", headers=receiving_only)
    assert r.status_code == 403
    assert r.get_json()["message"] == "Token lacks scope: transactions:read"
    both = {"Authorization": f"Bearer {make_token('invoices:read', 'transactions:read')}"}
    r = client.get(f"/invoices/{paid}", headers=both)
    assert r.status_code == 200 and r.get_json()["type"] == "outgoing"


def test_get_shows_settlement_after_dev_pay(client, admin, reader, invoice):
    client.post("/dev/pay", json={"payment_request": invoice["payment_request"]}, headers=admin)
    got = client.get(f"/invoices/{invoice['payment_hash']}", headers=reader).get_json()
    assert got["settled"] is True and got["state"] == "SETTLED"


# -- decode ----------------------------------------------------------------------------------


def test_decode_returns_alby_fields_with_alby_types(client, reader, invoice, service):
    r = client.get(f"/decode/bolt11/{invoice['payment_request']}", headers=reader)
    assert r.status_code == 200
    data = r.get_json()
    for name, types in DECODE_FIELDS.items():
        assert name in data, name
        assert type(data[name]) in types, (name, data[name])
    assert data["currency"] == "bcrt"
    assert data["created_at"] == invoice["creation_date"]
    assert data["expiry"] == 3600
    assert data["expires_at"] == invoice["creation_date"] + 3600
    assert data["is_expired"] is False
    assert data["payee"] == service.node.pubkey
    assert data["payee_alias"] == "lnplugin-dev"
    assert data["msatoshi"] == 21_000 and data["amount"] == 21
    assert data["description"] == "decode me" and data["description_hash"] is None
    assert data["payment_hash"] == invoice["payment_hash"]
    assert data["min_final_cltv_expiry"] == 18
    assert len(data["payment_secret"]) == 64
    assert 14 in data["features"]  # payment_secret, required
    assert data["route_hints"] == [] and data["fallbacks"] == []


def test_decode_post_gives_the_same_answer_as_get(client, reader, invoice):
    got = client.get(f"/decode/bolt11/{invoice['payment_request']}", headers=reader).get_json()
    posted = client.post("/decode", json={"invoice": invoice["payment_request"]}, headers=reader)
    assert posted.status_code == 200
    assert posted.get_json() == got


@pytest.mark.parametrize("prefix", ["lightning:", "LIGHTNING:", "Lightning:"])
def test_decode_accepts_a_lightning_uri_prefix(client, reader, invoice, prefix):
    text = prefix + invoice["payment_request"]
    assert client.get(f"/decode/bolt11/{text}", headers=reader).status_code == 200
    r = client.post("/decode", json={"invoice": text}, headers=reader)
    assert r.get_json()["payment_hash"] == invoice["payment_hash"]


def test_decode_accepts_an_all_upper_case_invoice(client, reader, invoice):
    r = client.get(f"/decode/bolt11/{invoice['payment_request'].upper()}", headers=reader)
    assert r.get_json()["payment_hash"] == invoice["payment_hash"]


def test_decode_of_an_any_amount_invoice_has_null_amounts(client, admin, reader):
    inv = client.post("/invoices", json={"amount": 0}, headers=admin).get_json()
    data = client.get(f"/decode/bolt11/{inv['payment_request']}", headers=reader).get_json()
    assert data["msatoshi"] is None and data["amount"] is None


def test_decode_of_a_description_hash_invoice(client, admin, reader):
    digest = "3925b6f67e2c340036ed12093dd44e0368df1b6ea26c53dbe4811f58fd5db8c1"
    inv = client.post(
        "/invoices", json={"amount": 1, "description_hash": digest}, headers=admin
    ).get_json()
    data = client.get(f"/decode/bolt11/{inv['payment_request']}", headers=reader).get_json()
    assert data["description_hash"] == digest and data["description"] is None


def test_decode_of_a_foreign_invoice_has_route_hints_fallbacks_and_no_alias(client, reader):
    data = client.get(f"/decode/bolt11/{VECTORS['V06']['invoice']}", headers=reader).get_json()
    assert data["currency"] == "bc"
    assert data["payee"] == VECTORS["V06"]["expected"]["payee"]
    assert data["payee_alias"] is None
    assert data["msatoshi"] == 2_000_000_000 and data["amount"] == 2_000_000
    assert data["created_at"] == 1496314658
    assert data["is_expired"] is True
    assert data["route_hints"] == [
        [
            {
                "pubkey": "029e03a901b85534ff1e92c43c74431f7ce72046060fcf7a95c37e148f78c77255",
                "short_channel_id": "66051x263430x1800",
                "fee_base_msat": 1,
                "fee_proportional_millionths": 20,
                "cltv_expiry_delta": 3,
            },
            {
                "pubkey": "039e03a901b85534ff1e92c43c74431f7ce72046060fcf7a95c37e148f78c77255",
                "short_channel_id": "197637x395016x2314",
                "fee_base_msat": 2,
                "fee_proportional_millionths": 30,
                "cltv_expiry_delta": 4,
            },
        ]
    ]
    (fallback,) = data["fallbacks"]
    assert fallback["address"] == "1RustyRX2oai4EYYDpQGWvEL62BBGqN9T"


def test_decode_reports_is_expired_for_an_expired_dev_invoice(client, admin, reader):
    inv = client.post("/invoices", json={"amount": 1, "expiry": 1}, headers=admin).get_json()
    time.sleep(1.1)
    data = client.get(f"/decode/bolt11/{inv['payment_request']}", headers=reader).get_json()
    assert data["is_expired"] is True


def test_decode_needs_no_particular_scope(client, make_token, invoice):
    token = make_token("invoices:create")
    r = client.get(
        f"/decode/bolt11/{invoice['payment_request']}",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200


# -- bad invoices ----------------------------------------------------------------------------

INVALID_VECTORS = [v for v in VECTORS.values() if not v["valid"]]


@pytest.mark.parametrize("vector", INVALID_VECTORS, ids=[v["id"] for v in INVALID_VECTORS])
def test_each_invalid_spec_vector_is_400_with_a_reason(client, reader, vector):
    for r in (
        client.get(f"/decode/bolt11/{vector['invoice']}", headers=reader),
        client.post("/decode", json={"invoice": vector["invoice"]}, headers=reader),
    ):
        assert r.status_code == 400
        data = r.get_json()
        assert data["error"] is True and data["code"] == 400
        assert data["errors"]["invoice"]
        assert data["errors"]["invoice"] in data["message"]


@pytest.mark.parametrize("text", ["hello", "lnbc", "lightning:", "1", "lnbc1" + "q" * 200, "🙂"])
def test_garbage_is_400_not_5xx(client, reader, text):
    r = client.post("/decode", json={"invoice": text}, headers=reader)
    assert r.status_code == 400
    assert r.get_json()["errors"]["invoice"]


def test_mutated_invoices_are_200_or_400_never_5xx(client, reader, invoice):
    rng = random.Random(7)
    good = invoice["payment_request"]
    charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l1LNBC-:\x00é"
    for _ in range(300):
        chars = list(good)
        for _ in range(rng.randint(1, 3)):
            op = rng.choice(("flip", "drop", "insert", "cut"))
            i = rng.randrange(len(chars))
            if op == "flip":
                chars[i] = rng.choice(charset)
            elif op == "drop":
                del chars[i]
            elif op == "insert":
                chars.insert(i, rng.choice(charset))
            else:
                chars = chars[:i]
            if not chars:
                chars = ["x"]
        text = "".join(chars)
        r = client.post("/decode", json={"invoice": text}, headers=reader)
        assert r.status_code in (200, 400), (text, r.get_json())
        if r.status_code == 400:
            assert r.get_json()["errors"]["invoice"]


def test_an_invoice_longer_than_7089_characters_is_400(client, reader):
    text = "lnbc1" + "q" * (bolt11.MAX_INVOICE_LENGTH - 4)
    assert len(text) == bolt11.MAX_INVOICE_LENGTH + 1
    for r in (
        client.post("/decode", json={"invoice": text}, headers=reader),
        client.get(f"/decode/bolt11/{text}", headers=reader),
    ):
        assert r.status_code == 400
        assert "7089" in r.get_json()["errors"]["invoice"]


@pytest.mark.parametrize(
    "body", [{}, {"invoice": 5}, {"invoice": None}, {"bolt11": "lnbc1"}], ids=str
)
def test_post_decode_without_an_invoice_string_is_400(client, reader, body):
    r = client.post("/decode", json=body, headers=reader)
    assert r.status_code == 400
    assert "invoice" in r.get_json()["errors"]


@pytest.mark.parametrize("body", ["{", "[" * 30_000], ids=["broken", "deeply-nested"])
def test_post_decode_with_a_non_json_body_is_400(client, reader, body):
    r = client.post("/decode", data=body, headers={**reader, "Content-Type": "application/json"})
    assert r.status_code == 400
    assert "body" in r.get_json()["errors"]
