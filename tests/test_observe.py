"""Request ids, the access log, JSON logs, CORS and stream tickets."""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from lnplugin import logs
from lnplugin.api import create_app
from lnplugin.api.tickets import TicketBook
from lnplugin.config import ConfigError, load_settings
from lnplugin.service import Service
from lnplugin.store import tokens
from tests import e2e
from tests.helpers_present import present


@pytest.fixture
def cors_client(data_dir: Path):
    settings = load_settings(
        {"data_dir": str(data_dir), "cors_origin": ("https://app.example",)}, environ={}
    )
    svc = Service.build(settings)
    svc.start()
    yield create_app(svc).test_client(), svc
    svc.stop()


def test_a_request_id_is_echoed_or_made(client) -> None:
    mine = client.get("/health", headers={"X-Request-Id": "abc-123"})
    assert mine.headers["X-Request-Id"] == "abc-123"
    made = client.get("/health", headers={"X-Request-Id": "bad id\twith spaces"})
    assert made.headers["X-Request-Id"] not in ("", "bad id\twith spaces")
    assert client.get("/nope").headers["X-Request-Id"]


def test_the_access_log_names_the_token_id_never_the_token(
    client, make_token: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    token = make_token("invoices:read")
    with caplog.at_level(logging.INFO, logger="lnplugin.access"):
        hash_ = "ab" * 32
        client.get(f"/invoices/{hash_}", headers={"Authorization": f"Bearer {token}"})
    records = [r for r in caplog.records if r.name == "lnplugin.access"]
    assert len(records) == 1
    fields = records[0].http  # type: ignore[attr-defined]  # set through the log call's extra=
    assert fields["method"] == "GET"
    assert fields["route"] == "/invoices/<payment_hash>"
    assert fields["status"] == 404
    assert isinstance(fields["token_id"], int)
    assert fields["duration_ms"] >= 0
    text = caplog.text
    assert token not in text and hash_ not in text


def test_the_access_log_can_be_switched_off(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings({"data_dir": str(data_dir), "access_log": False}, environ={})
    svc = Service.build(settings)
    try:
        client = create_app(svc).test_client()
        with caplog.at_level(logging.INFO, logger="lnplugin.access"):
            client.get("/health")
        assert not [r for r in caplog.records if r.name == "lnplugin.access"]
    finally:
        svc.store.close()


def test_json_log_lines_carry_the_access_fields() -> None:
    record = logging.LogRecord("lnplugin.access", logging.INFO, "x", 1, "GET / 200", (), None)
    record.http = {"method": "GET", "route": "/health", "status": 200}
    line = json.loads(logs.JsonFormatter().format(record))
    assert line["level"] == "info" and line["logger"] == "lnplugin.access"
    assert line["status"] == 200 and line["route"] == "/health"
    assert line["message"] == "GET / 200"


def test_log_format_and_cors_origin_are_validated() -> None:
    with pytest.raises(ConfigError, match="log_format"):
        load_settings({"log_format": "xml"}, environ={})
    with pytest.raises(ConfigError, match="cors_origin"):
        load_settings({"cors_origin": ("*",)}, environ={})
    with pytest.raises(ConfigError, match="cors_origin"):
        load_settings({"cors_origin": ("https://a.example/path",)}, environ={})
    settings = load_settings(
        {}, environ={"LNPLUGIN_CORS_ORIGIN": "https://a.example, http://b:3000"}
    )
    assert settings.cors_origin == ("https://a.example", "http://b:3000")


def test_no_cors_headers_by_default(client, admin) -> None:
    reply = client.get("/info", headers={**admin, "Origin": "https://app.example"})
    assert "Access-Control-Allow-Origin" not in reply.headers
    preflight = client.options(
        "/invoices",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert "Access-Control-Allow-Origin" not in preflight.headers


def test_preflight_from_an_allowed_origin(cors_client) -> None:
    client, _ = cors_client
    reply = client.options(
        "/invoices",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert reply.status_code == 204
    assert reply.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert set(reply.headers["Access-Control-Allow-Methods"].split(", ")) == {"GET", "POST"}
    allowed = reply.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed and "idempotency-key" in allowed
    assert "Origin" in reply.headers["Vary"]
    other = client.options(
        "/invoices",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "Access-Control-Allow-Origin" not in other.headers


def test_actual_requests_from_an_allowed_origin(
    cors_client,
) -> None:
    client, _ = cors_client
    reply = client.get("/health", headers={"Origin": "https://app.example"})
    assert reply.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "X-Request-Id" in reply.headers["Access-Control-Expose-Headers"]
    refused = client.get("/info", headers={"Origin": "https://app.example"})
    assert refused.status_code == 401  # CORS does not replace authentication
    assert refused.headers["Access-Control-Allow-Origin"] == "https://app.example"
    other = client.get("/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_a_browser_app_may_read_the_headers_its_token_is_answered_with(
    cors_client,
) -> None:
    """A page can only read the response headers CORS exposes: the token's
    limit (X-RateLimit-*) is sent on every answer to it, so a browser app
    pacing itself must be allowed to see it, as it sees Retry-After."""
    client, svc = cors_client
    with svc.store.transaction() as tx:
        _, token = tokens.create(tx, ["invoices:read"])
    reply = client.get(
        "/info", headers={"Authorization": f"Bearer {token}", "Origin": "https://app.example"}
    )
    assert reply.status_code == 200
    exposed = {h.strip().lower() for h in reply.headers["Access-Control-Expose-Headers"].split(",")}
    sent = {h.lower() for h, _ in reply.headers.items() if h.lower().startswith("x-ratelimit-")}
    assert sent == {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"}
    assert sent <= exposed


def _ticket(client, headers, path: str) -> dict:
    reply = client.post("/events/tickets", json={"path": path}, headers=headers)
    assert reply.status_code == 201, reply.get_json()
    return reply.get_json()


def test_a_ticket_opens_one_stream_once(client, make_token: Callable[..., str]) -> None:
    headers = {"Authorization": f"Bearer {make_token('invoices:read')}"}
    ticket = _ticket(client, headers, "/events")
    assert ticket["ticket"].startswith("lnpt_") and ticket["expires_in"] <= 60
    stream = client.get(ticket["url"], buffered=False)
    assert stream.status_code == 200
    assert next(stream.response).startswith(b"retry:")
    stream.close()
    again = client.get(ticket["url"])
    assert again.status_code == 401
    assert again.get_json()["message"].startswith("Invalid, used or expired ticket")


def test_a_ticket_is_for_its_path_only(client, make_token: Callable[..., str]) -> None:
    headers = {"Authorization": f"Bearer {make_token('admin')}"}
    invoice = client.post("/invoices", json={"amount": 1}, headers=headers).get_json()
    ticket = _ticket(client, headers, "/events")["ticket"]
    other = client.get(f"/invoices/{invoice['payment_hash']}/events?ticket={ticket}")
    assert other.status_code == 401
    # Consumed by that try, even though it was refused.
    assert client.get(f"/events?ticket={ticket}").status_code == 401
    # A ticket is not a token anywhere else.
    fresh = _ticket(client, headers, "/events")["ticket"]
    assert client.get(f"/info?ticket={fresh}").status_code == 401
    path = f"/invoices/{invoice['payment_hash'].upper()}/events"
    own = _ticket(client, headers, path)
    assert own["path"] == path.lower()
    reply = client.get(
        f"/invoices/{invoice['payment_hash']}/events?ticket={own['ticket']}", buffered=False
    )
    assert reply.status_code == 200
    reply.close()


def test_a_ticket_keeps_its_tokens_scopes_and_revocation(
    client, service: Service, make_token: Callable[..., str]
) -> None:
    # A token that could not open the stream gets no ticket for it either.
    creator = {"Authorization": f"Bearer {make_token('invoices:create')}"}
    refused = client.post("/events/tickets", json={"path": "/events"}, headers=creator)
    assert refused.status_code == 403
    assert refused.get_json()["message"] == "Token lacks scope: invoices:read or transactions:read"
    payments = {"Authorization": f"Bearer {make_token('transactions:read')}"}
    assert _ticket(client, payments, "/events")["path"] == "/events"  # outgoing events
    one_invoice = {"path": "/invoices/" + "ab" * 32 + "/events"}
    assert client.post("/events/tickets", json=one_invoice, headers=payments).status_code == 403
    reader = make_token("invoices:read")
    ticket = _ticket(client, {"Authorization": f"Bearer {reader}"}, "/events")["ticket"]
    token_id = present(tokens.verify(service.store.conn, reader)).id
    tokens.revoke(service.store, token_id)
    assert client.get(f"/events?ticket={ticket}").status_code == 401


def test_ticket_requests_are_validated(client, admin) -> None:
    assert client.post("/events/tickets", json={"path": "/events"}).status_code == 401
    bad = client.post("/events/tickets", json={"path": "/info"}, headers=admin)
    assert bad.status_code == 400 and "path" in bad.get_json()["errors"]


def test_tickets_expire_and_are_stored_hashed() -> None:
    book = TicketBook(ttl=0)
    ticket = book.issue(1, "/events")
    assert ticket not in str(book._tickets)
    assert book.redeem(ticket, "/events") is None  # expired at once
    book = TicketBook(ttl=60)
    ticket = book.issue(7, "/events")
    assert book.redeem(ticket, "/events") == 7
    assert book.redeem(ticket, "/events") is None


def _stderr_after_stop(server: e2e.Server) -> list[str]:
    server.stop()
    return server.stderr_text().splitlines()


def test_serve_writes_json_logs_with_access_lines(tmp_path: Path) -> None:
    server = e2e.Server(
        tmp_path / "data", "--log-format", "json", env={"LNPLUGIN_LOG_LEVEL": "info"}
    )
    with server:
        reply = server.request("GET", "/info", headers={"X-Request-Id": "e2e-1"})
        assert reply.status_code == 200 and reply.headers["X-Request-Id"] == "e2e-1"
        lines = _stderr_after_stop(server)
    records = [json.loads(line) for line in lines if line.strip()]  # every line is JSON
    access = [r for r in records if r["logger"] == "lnplugin.access"]
    assert [(r["method"], r["route"], r["status"], r["request_id"]) for r in access] == [
        ("GET", "/info", 200, "e2e-1")
    ]
    assert isinstance(access[0]["token_id"], int)
    assert server.token is not None and server.token not in "\n".join(lines)


def test_serve_without_the_access_log(tmp_path: Path) -> None:
    server = e2e.Server(tmp_path / "data", "--no-access-log", env={"LNPLUGIN_LOG_LEVEL": "info"})
    with server:
        assert server.request("GET", "/info").status_code == 200
        lines = _stderr_after_stop(server)
    assert lines, "info-level startup lines expected"
    assert not [line for line in lines if "lnplugin.access" in line]


def test_only_the_public_blueprints_run_the_per_client_limiter(app) -> None:
    """flask-limiter's request hooks are installed for the limited (public)
    blueprints only: a token or open route never carries its headers, and
    the limiter's hooks are not among those every request runs."""
    limiter = next(iter(app.extensions["limiter"]))
    every_request = [
        f
        for table in ("before_request_funcs", "after_request_funcs", "teardown_request_funcs")
        for f in getattr(app, table).get(None, [])
    ]
    hooks = [f for functions in limiter.hooks.values() for f in functions]
    assert hooks and not any(f in every_request for f in hooks)
    for name in ("lnurlp", "checkout"):
        assert all(
            f in app.before_request_funcs[name] for f in limiter.hooks["before_request_funcs"]
        )
    response = app.test_client().get("/health")
    assert response.status_code == 200
    assert response.headers["X-Request-Id"]
    assert not [k for k, _ in response.headers.items() if k.startswith("X-RateLimit")]


def test_answers_to_a_token_are_not_stored_by_caches(tmp_path: Path) -> None:
    """What a token reads (a settled invoice's preimage) and secrets shown once
    (an endpoint's signing secret, a stream ticket) carry `no-store`, whichever
    header brings the token; the open /health is left to caches."""
    with e2e.Server(tmp_path / "data") as server:
        assert server.token is not None
        made = server.request("POST", "/invoices", json={"amount": 21})
        paid = server.request(
            "POST", "/dev/pay", json={"payment_request": made.json()["payment_request"]}
        )
        assert paid.status_code == 200
        invoice = f"/invoices/{made.json()['payment_hash']}"
        by_key = server.session.get(
            server.url + invoice, headers={"X-Api-Key": server.token}, timeout=10
        )
        assert by_key.json()["preimage"]
        endpoint = server.request(
            "POST",
            "/webhook_endpoints",
            json={"url": "https://hooks.example/ln", "filter_types": ["invoice.incoming.settled"]},
        )
        assert endpoint.json()["endpoint_secret"]
        ticket = server.request("POST", "/events/tickets", json={"path": "/events"})
        assert ticket.status_code == 201
        for answer in (made, by_key, server.request("GET", invoice), endpoint, ticket):
            assert answer.headers.get("Cache-Control") == "no-store", answer.url
        open_health = server.session.get(server.url + "/health", timeout=10)
        assert "Cache-Control" not in open_health.headers


def test_a_strangers_text_cannot_start_a_log_line_of_its_own(tmp_path: Path) -> None:
    """A webhook receiver (or a relay, or a rate provider) whose answer ends
    up in a log message cannot forge log lines with CR or LF: the text
    format escapes them, so every line lnplugin writes starts with its own
    timestamp."""
    listener = socket.create_server(("127.0.0.1", 0))
    forged = b"X\r2026-01-01 00:00:00,000 ERROR lnplugin: FORGED\n"

    def answer() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(forged)

    threading.Thread(target=answer, daemon=True).start()
    port = listener.getsockname()[1]
    server = e2e.Server(
        tmp_path / "data", "--webhook-allow", "127.0.0.1/32", env={"LNPLUGIN_LOG_LEVEL": "info"}
    )
    try:
        with server:
            made = server.request(
                "POST",
                "/webhook_endpoints",
                json={
                    "url": f"http://127.0.0.1:{port}/hook",
                    "filter_types": ["invoice.incoming.settled"],
                },
            ).json()
            path = f"/webhook_endpoints/{made['id']}"
            assert server.request("POST", path + "/test").status_code == 202

            def failed() -> str | None:
                rows = server.request("GET", path + "/deliveries").json()
                return rows[0]["last_error"] if rows and rows[0]["last_error"] else None

            assert "FORGED" in e2e.wait_for(failed, "the failed attempt")
            lines = _stderr_after_stop(server)
    finally:
        listener.close()
    stamp = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")
    assert [line for line in lines if not stamp.match(line)] == []
    attempt = [line for line in lines if "FORGED" in line]
    assert attempt and all(
        "X\\r2026-01-01 00:00:00,000 ERROR lnplugin: FORGED\\n" in line for line in attempt
    )
