"""Errors no route turned into an `APIError`: one mapping (`as_api_error`), and
each family of routes answers it in its own shape: Alby's JSON, LUD-06's
`{"status": "ERROR"}`, or the checkout pages' HTML page."""

from __future__ import annotations

import logging
import sqlite3

import pytest
from flask import Blueprint, Flask
from pydantic import BaseModel

from lnplugin.api import checkout, public


def busy() -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError("database is locked")
    exc.sqlite_errorcode = sqlite3.SQLITE_BUSY  # as SQLite sets it past the busy timeout
    return exc


class Amount(BaseModel):
    amount: int


def add_failing_routes(app: Flask) -> None:
    """Three public blueprints with the same failing routes, each answering with
    one family's handlers, added to the real app (no token needed: public)."""
    shaped = {"alby": None, "lnurl": public.lnurl_errors, "page": checkout._html_errors}
    for name, install in shaped.items():
        bp = Blueprint(f"probe_{name}", __name__, url_prefix=f"/probe/{name}")

        @bp.get("/busy")
        def _busy() -> str:
            raise busy()

        @bp.get("/bug")
        def _bug() -> str:
            raise RuntimeError("a bug")

        @bp.get("/invalid")
        def _invalid() -> str:
            Amount.model_validate({"amount": "lots"})
            return "unreachable"

        if install is not None:
            install(bp)
        app.register_blueprint(bp)


@pytest.fixture
def client(app: Flask):
    add_failing_routes(app)
    return app.test_client()


def test_a_busy_store_is_503_with_retry_after_in_every_shape(client) -> None:
    alby = client.get("/probe/alby/busy")
    assert alby.status_code == 503 and alby.headers["Retry-After"] == "1"
    assert alby.get_json() == {
        "code": 503,
        "error": True,
        "message": "The store is busy, try again shortly",
    }
    lnurl = client.get("/probe/lnurl/busy")
    assert lnurl.status_code == 503 and lnurl.headers["Retry-After"] == "1"
    assert lnurl.get_json() == {"status": "ERROR", "reason": "The store is busy, try again shortly"}
    page = client.get("/probe/page/busy")
    assert page.status_code == 503 and page.headers["Retry-After"] == "1"
    assert page.mimetype == "text/html" and "The store is busy" in page.get_data(as_text=True)


def test_a_bug_is_a_logged_500_that_shows_nothing_of_it(client, caplog) -> None:
    with caplog.at_level(logging.ERROR, logger="lnplugin.api.errors"):
        alby = client.get("/probe/alby/bug")
        lnurl = client.get("/probe/lnurl/bug")
        page = client.get("/probe/page/bug")
    assert alby.status_code == lnurl.status_code == page.status_code == 500
    assert alby.get_json()["message"] == "Internal error"
    assert lnurl.get_json() == {"status": "ERROR", "reason": "Internal error"}
    assert page.mimetype == "text/html"
    for reply in (alby, lnurl, page):
        assert "a bug" not in reply.get_data(as_text=True)
    assert [r.exc_info is not None for r in caplog.records] == [True, True, True]


def test_a_validation_error_is_a_400_naming_the_field_not_a_500(client) -> None:
    alby = client.get("/probe/alby/invalid")
    assert alby.status_code == 400 and "amount" in alby.get_json()["errors"]
    lnurl = client.get("/probe/lnurl/invalid")
    assert lnurl.status_code == 400 and lnurl.get_json()["reason"].startswith("Invalid request")
    assert "amount" in lnurl.get_json()["reason"]
    assert client.get("/probe/page/invalid").status_code == 400


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("abc", "must be an integer"),
        ("1.5", "must be an integer"),
        ("0", "must be from 1 to 1000000000000000"),
        ("-3", "must be from 1 to 1000000000000000"),
        ("9" * 30, "must be from 1 to 1000000000000000"),
    ],
)
def test_a_connection_id_that_is_not_one_is_400_naming_it(client, admin, given, reason) -> None:
    """A path parameter is input like any other: an id that cannot be one is
    told apart from a connection that does not exist (404), as a malformed
    payment hash is."""
    reply = client.delete(f"/nwc/connections/{given}", headers=admin)
    assert reply.status_code == 400
    assert reply.get_json()["errors"] == {"connection_id": reason}
    unknown = client.delete("/nwc/connections/999", headers=admin)
    assert unknown.status_code == 404 and "errors" not in unknown.get_json()


@pytest.mark.parametrize("label", ["app\tname", "app\nname", "x" * 201])
def test_a_connection_label_that_would_break_nwc_list_is_400_naming_it(
    client, admin, label
) -> None:
    reply = client.post(
        "/nwc/connections", json={"scopes": ["invoices:read"], "label": label}, headers=admin
    )
    assert reply.status_code == 400
    assert "label" in reply.get_json()["errors"]


def test_a_write_waiting_out_this_processs_own_writer_is_503_not_500(tmp_path) -> None:
    """Past `--busy-timeout`, a write that waited for another thread of this
    process (a long follower batch, say) gives up with the store's own
    "database is locked", which carries no SQLite error code. It is the same
    busy store as another process's lock, so the same 503 with Retry-After,
    not an internal error."""
    import threading

    from lnplugin.api import create_app
    from lnplugin.config import load_settings
    from lnplugin.service import Service
    from lnplugin.store import tokens

    settings = load_settings({"data_dir": str(tmp_path / "data"), "busy_timeout": 0.2}, environ={})
    svc = Service.build(settings)
    svc.start()
    try:
        with svc.store.transaction() as tx:
            _, token = tokens.create(tx, ["admin"])
        holding, release = threading.Event(), threading.Event()

        def hold_the_writer() -> None:
            with svc.store.transaction():
                holding.set()
                release.wait(10)

        holder = threading.Thread(target=hold_the_writer)
        holder.start()
        assert holding.wait(10)
        try:
            client = create_app(svc).test_client()
            made = client.post(
                "/invoices", json={"amount": 5}, headers={"Authorization": f"Bearer {token}"}
            )
        finally:
            release.set()
            holder.join(10)
        assert made.status_code == 503, made.get_json()
        assert made.headers["Retry-After"] == "1"
        assert made.get_json()["message"] == "The store is busy, try again shortly"
    finally:
        svc.stop()
