"""POST /invoices: Alby's invoice object, the extensions, the BOLT11 it mints, and validation.

Each validation rule has its own case: the answer is 400 with the reason under
`errors[field]`, and nothing is written anywhere (store or node).
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any

import bolt11 as pypi_bolt11
import pytest

from lnplugin import bolt11
from lnplugin.store import invoices

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")

# Every Alby field and the JSON type(s) it may have on a freshly created invoice.
ALBY_FIELDS: dict[str, tuple[type, ...]] = {
    "amount": (int,),
    "boostagram": (type(None),),
    "comment": (str, type(None)),
    "created_at": (str,),
    "creation_date": (int,),
    "currency": (str,),
    "custom_records": (dict,),
    "description_hash": (str, type(None)),
    "expires_at": (str,),
    "expiry": (int,),
    "fiat_currency": (str, type(None)),
    "fiat_in_cents": (int, type(None)),
    "identifier": (str,),
    "keysend_message": (str, type(None)),
    "memo": (str, type(None)),
    "metadata": (dict, type(None)),
    "payer_email": (str, type(None)),
    "payer_name": (str, type(None)),
    "payer_pubkey": (str, type(None)),
    "payment_hash": (str,),
    "payment_request": (str,),
    "preimage": (type(None),),
    "r_hash_str": (str,),
    "settled": (bool,),
    "settled_at": (type(None),),
    "state": (str,),
    "type": (str,),
    "value": (int,),
    "amount_msat": (int,),
    "amount_received_msat": (int,),
}


def create(client: Any, headers: dict[str, str], **body: Any) -> Any:
    return client.post("/invoices", json=body, headers=headers)


def counts(service: Any) -> tuple[int, int, int, int]:
    """Rows in every table a create could touch, including the dev node's own."""
    conn = service.store.conn
    node_rows = service.node._conn.execute("SELECT COUNT(*) FROM dev_invoices").fetchone()[0]
    return (
        conn.execute("SELECT COUNT(*) FROM invoices").fetchone()[0],
        conn.execute("SELECT COUNT(*) FROM events").fetchone()[0],
        conn.execute("SELECT COUNT(*) FROM idempotency_keys").fetchone()[0],
        node_rows,
    )


# -- the invoice object --------------------------------------------------------------------


def test_create_returns_201_with_every_alby_field_and_its_type(client, admin):
    before = int(time.time())
    r = create(client, admin, amount=21, description="coffee")
    assert r.status_code == 201
    inv = r.get_json()
    for name, types in ALBY_FIELDS.items():
        assert name in inv, name
        assert type(inv[name]) in types, (name, inv[name])
    assert inv["amount"] == inv["value"] == 21
    assert inv["amount_msat"] == 21_000
    assert inv["amount_received_msat"] == 0
    assert inv["currency"] == "BTC"
    assert inv["custom_records"] == {}
    assert inv["type"] == "incoming"
    assert inv["state"] == "CREATED"
    assert inv["settled"] is False
    assert inv["memo"] == "coffee"
    assert HEX64.match(inv["payment_hash"])
    assert inv["r_hash_str"] == inv["payment_hash"]
    assert ISO.match(inv["created_at"]) and ISO.match(inv["expires_at"])
    assert before <= inv["creation_date"] <= int(time.time())
    assert inv["expiry"] == 86400


def test_timestamps_are_iso_8601_utc_and_agree_with_creation_date(client, admin):
    inv = create(client, admin, amount=1, expiry=600).get_json()
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(inv["creation_date"]))
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(inv["creation_date"] + 600))
    assert inv["created_at"] == created
    assert inv["expires_at"] == expires


