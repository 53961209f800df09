"""JSON on the wire: what the orjson provider writes and what it still parses.

Bodies keep the keys, values and key order the standard provider wrote; only
non-ASCII text is now raw UTF-8. Values orjson refuses (integers beyond 64
bits, lone surrogates, dates) go through the standard json module instead.
Request bodies are parsed strictly: NaN, Infinity and numbers beyond a double
are a 400 naming each field, on every route that takes a body.
"""

from __future__ import annotations

import datetime
import decimal
import json

import pytest
from flask import Flask, request

from lnplugin.api.jsonprovider import MAX_REPORTED, OrjsonProvider, RefusedJSON
from lnplugin.api.schemas import MAX_MSAT
from lnplugin.store import invoices

TEXT = "Grüße ☕ 日本 🎉"


def create(client, headers, **body):
    r = client.post("/invoices", json=body, headers=headers)
    assert r.status_code == 201, r.get_json()
    return r


def test_non_ascii_memo_round_trips_as_raw_utf8(client, admin):
    r = create(client, admin, amount=1, memo=TEXT)
    assert TEXT.encode() in r.data  # not \u escapes
    assert r.get_json()["memo"] == r.get_json()["description"] == TEXT
    got = client.get(f"/invoices/{r.get_json()['payment_hash']}", headers=admin)
    assert got.get_json()["memo"] == TEXT
    decoded = client.get(f"/decode/bolt11/{r.get_json()['payment_request']}", headers=admin)
    assert decoded.get_json()["description"] == TEXT


def test_responses_are_compact_json_with_a_final_newline(client, admin):
    for r in (create(client, admin, amount=1), client.get("/health"), client.get("/nope")):
        assert r.content_type == "application/json"
        assert r.data.endswith(b"}\n")
        assert b'", "' not in r.data and b'": ' not in r.data


