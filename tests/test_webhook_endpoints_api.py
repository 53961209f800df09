"""The Alby-compatible webhook endpoints API: shapes, validation, scopes.

CRUD and validation need no network, so these use Flask's test client on a
real `Service` (store on disk, dev node); delivery is tested over HTTP in
test_webhooks_delivery.py.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from lnplugin.api import create_app
from lnplugin.config import load_settings
from lnplugin.service import Service
from lnplugin.store import events, tokens
from lnplugin.store import webhooks as db

SETTLED = "invoice.incoming.settled"


@pytest.fixture()
def svc(tmp_path: Path) -> Iterator[Service]:
    service = Service.build(load_settings({"data_dir": str(tmp_path)}, environ={}))
    yield service
    service.store.close()


@pytest.fixture()
def client(svc: Service) -> FlaskClient:
    return create_app(svc).test_client()


def _token(svc: Service, *scopes: str) -> dict[str, str]:
    with svc.store.transaction() as tx:
        _, secret = tokens.create(tx, list(scopes), "test")
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture()
def admin(svc: Service) -> dict[str, str]:
    return _token(svc, "admin")


def _create(client: FlaskClient, admin: dict[str, str], **body: Any) -> Any:
    body = {"url": "https://example.com/hook", "filter_types": [SETTLED], **body}
    return client.post("/webhook_endpoints", json=body, headers=admin)


def test_create_returns_secret_once(client: FlaskClient, admin: dict[str, str]) -> None:
    reply = _create(client, admin, description="shop")
    assert reply.status_code == 201
    body = reply.get_json()
    assert set(body) == {
        "id",
        "url",
        "description",
        "filter_types",
        "created_at",
        "endpoint_secret",
    }
    assert body["url"] == "https://example.com/hook"
    assert body["description"] == "shop"
    assert body["filter_types"] == [SETTLED]
    assert body["endpoint_secret"].startswith("whsec_")
    assert len(base64.b64decode(body["endpoint_secret"][6:])) == 32

    listed = client.get("/webhook_endpoints", headers=admin).get_json()
    assert [e["id"] for e in listed] == [body["id"]]
    assert "endpoint_secret" not in listed[0]
    one = client.get(f"/webhook_endpoints/{body['id']}", headers=admin).get_json()
    assert "endpoint_secret" not in one and one["id"] == body["id"]


def test_every_known_event_type_is_accepted(client: FlaskClient, admin: dict[str, str]) -> None:
    reply = _create(client, admin, filter_types=list(events.EVENT_TYPES))
    assert reply.status_code == 201
    assert reply.get_json()["filter_types"] == list(events.EVENT_TYPES)


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"filter_types": [SETTLED, "invoice.paid"]}, "filter_types", "unknown event type"),
        ({"filter_types": []}, "filter_types", "at least 1"),
        ({"filter_types": None}, "filter_types", ""),
        ({"url": "ftp://example.com/x"}, "url", "http"),
        ({"url": "example.com/hook"}, "url", "http"),
        ({"url": "https:///nohost"}, "url", "host"),
        ({"url": "https://user:pw@example.com/"}, "url", "credentials"),
        ({"url": 5}, "url", "string"),
        ({"url": "http://127.0.0.1:9/hook"}, "url", "loopback"),
        ({"url": "http://169.254.169.254/latest"}, "url", "link-local"),
        ({"url": "http://10.1.2.3/hook"}, "url", "private"),
    ],
)
def test_invalid_bodies_get_a_reason_per_field(
    client: FlaskClient, admin: dict[str, str], body: dict[str, Any], field: str, reason: str
) -> None:
    reply = _create(client, admin, **body)
    assert reply.status_code == 400
    error = reply.get_json()
    assert error["code"] == 400 and error["error"] is True
    assert field in error["errors"]
    assert reason in error["errors"][field]


@pytest.mark.parametrize("key", ["secret", "endpoint_secret"])
def test_a_secret_of_the_callers_own_is_refused_not_ignored(
    client: FlaskClient, admin: dict[str, str], key: str
) -> None:
    """Ignored, it would make every signature the caller checks fail."""
    reply = _create(client, admin, **{key: "whsec_" + "A" * 32})
    assert reply.status_code == 400
    assert reply.get_json()["errors"] == {
        key: "cannot be chosen: lnplugin makes each "
        "endpoint's secret and shows it once, in this answer"
    }
    assert client.get("/webhook_endpoints", headers=admin).get_json() == []


def test_missing_url_is_required(client: FlaskClient, admin: dict[str, str]) -> None:
    reply = client.post("/webhook_endpoints", json={"filter_types": [SETTLED]}, headers=admin)
    assert reply.status_code == 400
    assert reply.get_json()["errors"] == {"url": "is required"}


def test_allow_list_permits_private_targets(tmp_path: Path) -> None:
    settings = load_settings(
        {"data_dir": str(tmp_path), "webhook_allow": ("127.0.0.0/8",)}, environ={}
    )
    service = Service.build(settings)
    try:
        client = create_app(service).test_client()
        reply = _create(client, _token(service, "admin"), url="http://127.0.0.1:9/hook")
        assert reply.status_code == 201
    finally:
        service.store.close()


def test_admin_scope_required(svc: Service, client: FlaskClient) -> None:
    assert client.get("/webhook_endpoints").status_code == 401
    reader = _token(svc, "invoices:read", "invoices:create", "transactions:read")
    for method, path in [
        ("POST", "/webhook_endpoints"),
        ("GET", "/webhook_endpoints"),
        ("GET", "/webhook_endpoints/ep_x"),
        ("DELETE", "/webhook_endpoints/ep_x"),
        ("GET", "/webhook_endpoints/ep_x/deliveries"),
        ("POST", "/webhook_endpoints/ep_x/test"),
        ("POST", "/webhook_endpoints/ep_x/deliveries/evt_x/redeliver"),
    ]:
        reply = client.open(path, method=method, headers=reader, json={})
        assert reply.status_code == 403, (method, path)


def test_delete_then_gone(client: FlaskClient, admin: dict[str, str]) -> None:
    endpoint_id = _create(client, admin).get_json()["id"]
    reply = client.delete(f"/webhook_endpoints/{endpoint_id}", headers=admin)
    assert reply.status_code == 200 and reply.get_json()["deleted"] is True
    assert client.get(f"/webhook_endpoints/{endpoint_id}", headers=admin).status_code == 404
    assert client.delete(f"/webhook_endpoints/{endpoint_id}", headers=admin).status_code == 404
    assert client.get("/webhook_endpoints", headers=admin).get_json() == []


def test_unknown_endpoint_is_404(client: FlaskClient, admin: dict[str, str]) -> None:
    for method, path in [
        ("GET", "/webhook_endpoints/ep_nope"),
        ("GET", "/webhook_endpoints/ep_nope/deliveries"),
        ("POST", "/webhook_endpoints/ep_nope/test"),
        ("POST", "/webhook_endpoints/ep_nope/deliveries/evt_x/redeliver"),
    ]:
        reply = client.open(path, method=method, headers=admin)
        assert reply.status_code == 404
        assert reply.get_json()["error"] is True


def test_test_event_is_queued_and_listed(client: FlaskClient, admin: dict[str, str]) -> None:
    endpoint_id = _create(client, admin).get_json()["id"]
    assert (
        client.get(f"/webhook_endpoints/{endpoint_id}/deliveries", headers=admin).get_json() == []
    )
    reply = client.post(f"/webhook_endpoints/{endpoint_id}/test", headers=admin)
    assert reply.status_code == 202
    queued = reply.get_json()
    assert queued["type"] == "webhook.test"
    assert queued["status"] == "pending" and queued["attempts"] == 0
    listed = client.get(f"/webhook_endpoints/{endpoint_id}/deliveries", headers=admin).get_json()
    assert [d["event_id"] for d in listed] == [queued["event_id"]]
    assert set(listed[0]) >= {"event_id", "type", "attempts", "last_status_code", "next_attempt_at"}


def test_redeliver_unknown_event_is_404(client: FlaskClient, admin: dict[str, str]) -> None:
    endpoint_id = _create(client, admin).get_json()["id"]
    reply = client.post(
        f"/webhook_endpoints/{endpoint_id}/deliveries/evt_missing/redeliver", headers=admin
    )
    assert reply.status_code == 404


def _redeliver_created_event(
    svc: Service, client: FlaskClient, admin: dict[str, str], filter_types: list[str]
) -> tuple[str, str, Any]:
    """An invoice made before the endpoint exists; its `created` event redelivered
    to a new endpoint taking `filter_types`: (endpoint id, event id, reply)."""
    assert client.post("/invoices", json={"amount": 5}, headers=admin).status_code == 201
    event_id = svc.store.conn.execute("SELECT event_id FROM events").fetchone()[0]
    endpoint_id = _create(client, admin, filter_types=filter_types).get_json()["id"]
    path = f"/webhook_endpoints/{endpoint_id}/deliveries/{event_id}/redeliver"
    return endpoint_id, event_id, client.post(path, headers=admin)


def test_redeliver_any_outbox_event(
    svc: Service, client: FlaskClient, admin: dict[str, str]
) -> None:
    # Events from before the endpoint existed are not sent to it, but can be
    # sent on request.
    _, event_id, reply = _redeliver_created_event(svc, client, admin, ["invoice.incoming.created"])
    assert reply.status_code == 202
    assert reply.get_json()["event_id"] == event_id
    assert reply.get_json()["type"] == "invoice.incoming.created"


def test_redeliver_sends_only_what_the_endpoint_takes(
    svc: Service, client: FlaskClient, admin: dict[str, str]
) -> None:
    endpoint_id, _, reply = _redeliver_created_event(
        svc, client, admin, ["invoice.incoming.settled"]
    )
    assert reply.status_code == 409
    assert "filter_types" in reply.get_json()["message"]
    listed = client.get(f"/webhook_endpoints/{endpoint_id}/deliveries", headers=admin)
    assert listed.get_json() == []


def test_invoice_webhook_must_be_http_url(client: FlaskClient, admin: dict[str, str]) -> None:
    reply = client.post("/invoices", json={"amount": 5, "webhook": "ftp://x/y"}, headers=admin)
    assert reply.status_code == 400
    assert "webhook" in reply.get_json()["errors"]
    ok = client.post(
        "/invoices", json={"amount": 5, "webhook": "https://example.com/paid"}, headers=admin
    )
    assert ok.status_code == 201


# Each is refused by the one shared check, on both routes: syntax the sender
# could not use, and IP literals that lead somewhere non-public.
REJECTED_TARGETS = [
    pytest.param("http://localhost:99999/x", "port", id="port-out-of-range"),
    pytest.param("http://localhost:0/x", "port", id="port-zero"),
    pytest.param("http://user:pass@example.com/", "credentials", id="credentials"),
    pytest.param("http://a..b/", "label", id="empty-label"),
    pytest.param(f"http://{'a' * 64}.example/", "label", id="long-label"),
    pytest.param("http://[::1/", "not a valid URL", id="unclosed-bracket"),
    pytest.param("http://[::127.0.0.1]/", "leads to 127.0.0.1", id="v4-compatible"),
    pytest.param("http://[::ffff:127.0.0.1]/", "leads to 127.0.0.1", id="v4-mapped"),
    pytest.param("http://[64:ff9b::a9fe:a9fe]/", "leads to 169.254.169.254", id="nat64"),
    pytest.param("http://[64:ff9b:1::a00:1]/", "leads to 10.0.0.1", id="nat64-local"),
    pytest.param("http://[2002:a9fe:a9fe::]/", "leads to 169.254.169.254", id="6to4"),
    pytest.param("http://[2001:0:a9fe:a9fe::f7f7:f7f7]/", "169.254.169.254", id="teredo-server"),
    pytest.param("http://[2001:0:808:808::80ff:fffe]/", "127.0.0.1", id="teredo-client"),
    pytest.param("http://[fec0::1]/", "non-public", id="site-local"),
    pytest.param("http://127.1/", "loopback", id="short-ipv4"),
    pytest.param("http://2130706433/", "loopback", id="decimal-ipv4"),
    pytest.param("https://shop.example/inv two", "spaces", id="space"),
    pytest.param("https://shop.example/a\r\nX-Injected: yes", "control", id="crlf"),
    pytest.param("https://shop.example/café", "ASCII path", id="non-ascii-path"),
]


@pytest.mark.parametrize(("url", "reason"), REJECTED_TARGETS)
def test_endpoint_url_rejected(
    client: FlaskClient, admin: dict[str, str], url: str, reason: str
) -> None:
    reply = _create(client, admin, url=url)
    assert reply.status_code == 400
    body = reply.get_json()
    assert body["code"] == 400 and body["error"] is True
    assert list(body["errors"]) == ["url"] and reason in body["errors"]["url"]
    assert client.get("/webhook_endpoints", headers=admin).get_json() == []


@pytest.mark.parametrize(("url", "reason"), REJECTED_TARGETS)
def test_invoice_webhook_rejected(
    client: FlaskClient, admin: dict[str, str], url: str, reason: str
) -> None:
    reply = client.post("/invoices", json={"amount": 5, "webhook": url}, headers=admin)
    assert reply.status_code == 400
    body = reply.get_json()
    assert body["code"] == 400 and body["error"] is True
    assert list(body["errors"]) == ["webhook"] and reason in body["errors"]["webhook"]
    assert client.get("/invoices/incoming", headers=admin).get_json() == []


def test_invoice_webhook_literal_passes_when_allow_listed(tmp_path: Path) -> None:
    settings = load_settings(
        {"data_dir": str(tmp_path), "webhook_allow": ("127.0.0.0/8",)}, environ={}
    )
    service = Service.build(settings)
    try:
        client = create_app(service).test_client()
        for url in ("http://127.0.0.1:9/paid", "http://[::ffff:127.0.0.1]:9/paid"):
            reply = client.post(
                "/invoices",
                json={"amount": 5, "webhook": url},
                headers=_token(service, "invoices:create"),
            )
            assert reply.status_code == 201, reply.get_json()
    finally:
        service.store.close()


def test_docs_cover_every_webhook_and_event_route(svc: Service) -> None:
    docs = (Path(__file__).parents[1] / "docs" / "webhooks.md").read_text()
    app = create_app(svc)
    rules = [
        r for r in app.url_map.iter_rules() if r.endpoint.split(".")[0] in {"webhooks", "events"}
    ]
    assert len(rules) >= 9
    for rule in rules:
        path = rule.rule.replace("<endpoint_id>", "<id>").rstrip("/")
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            assert f"{method} {path}" in docs, f"{method} {path} missing from docs/webhooks.md"
    for setting in (
        "--webhook-allow",
        "--webhook-retry-schedule",
        "--max-streams",
        "--sse-heartbeat",
    ):
        assert setting in docs
    assert "lnplugin webhook-secret" in docs and "--rotate" in docs


def test_invoice_deliveries_route(svc: Service, client: FlaskClient, admin: dict[str, str]) -> None:
    made = client.post(
        "/invoices", json={"amount": 5, "webhook": "https://example.com/paid"}, headers=admin
    )
    payment_hash = made.get_json()["payment_hash"]
    plain = client.post("/invoices", json={"amount": 5}, headers=admin).get_json()
    _create(client, admin, filter_types=["invoice.incoming.created"])  # not listed below
    with svc.store.transaction() as tx:
        db.fan_out(tx)

    reader = _token(svc, "invoices:read")
    reply = client.get(f"/invoices/{payment_hash}/deliveries", headers=reader)
    assert reply.status_code == 200
    [row] = reply.get_json()
    assert row["type"] == "invoice.incoming.created"
    assert row["status"] == "pending" and row["attempts"] == 0
    assert set(row) == {
        "event_id",
        "type",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "last_attempt_at",
        "next_attempt_at",
        "delivered_at",
        "created_at",
    }
    path = f"/invoices/{plain['payment_hash']}/deliveries"
    assert client.get(path, headers=reader).get_json() == []
    assert client.get(f"{path}?items=0", headers=reader).status_code == 400
    assert client.get(f"/invoices/{'0' * 64}/deliveries", headers=reader).status_code == 404
    assert client.get("/invoices/zz/deliveries", headers=reader).status_code == 400
    creator = _token(svc, "invoices:create")
    assert client.get(path, headers=creator).status_code == 403
    assert client.get(path).status_code == 401


def test_invoice_redeliver_scopes_and_404s(
    svc: Service, client: FlaskClient, admin: dict[str, str]
) -> None:
    hooked = client.post(
        "/invoices", json={"amount": 5, "webhook": "https://example.com/paid"}, headers=admin
    ).get_json()["payment_hash"]
    plain = client.post("/invoices", json={"amount": 5}, headers=admin).get_json()["payment_hash"]
    _create(client, admin, filter_types=["invoice.incoming.created"])  # gets plain's event too
    with svc.store.transaction() as tx:
        db.fan_out(tx)
    event_of = dict(svc.store.conn.execute("SELECT payment_hash, event_id FROM events"))
    path = f"/invoices/{hooked}/deliveries/{event_of[hooked]}/redeliver"

    # `invoices:read` and `invoices:create` (or `admin`); either alone is 403.
    app_token = _token(svc, "invoices:read", "invoices:create")
    for headers in (app_token, admin):
        reply = client.post(path, headers=headers)
        assert reply.status_code == 202
        assert reply.get_json()["event_id"] == event_of[hooked]
        assert reply.get_json()["status"] == "pending"
    for scopes in (("invoices:read",), ("invoices:create",), ("transactions:read",)):
        reply = client.post(path, headers=_token(svc, *scopes))
        assert reply.status_code == 403
        assert reply.get_json()["message"].startswith("Token lacks scope: invoices:")
    assert client.post(path).status_code == 401

    def redeliver(payment_hash: str, event_id: str) -> Any:
        url = f"/invoices/{payment_hash}/deliveries/{event_id}/redeliver"
        return client.post(url, headers=app_token)

    unknown = redeliver("0" * 64, event_of[hooked])
    assert unknown.status_code == 404
    assert unknown.get_json() == {
        "code": 404,
        "error": True,
        "message": f"No invoice with payment hash {'0' * 64}",
    }
    for payment_hash, event_id in (
        (hooked, "evt_missing"),  # no such event
        (hooked, event_of[plain]),  # another invoice's event
        (plain, event_of[plain]),  # no `webhook` URL: only the endpoint has a delivery
    ):
        reply = redeliver(payment_hash, event_id)
        assert reply.status_code == 404
        message = f"No webhook delivery of event {event_id} for invoice {payment_hash}"
        assert reply.get_json()["message"] == message
    assert db.delivery(svc.store.conn, db.INVOICE_TARGET, event_of[plain]) is None
    malformed = redeliver("zz", event_of[hooked])
    assert malformed.status_code == 400
    assert malformed.get_json()["errors"] == {"payment_hash": "must be 64 hex characters"}