def test_preimage_and_settled_at_appear_only_once_settled(client, admin):
    inv = create(client, admin, amount=5).get_json()
    assert inv["preimage"] is None and inv["settled_at"] is None
    paid = client.post("/dev/pay", json={"payment_hash": inv["payment_hash"]}, headers=admin)
    assert paid.status_code == 200
    got = client.get(f"/invoices/{inv['payment_hash']}", headers=admin).get_json()
    assert got["state"] == "SETTLED"
    assert got["settled"] is True
    assert ISO.match(got["settled_at"])
    assert hashlib.sha256(bytes.fromhex(got["preimage"])).hexdigest() == inv["payment_hash"]
    assert got["amount_received_msat"] == 5000


def test_state_is_expired_once_expires_at_passed_whatever_the_store_says(client, admin, service):
    now = int(time.time())
    with service.store.transaction() as tx:
        invoices.insert(
            tx,
            {
                "type": "incoming",
                "payment_hash": "ab" * 32,
                "state": "OPEN",
                "amount_msat": 1000,
                "created_at": now - 100,
                "expiry": 10,
                "expires_at": now - 90,
            },
        )
    got = client.get("/invoices/" + "ab" * 32, headers=admin).get_json()
    assert got["state"] == "EXPIRED"
    assert got["settled"] is False


# -- amounts ---------------------------------------------------------------------------------


def test_amount_zero_creates_an_any_amount_invoice(client, admin):
    inv = create(client, admin, amount=0).get_json()
    assert inv["amount"] == 0 and inv["amount_msat"] == 0
    assert bolt11.decode(inv["payment_request"]).amount_msat is None
    assert inv["payment_request"].startswith("lnbcrt1")


def test_any_amount_invoice_reports_what_was_received_once_paid(client, admin):
    inv = create(client, admin, amount=0).get_json()
    client.post(
        "/dev/pay", json={"payment_hash": inv["payment_hash"], "amount_msat": 7000}, headers=admin
    )
    got = client.get(f"/invoices/{inv['payment_hash']}", headers=admin).get_json()
    assert got["amount"] == got["value"] == 7
    assert got["amount_received_msat"] == 7000


def test_amount_msat_extension_keeps_millisatoshis(client, admin):
    inv = create(client, admin, amount_msat=1500).get_json()
    assert inv["amount_msat"] == 1500
    assert inv["amount"] == 1  # Alby's field is whole sats
    assert bolt11.decode(inv["payment_request"]).amount_msat == 1500


def test_amount_and_amount_msat_may_both_be_sent_when_they_agree(client, admin):
    r = create(client, admin, amount=3, amount_msat=3000)
    assert r.status_code == 201
    assert r.get_json()["amount_msat"] == 3000


# -- descriptions --------------------------------------------------------------------------


def test_memo_is_the_same_as_description(client, admin):
    inv = create(client, admin, amount=1, memo="tea").get_json()
    assert inv["memo"] == "tea"
    assert bolt11.decode(inv["payment_request"]).description == "tea"


def test_description_and_memo_may_both_be_sent_when_equal(client, admin):
    assert create(client, admin, amount=1, description="x", memo="x").status_code == 201


def test_description_hash_goes_into_the_invoice_as_h(client, admin):
    digest = hashlib.sha256(b"a long description").hexdigest()
    inv = create(client, admin, amount=1, description_hash=digest.upper()).get_json()
    assert inv["description_hash"] == digest
    assert inv["memo"] is None
    decoded = bolt11.decode(inv["payment_request"])
    assert decoded.description_hash == digest
    assert decoded.description is None


def test_no_description_mints_an_empty_d(client, admin):
    inv = create(client, admin, amount=1).get_json()
    decoded = bolt11.decode(inv["payment_request"])
    assert decoded.description == ""
    assert decoded.description_hash is None


def test_description_of_639_bytes_fits_in_the_invoice(client, admin):
    text = "é" * 319 + "x"  # 639 bytes of UTF-8
    inv = create(client, admin, amount=1, description=text).get_json()
    assert bolt11.decode(inv["payment_request"]).description == text


# -- extra fields ----------------------------------------------------------------------------


