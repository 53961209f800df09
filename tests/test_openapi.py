"""The OpenAPI document: valid 3.1, complete, and honest about scopes."""

from __future__ import annotations

import pytest
from flask import Blueprint
from openapi_spec_validator import validate

from lnplugin.api import create_app, openapi
from lnplugin.api.auth import require


def _operations(app) -> set[tuple[str, str]]:
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            found.add((method.lower(), openapi.openapi_path(rule.rule)))
    return found


def test_the_served_document_is_valid_openapi_3_1(client) -> None:
    reply = client.get("/openapi.json")
    assert reply.status_code == 200
    document = reply.get_json()
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_every_route_in_the_url_map_is_in_the_document(app, client) -> None:
    document = client.get("/openapi.json").get_json()
    described = {(m, p) for p, item in document["paths"].items() for m in item}
    assert _operations(app) == described


def test_a_route_without_a_description_fails_the_build(service) -> None:
    app = create_app(service)
    extra = Blueprint("extra", __name__)
    extra.add_url_rule("/undescribed", "undescribed", lambda: "x")
    app.register_blueprint(extra)
    with pytest.raises(openapi.MissingOperation, match="undescribed"):
        openapi.build(app)


def test_scopes_come_from_the_routes_decorators(app, client) -> None:
    document = client.get("/openapi.json").get_json()
    # operationId is the endpoint with "." as "_" (blueprint names may hold "_")
    endpoint_of = {name.replace(".", "_"): name for name in app.view_functions}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            view = app.view_functions[endpoint_of[operation["operationId"]]]
            scopes = list(getattr(view, "required_scopes", ()))
            any_of = list(getattr(view, "any_scopes", ()))
            if operation["security"] and any_of:
                for scope in any_of:  # alternatives: one requirement each
                    assert {"bearer": [scope]} in operation["security"], (method, path)
            elif operation["security"]:
                assert {"bearer": scopes} in operation["security"], (method, path)
    create = document["paths"]["/invoices"]["post"]
    assert create["x-scopes"] == ["invoices:create"]
    assert document["paths"]["/docs"]["get"]["security"] == []
    assert document["paths"]["/metrics"]["get"]["x-scopes"] == ["metrics:read"]
    # Routes whose answer depends on which read scope the token holds.
    for path, method in (
        ("/events", "get"),
        ("/invoices/export", "get"),
        ("/events/tickets", "post"),
    ):
        operation = document["paths"][path][method]
        assert operation["x-scopes-any-of"] == ["invoices:read", "transactions:read"], path
        assert {"bearer": []} not in operation["security"], path


def test_the_health_probe_says_a_token_or_the_status_key_may_be_sent(client) -> None:
    """`GET /health` answers without a token, and shows the follower's detail
    to a token of any scope or to the status key: a client generated from the
    document must be able to send either."""
    health = client.get("/openapi.json").get_json()["paths"]["/health"]["get"]
    assert {} in health["security"]  # no token at all will do
    assert {"bearer": []} in health["security"] and {"apiKey": []} in health["security"]
    assert "X-Lnplugin-Status-Key" in [p["name"] for p in health["parameters"]]


def test_request_bodies_are_the_validating_models(client) -> None:
    document = client.get("/openapi.json").get_json()
    body = document["components"]["schemas"]["InvoiceCreate"]
    amount = body["properties"]["amount"]["anyOf"]
    assert {"type": "integer", "minimum": 0, "maximum": 21 * 10**14} in amount
    assert {"type": "string", "maxLength": 256} in body["properties"]["payer_name"]["anyOf"]
    # Checked by invoicing.check_cltv_delta (the NWC rule too); the bounds are documented.
    cltv = body["properties"]["min_cltv_expiry_delta"]["anyOf"]
    assert {"type": "integer", "minimum": 18, "maximum": 2016} in cltv
    ref = document["paths"]["/invoices"]["post"]["requestBody"]["content"]["application/json"]
    assert ref["schema"]["$ref"].endswith("/InvoiceCreate")


def test_headers_and_the_error_shape_are_described(client) -> None:
    document = client.get("/openapi.json").get_json()
    create = document["paths"]["/invoices"]["post"]
    assert "Idempotency-Key" in [p["name"] for p in create["parameters"]]
    assert "Idempotent-Replayed" in create["responses"]["201"]["headers"]
    assert "Retry-After" in create["responses"]["503"]["headers"]
    assert "X-Request-Id" in create["responses"]["201"]["headers"]
    error = document["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"code", "error", "message"}
    events = document["paths"]["/events"]["get"]
    assert {"streamTicket": []} in events["security"]
    assert "Last-Event-ID" in [p["name"] for p in events["parameters"]]


def test_the_docs_page_and_its_assets_are_served_locally(client) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "http://" not in html and "https://" not in html  # nothing from a CDN
    for asset in ("/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css", "/docs/init.js"):
        reply = client.get(asset)
        assert reply.status_code == 200, asset
        assert len(reply.get_data()) > 0
    assert b"/openapi.json" in client.get("/docs/init.js").get_data()
    assert client.get("/docs/../../etc/passwd").status_code == 404
    assert client.get("/docs/swagger-editor.js").status_code == 404


def test_require_records_its_scopes() -> None:
    @require("invoices:read", "transactions:read")
    def view() -> str:
        return "x"

    assert view.required_scopes == ("invoices:read", "transactions:read")  # type: ignore[attr-defined]  # set on the function by @require


def test_every_field_an_invoice_always_carries_is_required(client, admin) -> None:
    """A client generated from the document gets non-optional fields for
    everything an invoice answer always holds (null when it does not apply),
    the newer ones (QR links, hold and fiat fields) included."""
    schema = client.get("/openapi.json").get_json()["components"]["schemas"]["Invoice"]
    assert set(schema["required"]) == set(schema["properties"])
    answer = client.post("/invoices", json={"amount": 21}, headers=admin).get_json()
    assert set(schema["required"]) <= set(answer)
    assert {"checkout_url", "qr_code_png", "settle_deadline", "price"} <= set(schema["required"])