def test_key_order_is_the_order_the_handler_built(client, admin):
    invoice = json.loads(create(client, admin, amount=1).data)
    assert list(invoice) == sorted(invoice)  # the Alby invoice object is built sorted
    listed = json.loads(client.get("/invoices", headers=admin).data)
    assert [list(i) for i in listed] == [list(invoice)]
    assert list(json.loads(client.get("/health").data)) == ["status", "version", "node", "follower"]
    error = json.loads(client.get(f"/invoices/{'00' * 31}", headers=admin).data)
    assert list(error) == ["code", "error", "message", "errors"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [("{", "is not valid JSON"), ('{"amount": 1,}', "is not valid JSON"), ("[" * 30_000, None)],
    ids=["truncated", "trailing-comma", "deeply-nested"],
)
def test_malformed_body_gets_the_alby_error_shape(client, admin, body, reason):
    r = client.post("/invoices", data=body, headers={**admin, "Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.content_type == "application/json"
    got = r.get_json()
    assert got["code"] == 400 and got["error"] is True
    assert got["message"] == "Request body must be JSON"
    assert list(got["errors"]) == ["body"]
    if reason:
        assert got["errors"]["body"] == reason


def test_an_integer_too_long_to_read_is_named_not_called_invalid_json(client, admin):
    """Python reads at most 4300 digits of an integer; a longer one is still
    JSON, so the answer names its field, as it does a number beyond a double."""
    digits = "9" * 5000
    body = '{"amount": 1, "metadata": {"n": [' + digits + "]}}"
    r = client.post("/invoices", data=body, headers={**admin, "Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.get_json()["errors"] == {
        "metadata.n.0": "is an integer of 5000 digits, too large to read (at most 4300)"
    }
    negative = client.post(
        "/invoices",
        data='{"amount": -' + digits + "}",
        headers={**admin, "Content-Type": "application/json"},
    )
    assert negative.get_json()["errors"] == {
        "amount": "is an integer of 5000 digits, too large to read (at most 4300)"
    }


def test_largest_msat_amount_is_written_as_an_integer(client, admin):
    r = create(client, admin, amount_msat=MAX_MSAT)
    assert b'"amount_msat":%d,' % MAX_MSAT in r.data
    assert r.get_json()["amount_msat"] == MAX_MSAT


def stored(service, **fields):
    """An invoice inserted through the store layer, holding values as a client
    or a keysend sender could have sent them."""
    row = {
        "type": "incoming",
        "payment_hash": "ab" * 32,
        "state": "SETTLED",
        "amount_msat": 1000,
        "amount_received_msat": 1000,
        "created_at": 1_700_000_000,
        "settled_at": 1_700_000_001,
        "expiry": 3600,
        "expires_at": 1_700_003_600,
        **fields,
    }
    with service.store.transaction() as tx:
        invoices.insert(tx, row)
    return row["payment_hash"]


def test_integers_beyond_64_bits_are_written_as_integers(client, admin, service):
    huge = 2**70 + 1
    boost = {"value_msat_total": int("9" * 30), "message": TEXT}
    payment_hash = stored(
        service, metadata=json.dumps({"n": huge, "neg": -huge}), boostagram=json.dumps(boost)
    )
    for r in (
        client.get(f"/invoices/{payment_hash}", headers=admin),
        client.get("/invoices", headers=admin),
    ):
        assert r.status_code == 200
        assert b'"metadata":{"n":%d,"neg":%d}' % (huge, -huge) in r.data
        assert b'"value_msat_total":' + b"9" * 30 in r.data
    got = r.get_json()[0]
    assert got["metadata"] == {"n": huge, "neg": -huge}
    assert got["boostagram"] == boost


def test_lone_surrogates_are_escaped_as_before(client, admin, service):
    payment_hash = stored(service, metadata='{"s": "\\ud800"}')
    r = client.get(f"/invoices/{payment_hash}", headers=admin)
    assert r.status_code == 200
    assert b'"metadata":{"s":"\\ud800"}' in r.data
    assert r.get_json()["metadata"] == {"s": "\ud800"}


def test_nan_stored_before_bodies_were_strict_is_written_as_null(client, admin, service):
    payment_hash = stored(service, metadata='{"x": NaN, "y": Infinity}')
    r = client.get(f"/invoices/{payment_hash}", headers=admin)
    assert r.status_code == 200
    assert b'"metadata":{"x":null,"y":null}' in r.data


TABLES = ("invoices", "events", "idempotency_keys", "webhook_endpoints", "webhook_deliveries")
# Every route that takes a JSON body, with a body it would otherwise accept
# or reject for another reason; the NaN answer comes first.
BODY_ROUTES = [
    ("/invoices", '{"amount": 1, "metadata": {"x": NaN}}', "metadata.x"),
    ("/decode", '{"invoice": NaN}', "invoice"),
    (
        "/webhook_endpoints",
        '{"url": "https://example.com/", "filter_types": [NaN]}',
        "filter_types.0",
    ),
    ("/dev/pay", '{"amount_msat": NaN, "payment_hash": "%s"}' % ("00" * 32), "amount_msat"),
    (
        "/dev/keysend",
        '{"amount_msat": 1000, "custom_records": {"696969": NaN}}',
        "custom_records.696969",
    ),
]


@pytest.mark.parametrize(("path", "body", "field"), BODY_ROUTES, ids=[r[0] for r in BODY_ROUTES])
def test_every_route_that_takes_a_body_refuses_nan(client, admin, service, path, body, field):
    def rows():
        conn = service.store.conn
        return [conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES]

    before = rows()
    r = client.post(path, data=body, headers={**admin, "Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.get_json() == {
        "code": 400,
        "error": True,
        "message": "Request body must be JSON",
        "errors": {field: "is NaN, which is not valid JSON"},
    }
    assert rows() == before


@pytest.fixture
def bare() -> Flask:
    app = Flask("bare")
    app.json = OrjsonProvider(app)
    return app


def test_types_orjson_refuses_are_written_as_flask_writes_them(bare):
    value = {
        "when": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        "price": decimal.Decimal("1.50"),
        7: "int key",
    }
    with bare.app_context():
        r = bare.json.response(value)
    expected = b'{"when":"Tue, 02 Jan 2024 03:04:05 GMT","price":"1.50","7":"int key"}\n'
    assert r.get_data() == expected


def test_unserializable_values_still_fail(bare):
    with bare.app_context(), pytest.raises(TypeError):
        bare.json.response({"raw": b"bytes"})


def test_dumps_and_loads_match_the_standard_module(bare):
    value = {"b": [1, 2.5, None, True], "a": TEXT}
    with bare.app_context():
        assert json.loads(bare.json.dumps(value)) == value
        assert bare.json.dumps(value, sort_keys=True) == json.dumps(value, sort_keys=True)
        assert bare.json.loads(b'{"x": 1e308, "y": [-0.5]}') == {"x": 1e308, "y": [-0.5]}


@pytest.mark.parametrize(
    ("text", "errors"),
    [
        ("NaN", {"body": "is NaN, which is not valid JSON"}),
        ("[1, -Infinity]", {"1": "is -Infinity, which is not valid JSON"}),
        ('{"x": NaN, "x": 1}', {"x": "is given more than once; send each key once"}),
        ('{"a": {"b": 1, "b": 2, "b": 3}}', {"a.b": "is given more than once; send each key once"}),
    ],
    ids=["whole-body", "in-a-list", "dropped-by-a-duplicate-key", "a-key-three-times"],
)
def test_loads_refuses_what_json_does_not_allow(bare, text, errors):
    with bare.app_context(), pytest.raises(RefusedJSON) as caught:
        bare.json.loads(text)
    assert caught.value.errors == errors
    assert isinstance(caught.value, ValueError)  # malformed, to request.get_json too


def test_loads_names_at_most_ten_fields(bare):
    with bare.app_context(), pytest.raises(RefusedJSON) as caught:
        bare.json.loads("[" + ", ".join(["NaN"] * 1000) + "]")
    assert list(caught.value.errors) == [str(i) for i in range(MAX_REPORTED)]


def test_request_get_json_goes_through_the_strict_loads(bare):
    with bare.test_request_context(data='{"x": NaN}', content_type="application/json"):
        assert request.get_json(silent=True) is None