def test_payer_fields_comment_and_metadata_are_stored_and_returned(client, admin):
    metadata = {"payer_data": {"name": "satoshi"}, "zap_request": {"kind": 9734}}
    inv = create(
        client,
        admin,
        amount=1,
        comment="great show",
        metadata=metadata,
        payer_name="Satoshi",
        payer_email="s@example.com",
        payer_pubkey="02" + "11" * 32,
    ).get_json()
    again = client.get(f"/invoices/{inv['payment_hash']}", headers=admin).get_json()
    for got in (inv, again):
        assert got["comment"] == "great show"
        assert got["metadata"] == metadata
        assert got["payer_name"] == "Satoshi"
        assert got["payer_email"] == "s@example.com"
        assert got["payer_pubkey"] == "02" + "11" * 32


def test_metadata_up_to_4_kib_is_accepted(client, admin):
    metadata = {"k": "x" * 4088}  # {"k":"..."} is exactly 4096 bytes
    r = create(client, admin, amount=1, metadata=metadata)
    assert r.status_code == 201
    assert r.get_json()["metadata"] == metadata


def test_expiry_sets_the_invoice_expiry(client, admin):
    inv = create(client, admin, amount=1, expiry=120).get_json()
    assert inv["expiry"] == 120
    assert bolt11.decode(inv["payment_request"]).expiry == 120


def test_currency_btc_is_accepted_in_any_case(client, admin):
    assert create(client, admin, amount=1, currency="btc").status_code == 201
    assert create(client, admin, amount=1, currency="BTC").status_code == 201


def test_unknown_body_keys_are_ignored_as_alby_does(client, admin):
    assert create(client, admin, amount=1, something_new=True).status_code == 201


# -- the BOLT11 ----------------------------------------------------------------------------


def test_minted_invoice_decodes_with_the_bolt11_package(client, admin, service):
    inv = create(client, admin, amount=42, description="pkg", expiry=900).get_json()
    decoded = pypi_bolt11.decode(inv["payment_request"])
    assert inv["payment_request"].startswith("lnbcrt420n1")
    assert decoded.currency == "bcrt"
    assert decoded.amount_msat == 42_000
    assert decoded.payment_hash == inv["payment_hash"]
    assert decoded.description == "pkg"
    assert decoded.expiry == 900
    assert decoded.payee == service.node.pubkey
    assert decoded.date == inv["creation_date"]
    assert decoded.payment_secret is not None


def test_minted_invoice_with_description_hash_decodes_with_the_bolt11_package(client, admin):
    digest = hashlib.sha256(b"metadata").hexdigest()
    inv = create(client, admin, amount=1, description_hash=digest).get_json()
    decoded = pypi_bolt11.decode(inv["payment_request"])
    assert decoded.description_hash == digest
    assert decoded.description is None


def test_minted_any_amount_invoice_decodes_with_the_bolt11_package(client, admin):
    inv = create(client, admin, amount=0).get_json()
    assert pypi_bolt11.decode(inv["payment_request"]).amount_msat is None


def test_minted_invoice_decodes_with_our_decoder(client, admin, service):
    inv = create(client, admin, amount_msat=123_456, description="ours", expiry=300).get_json()
    decoded = bolt11.decode(inv["payment_request"])
    assert decoded.currency == "bcrt"
    assert decoded.network == "regtest"
    assert decoded.amount_msat == 123_456
    assert decoded.payment_hash == inv["payment_hash"]
    assert decoded.description == "ours"
    assert decoded.expiry == 300
    assert decoded.payee == service.node.pubkey
    assert decoded.timestamp == inv["creation_date"]
    assert decoded.payment_secret is not None


# -- validation ------------------------------------------------------------------------------

LONG = "x" * 640

