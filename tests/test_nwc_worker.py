"""The NWC worker's request path against a real store and the dev node, with
no relay: what a request seen twice, an unknown key, a revoked connection and
a flood of requests get (lnplugin/nwc/worker.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nostr_sdk as ns
import pytest

from lnplugin.nodes.dev import DevNode
from lnplugin.nwc import protocol as p
from lnplugin.nwc.connections import connect
from lnplugin.nwc.worker import NwcWorker, RateLimiter
from lnplugin.store import Store
from lnplugin.store import nwc as db


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[NwcWorker]:
    store = Store(tmp_path / "lnplugin.sqlite")
    w = NwcWorker(store, DevNode(tmp_path), [], "regtest", RateLimiter(burst=3, per_second=0.0))
    w.load_keys()
    yield w
    store.close()


def app_keys(worker: NwcWorker, *scopes: str) -> ns.Keys:
    _, uri = connect(worker.store, scopes, "test", ["ws://127.0.0.1:1"])
    return ns.Keys(ns.NostrWalletConnectUri.parse(uri).secret())


def request(
    worker: NwcWorker,
    app: ns.Keys,
    method: str,
    params: dict[str, Any],
    encryption: str = p.NIP44,
) -> dict[str, Any]:
    service = ns.PublicKey.parse(worker.pubkey)
    plain = json.dumps({"method": method, "params": params})
    content = p.encrypt(app, service, encryption, plain)
    tags = [["p", worker.pubkey]]
    if encryption == p.NIP44:
        tags.append(["encryption", p.NIP44])
    builder = ns.EventBuilder(ns.Kind(p.REQUEST), content).tags([ns.Tag.parse(t) for t in tags])
    return json.loads(app.sign_event(builder.finalize_unsigned(app.public_key())).as_json())


def answer(
    app: ns.Keys, worker: NwcWorker, event_json: str | None, encryption: str = p.NIP44
) -> dict[str, Any]:
    assert event_json is not None
    event = ns.Event.from_json(event_json)
    assert event.verify()
    plain = p.decrypt(app, ns.PublicKey.parse(worker.pubkey), encryption, event.content())
    return json.loads(plain)


def minted(worker: NwcWorker) -> int:
    return int(worker.store.conn.execute("SELECT COUNT(*) FROM invoices").fetchone()[0])


def test_a_make_invoice_seen_twice_is_answered_with_the_stored_response(
    worker: NwcWorker,
) -> None:
    app = app_keys(worker, "invoices:create")
    event = request(worker, app, "make_invoice", {"amount": 5000, "description": "x"})
    first = worker.handle(event, time.time())
    again = worker.handle(event, time.time())
    assert first == again  # the very same signed event
    assert answer(app, worker, first)["result"]["amount"] == 5000
    for _ in range(3):  # use up the connection's bucket (burst 3 here)
        worker.handle(request(worker, app, "get_info", {}), time.time())
    assert worker.handle(event, time.time()) == first  # a replay is not rate limited
    assert minted(worker) == 1


def test_unknown_and_revoked_keys_are_unauthorized_and_mint_nothing(worker: NwcWorker) -> None:
    stranger = ns.Keys.generate()
    body = answer(
        stranger,
        worker,
        worker.handle(request(worker, stranger, "make_invoice", {"amount": 1000}), time.time()),
    )
    assert body["error"]["code"] == "UNAUTHORIZED"
    app = app_keys(worker, "invoices:create")
    (connection,) = [c for c in db.list_all(worker.store.conn) if c.label == "test"]
    with worker.store.transaction() as tx:
        assert db.revoke(tx, connection.id)
    body = answer(
        app,
        worker,
        worker.handle(request(worker, app, "make_invoice", {"amount": 1000}), time.time()),
    )
    assert body["error"]["code"] == "UNAUTHORIZED"
    assert minted(worker) == 0


def test_a_flood_from_one_connection_is_rate_limited_and_others_are_not(
    worker: NwcWorker,
) -> None:
    noisy, quiet = app_keys(worker, "invoices:read"), app_keys(worker, "invoices:read")
    codes = [
        (
            answer(noisy, worker, worker.handle(request(worker, noisy, "get_info", {}), 0.0))[
                "error"
            ]
            or {}
        ).get("code")
        for _ in range(4)
    ]
    assert codes == [None, None, None, "RATE_LIMITED"]
    body = answer(quiet, worker, worker.handle(request(worker, quiet, "get_info", {}), 0.0))
    assert body["error"] is None


def test_bad_params_are_answered_with_an_error_not_a_crash(worker: NwcWorker) -> None:
    worker.limiter = RateLimiter()  # the default limits: this test is not a flood
    app = app_keys(worker, "invoices:create", "invoices:read")
    for method, params in [
        ("make_invoice", {"amount": "many"}),
        ("make_invoice", {"amount": 1, "expiry": -1}),
        ("lookup_invoice", {}),
        ("list_transactions", {"limit": -3}),
        ("list_transactions", {"type": "sideways"}),
    ]:
        body = answer(app, worker, worker.handle(request(worker, app, method, params), 0.0))
        assert body["result_type"] == method and body["error"]["code"] == "OTHER", method
    body = answer(
        app,
        worker,
        worker.handle(
            request(worker, app, "lookup_invoice", {"payment_hash": "00" * 32}), time.time()
        ),
    )
    assert body["error"]["code"] == "NOT_FOUND"
    assert worker.handle({"kind": 23194, "content": "junk"}, 0.0) is None  # dropped


def test_strangers_share_one_bucket_and_past_it_get_no_answer(worker: NwcWorker) -> None:
    answers = []
    for _ in range(4):
        stranger = ns.Keys.generate()
        answers.append(worker.handle(request(worker, stranger, "get_info", {}), 0.0))
    assert [a is not None for a in answers] == [True, True, True, False]
    app = app_keys(worker, "invoices:read")  # a real connection has its own bucket
    body = answer(app, worker, worker.handle(request(worker, app, "get_info", {}), 0.0))
    assert body["error"] is None


def test_a_connection_remembers_the_scheme_of_its_apps_latest_request(worker: NwcWorker) -> None:
    app = app_keys(worker, "invoices:read")

    def scheme() -> str | None:
        found = db.live_by_pubkey(worker.store.conn, app.public_key().to_hex())
        assert found is not None
        return found.encryption

    assert scheme() is None  # no request yet: notifications go out in both schemes
    body = answer(app, worker, worker.handle(request(worker, app, "get_info", {}), time.time()))
    assert body["error"] is None and scheme() == p.NIP44
    legacy = worker.handle(request(worker, app, "get_info", {}, p.NIP04), time.time())
    assert answer(app, worker, legacy, p.NIP04)["error"] is None
    assert scheme() == p.NIP04
