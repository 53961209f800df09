"""Tokens and scopes: 401 means "log in", 403 means "ask for more", errors in Alby's shape."""

from __future__ import annotations

import pytest

from lnplugin.store import tokens

SCOPES = ("invoices:create", "invoices:read", "transactions:read")
HASH = "00" * 32

# (method, path, json body, scopes that are enough)
ENDPOINTS = [
    ("POST", "/invoices", {"amount": 1}, {"invoices:create"}),
    ("GET", f"/invoices/{HASH}", None, {"invoices:read"}),
    ("GET", "/invoices/incoming", None, {"invoices:read"}),
    ("GET", "/invoices/outgoing", None, {"transactions:read"}),
    ("GET", "/invoices", None, {"invoices:read", "transactions:read"}),
    ("POST", "/dev/pay", {"payment_hash": HASH}, {"admin"}),
    ("POST", "/dev/keysend", {"amount_msat": 1000}, {"admin"}),
]
ANY_TOKEN = [
    ("GET", "/info", None),
    ("GET", "/decode/bolt11/lnbcrt1invalid", None),
    ("POST", "/decode", {"invoice": "lnbcrt1invalid"}),
]
ALL_ROUTES = [(m, p, b) for m, p, b, _ in ENDPOINTS] + ANY_TOKEN
IDS = [f"{m} {p.replace(HASH, '<hash>')}" for m, p, _ in ALL_ROUTES]
ENDPOINT_IDS = [f"{m} {p.replace(HASH, '<hash>')}" for m, p, *_ in ENDPOINTS]


def call(client, method: str, path: str, body, headers: dict[str, str] | None = None):
    return client.open(path, method=method, json=body, headers=headers or {})


def assert_alby_error(response, code: int) -> dict:
    assert response.status_code == code
    assert response.is_json
    data = response.get_json()
    assert data["code"] == code
    assert data["error"] is True
    assert isinstance(data["message"], str) and data["message"]
    return data


@pytest.mark.parametrize(("method", "path", "body"), ALL_ROUTES, ids=IDS)
def test_no_token_gets_401(client, method, path, body):
    assert_alby_error(call(client, method, path, body), 401)


@pytest.mark.parametrize(("method", "path", "body"), ALL_ROUTES, ids=IDS)
def test_unknown_token_gets_401(client, method, path, body):
    r = call(client, method, path, body, {"Authorization": "Bearer lnp_not-a-real-token"})
    assert_alby_error(r, 401)


@pytest.mark.parametrize(("method", "path", "body"), ALL_ROUTES, ids=IDS)
def test_revoked_token_gets_401(client, service, method, path, body):
    with service.store.transaction() as tx:
        token_id, token = tokens.create(tx, ["admin"])
    tokens.revoke(service.store, token_id)
    r = call(client, method, path, body, {"Authorization": f"Bearer {token}"})
    assert_alby_error(r, 401)


@pytest.mark.parametrize(("method", "path", "body", "enough"), ENDPOINTS, ids=ENDPOINT_IDS)
def test_a_token_without_the_scope_gets_403_naming_it(
    client, make_token, method, path, body, enough
):
    for scope in SCOPES:
        if scope in enough:
            continue
        token = make_token(scope)
        r = call(client, method, path, body, {"Authorization": f"Bearer {token}"})
        data = assert_alby_error(r, 403)
        assert any(s in data["message"] for s in enough)


@pytest.mark.parametrize(("method", "path", "body", "enough"), ENDPOINTS, ids=ENDPOINT_IDS)
def test_a_token_with_the_scopes_gets_past_auth(client, make_token, method, path, body, enough):
    token = make_token(*enough)
    r = call(client, method, path, body, {"Authorization": f"Bearer {token}"})
    assert r.status_code not in (401, 403), r.get_json()


def test_the_all_list_needs_both_read_scopes(client, make_token):
    one = make_token("invoices:read")
    assert_alby_error(client.get("/invoices", headers={"Authorization": f"Bearer {one}"}), 403)
    both = make_token("invoices:read", "transactions:read")
    assert client.get("/invoices", headers={"Authorization": f"Bearer {both}"}).status_code == 200