INVALID_BODIES = [
    pytest.param({"amount": -1}, "amount", id="amount-negative"),
    pytest.param({"amount": "10"}, "amount", id="amount-string"),
    pytest.param({"amount": 1.5}, "amount", id="amount-float"),
    pytest.param({"amount": True}, "amount", id="amount-bool"),
    pytest.param({"amount": 21_000_000 * 10**8 + 1}, "amount", id="amount-too-big"),
    pytest.param({}, "amount", id="amount-missing"),
    pytest.param({"amount_msat": -5}, "amount_msat", id="amount_msat-negative"),
    pytest.param({"amount_msat": "5"}, "amount_msat", id="amount_msat-string"),
    pytest.param({"amount": 1, "amount_msat": 999}, "amount_msat", id="amount_msat-disagrees"),
    pytest.param({"amount": 1, "description": LONG}, "description", id="description-too-long"),
    pytest.param({"amount": 1, "description": 5}, "description", id="description-not-string"),
    pytest.param({"amount": 1, "memo": LONG}, "memo", id="memo-too-long"),
    pytest.param({"amount": 1, "memo": ["x"]}, "memo", id="memo-not-string"),
    pytest.param({"amount": 1, "description": "a", "memo": "b"}, "memo", id="memo-disagrees"),
    pytest.param(
        {"amount": 1, "description_hash": "zz" * 32}, "description_hash", id="hash-not-hex"
    ),
    pytest.param({"amount": 1, "description_hash": "ab" * 31}, "description_hash", id="hash-short"),
    pytest.param(
        {"amount": 1, "description_hash": "ab" * 32 + "\n"}, "description_hash", id="hash-newline"
    ),
    pytest.param(
        {"amount": 1, "description": "d", "description_hash": "ab" * 32},
        "description_hash",
        id="hash-and-description",
    ),
    pytest.param(
        {"amount": 1, "memo": "d", "description_hash": "ab" * 32},
        "description_hash",
        id="hash-and-memo",
    ),
    pytest.param({"amount": 1, "comment": "c" * 2001}, "comment", id="comment-too-long"),
    pytest.param({"amount": 1, "comment": 7}, "comment", id="comment-not-string"),
    pytest.param({"amount": 1, "metadata": "x"}, "metadata", id="metadata-not-object"),
    pytest.param({"amount": 1, "metadata": [1]}, "metadata", id="metadata-list"),
    pytest.param({"amount": 1, "metadata": {"k": "x" * 4089}}, "metadata", id="metadata-4097"),
    pytest.param({"amount": 1, "payer_name": "n" * 257}, "payer_name", id="payer_name-long"),
    pytest.param({"amount": 1, "payer_name": 1}, "payer_name", id="payer_name-not-string"),
    pytest.param({"amount": 1, "payer_email": "nobody"}, "payer_email", id="payer_email-bad"),
    pytest.param({"amount": 1, "payer_email": "a@b\n"}, "payer_email", id="payer_email-newline"),
    pytest.param(
        {"amount": 1, "payer_pubkey": "02" + "11" * 32 + "\n"},
        "payer_pubkey",
        id="payer_pubkey-newline",
    ),
    pytest.param({"amount": 1, "payer_pubkey": "02abc"}, "payer_pubkey", id="payer_pubkey-bad"),
    pytest.param({"amount": 1, "expiry": 0}, "expiry", id="expiry-zero"),
    pytest.param({"amount": 1, "expiry": -60}, "expiry", id="expiry-negative"),
    pytest.param({"amount": 1, "expiry": 365 * 86400 + 1}, "expiry", id="expiry-too-long"),
    pytest.param({"amount": 1, "expiry": "60"}, "expiry", id="expiry-string"),
    pytest.param({"amount": 1, "currency": "XYZ"}, "currency", id="currency-not-iso-4217"),
    pytest.param({"amount": 1, "webhook": "h" * 2049}, "webhook", id="webhook-too-long"),
]


