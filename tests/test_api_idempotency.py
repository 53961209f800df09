"""`Idempotency-Key` on POST /invoices: a retried request never mints a second invoice."""

from __future__ import annotations

from typing import Any


def post(client, token: str, key: str | None, body: dict) -> Any:
    # Any, not TestResponse: its get_json() is Optional, and these bodies are JSON.
    headers = {"Authorization": f"Bearer {token}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post("/invoices", json=body, headers=headers)


def invoice_rows(service) -> int:
    return service.store.conn.execute("SELECT COUNT(*) FROM invoices").fetchone()[0]


def test_same_key_and_same_body_returns_the_same_invoice_and_stores_one_row(
    client, make_token, service
):
    token = make_token("invoices:create")
    first = post(client, token, "order-1", {"amount": 10, "description": "a"})
    second = post(client, token, "order-1", {"amount": 10, "description": "a"})
    assert first.status_code == second.status_code == 201
    assert second.get_json() == first.get_json()
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert invoice_rows(service) == 1


def test_key_order_in_the_body_does_not_matter(client, make_token, service):
    token = make_token("invoices:create")
    first = post(client, token, "k", {"amount": 10, "description": "a"})
    second = post(client, token, "k", {"description": "a", "amount": 10})
    assert second.get_json()["payment_hash"] == first.get_json()["payment_hash"]
    assert invoice_rows(service) == 1


def test_replay_shows_the_current_state_of_the_invoice(client, make_token, admin):
    token = make_token("invoices:create")
    first = post(client, token, "k", {"amount": 1}).get_json()
    client.post("/dev/pay", json={"payment_hash": first["payment_hash"]}, headers=admin)
    again = post(client, token, "k", {"amount": 1}).get_json()
    assert again["payment_hash"] == first["payment_hash"]
    assert again["state"] == "SETTLED"


def test_same_key_with_a_different_body_gets_409_and_creates_nothing(client, make_token, service):
    token = make_token("invoices:create")
    assert post(client, token, "k", {"amount": 10}).status_code == 201
    r = post(client, token, "k", {"amount": 11})
    assert r.status_code == 409
    assert r.get_json()["code"] == 409 and r.get_json()["error"] is True
    assert "Idempotency-Key" in r.get_json()["message"]
    assert invoice_rows(service) == 1


def test_different_keys_create_different_invoices(client, make_token, service):
    token = make_token("invoices:create")
    a = post(client, token, "a", {"amount": 10}).get_json()
    b = post(client, token, "b", {"amount": 10}).get_json()
    assert a["payment_hash"] != b["payment_hash"]
    assert invoice_rows(service) == 2


def test_without_a_key_every_request_creates_a_new_invoice(client, make_token, service):
    token = make_token("invoices:create")
    post(client, token, None, {"amount": 10})
    post(client, token, None, {"amount": 10})
    assert invoice_rows(service) == 2


def test_keys_are_per_token(client, make_token, service):
    alice, bob = make_token("invoices:create"), make_token("invoices:create")
    a = post(client, alice, "shared", {"amount": 10})
    b = post(client, bob, "shared", {"amount": 99})  # a different body is fine for bob
    assert a.status_code == b.status_code == 201
    assert a.get_json()["payment_hash"] != b.get_json()["payment_hash"]
    assert post(client, bob, "shared", {"amount": 99}).get_json() == b.get_json()
    assert invoice_rows(service) == 2


def test_a_key_used_by_a_rejected_request_stays_free(client, make_token, service):
    token = make_token("invoices:create")
    assert post(client, token, "k", {"amount": -1}).status_code == 400
    assert post(client, token, "k", {"amount": 5}).status_code == 201
    assert invoice_rows(service) == 1


def test_empty_or_overlong_keys_get_400(client, make_token, service):
    token = make_token("invoices:create")
    for key in ("", "k" * 256):
        r = post(client, token, key, {"amount": 1})
        assert r.status_code == 400
        assert "Idempotency-Key" in r.get_json()["errors"]
    assert post(client, token, "k" * 255, {"amount": 1}).status_code == 201
    assert invoice_rows(service) == 1