@pytest.mark.parametrize(("method", "path", "body"), ALL_ROUTES, ids=IDS)
def test_admin_grants_every_scope(client, admin, method, path, body):
    r = call(client, method, path, body, admin)
    assert r.status_code not in (401, 403), r.get_json()


def test_x_api_key_header_works_like_bearer(client, make_token):
    token = make_token("invoices:create")
    r = client.post("/invoices", json={"amount": 1}, headers={"X-Api-Key": token})
    assert r.status_code == 201


def test_x_api_key_with_a_bad_token_gets_401(client):
    assert_alby_error(client.get("/info", headers={"X-Api-Key": "nope"}), 401)


def test_bearer_keyword_is_case_insensitive(client, make_token):
    token = make_token("invoices:read")
    assert (
        client.get("/invoices/incoming", headers={"Authorization": f"bearer {token}"}).status_code
        == 200
    )


def test_other_authorization_schemes_are_not_tokens(client, make_token):
    token = make_token("admin")
    assert_alby_error(client.get("/info", headers={"Authorization": f"Basic {token}"}), 401)
    assert_alby_error(client.get("/info", headers={"Authorization": "Bearer "}), 401)


def test_401_and_403_messages_tell_the_client_what_to_do(client, make_token):
    assert "token" in client.get("/info").get_json()["message"].lower()
    token = make_token("invoices:read")
    r = client.post("/invoices", json={"amount": 1}, headers={"Authorization": f"Bearer {token}"})
    assert "invoices:create" in r.get_json()["message"]


def test_health_needs_no_token(client):
    r = client.get("/health")
    assert r.status_code == 200
    assert r.get_json()["status"] == "ok"


def test_open_health_says_only_whether_it_runs_and_follows(client, service, make_token):
    # The follower's position counts settlements: not for whoever reaches the port.
    shown = client.get("/health").get_json()
    assert shown["follower"] == {"connection": shown["follower"]["connection"]}
    for headers in (
        {"Authorization": "Bearer lnp_not-a-token"},  # not refused: the open answer
        {"X-Lnplugin-Status-Key": "wrong"},
    ):
        reply = client.get("/health", headers=headers)
        assert reply.status_code == 200 and reply.get_json() == shown
    # The operator's view: a token of any scope, or the data dir's status key.
    for headers in (
        {"Authorization": f"Bearer {make_token('metrics:read')}"},
        {"X-Lnplugin-Status-Key": service.status_key},
    ):
        follower = client.get("/health", headers=headers).get_json()["follower"]
        assert {"connection", "cursor", "head", "lag", "outgoing", "last_error"} == set(follower)


def test_unknown_route_gets_json_404(client, admin):
    assert_alby_error(client.get("/nope"), 404)
    assert_alby_error(client.get("/invoices/a/b/c", headers=admin), 404)


def test_wrong_method_gets_json_405_with_allow(client, admin):
    r = client.delete("/invoices", headers=admin)
    assert_alby_error(r, 405)
    assert "GET" in r.headers["Allow"] and "POST" in r.headers["Allow"]
    assert_alby_error(client.get("/decode", headers=admin), 405)
    assert_alby_error(client.put(f"/invoices/{HASH}", headers=admin), 405)


def test_validation_errors_use_the_alby_shape_with_errors(client, admin):
    data = assert_alby_error(client.post("/invoices", json={"amount": -1}, headers=admin), 400)
    assert set(data) == {"code", "error", "message", "errors"}


def test_plain_errors_have_exactly_code_error_and_message(client, admin):
    data = assert_alby_error(client.get(f"/invoices/{HASH}", headers=admin), 404)
    assert set(data) == {"code", "error", "message"}
    assert set(client.get("/info").get_json()) == {"code", "error", "message"}


def test_info_reports_the_dev_node_and_says_it_is_not_connected(client, make_token, service):
    token = make_token("invoices:read")
    info = client.get("/info", headers={"Authorization": f"Bearer {token}"}).get_json()
    assert info["node"]["kind"] == "dev"
    assert info["node"]["pubkey"] == service.node.pubkey
    assert info["node"]["connected_to_network"] is False
    assert info["network"] == "regtest"
    assert "not connected" in info["notice"]
    assert "cursor" in info["follower"]
    assert isinstance(info["version"], str)