@pytest.mark.parametrize(("body", "field"), INVALID_BODIES)
def test_each_invalid_field_gets_400_naming_it_and_writes_nothing(
    client, admin, service, body, field
):
    before = counts(service)
    r = client.post("/invoices", json=body, headers={**admin, "Idempotency-Key": "k-" + field})
    assert r.status_code == 400
    data = r.get_json()
    assert data["code"] == 400 and data["error"] is True
    assert isinstance(data["message"], str) and data["message"]
    assert field in data["errors"], data
    assert isinstance(data["errors"][field], str) and data["errors"][field]
    assert counts(service) == before


def test_several_invalid_fields_are_all_reported(client, admin):
    r = create(client, admin, amount=-1, expiry=0, payer_email="nope")
    assert r.status_code == 400
    assert {"amount", "expiry", "payer_email"} <= set(r.get_json()["errors"])


def test_body_that_is_not_json_gets_400(client, admin, service):
    before = counts(service)
    r = client.post(
        "/invoices", data="amount=1", headers={**admin, "Content-Type": "application/json"}
    )
    assert r.status_code == 400
    assert "body" in r.get_json()["errors"]
    assert counts(service) == before


@pytest.mark.parametrize("body", [[1, 2], "text", 5, None], ids=["list", "string", "int", "null"])
def test_body_that_is_not_a_json_object_gets_400(client, admin, service, body):
    before = counts(service)
    r = client.post("/invoices", json=body, headers=admin)
    assert r.status_code == 400
    assert r.get_json()["error"] is True
    assert r.get_json()["errors"]
    assert counts(service) == before


@pytest.mark.parametrize("body", ["[" * 30_000, '{"amount": 1, "metadata": ' + '{"a":' * 10_000])
def test_deeply_nested_json_gets_400_not_500(client, admin, service, body):
    before = counts(service)
    r = client.post("/invoices", data=body, headers={**admin, "Content-Type": "application/json"})
    assert r.status_code == 400
    assert "body" in r.get_json()["errors"]
    assert counts(service) == before


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"amount": %s}', "amount"),
        ('{"amount": 1, "metadata": {"x": %s}}', "metadata.x"),
        ('{"amount": 1, "metadata": {"a": [1, {"b": %s}]}}', "metadata.a.1.b"),
    ],
    ids=["top-level", "in-metadata", "deep-in-metadata"],
)
def test_nan_and_infinity_get_400_naming_the_field_and_write_nothing(
    client, admin, service, token, body, field
):
    before = counts(service)
    headers = {**admin, "Content-Type": "application/json", "Idempotency-Key": "k-" + token}
    r = client.post("/invoices", data=body % token, headers=headers)
    assert r.status_code == 400
    assert r.get_json() == {
        "code": 400,
        "error": True,
        "message": "Request body must be JSON",
        "errors": {field: f"is {token}, which is not valid JSON"},
    }
    assert counts(service) == before


def test_a_number_beyond_a_double_gets_400_and_every_such_field_is_named(client, admin, service):
    before = counts(service)
    body = '{"amount": 1e999, "metadata": {"x": NaN, "y": -1e400, "ok": 1.5}}'
    r = client.post("/invoices", data=body, headers={**admin, "Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.get_json()["errors"] == {
        "amount": "is 1e999, too large for a number (beyond a double)",
        "metadata.x": "is NaN, which is not valid JSON",
        "metadata.y": "is -1e400, too large for a number (beyond a double)",
    }
    assert counts(service) == before


def test_body_over_64_kib_gets_413_in_alby_shape(client, admin, service):
    before = counts(service)
    big = '{"amount": 1, "comment": "' + "x" * (64 * 1024) + '"}'
    r = client.post("/invoices", data=big, headers={**admin, "Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.get_json() == {
        "code": 413,
        "error": True,
        "message": r.get_json()["message"],
    }
    assert counts(service) == before


def test_successful_create_writes_one_row_one_event_and_one_node_invoice(client, admin, service):
    before = counts(service)
    assert create(client, admin, amount=1).status_code == 201
    after = counts(service)
    assert (after[0] - before[0], after[1] - before[1], after[3] - before[3]) == (1, 1, 1)
