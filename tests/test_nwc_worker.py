"""The NWC worker's request path against a real store and the dev node, with
no relay: what a request seen twice, an unknown key, a revoked connection and
a flood of requests get, and the hold invoice methods (make, settle, cancel,
the accepted notification), also on a node that cannot hold (the Core
Lightning simulator, standalone) (lnplugin/nwc/worker.py, and through it
lnplugin/nwc/methods.py)."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bolt11 as reference
import nostr_sdk as ns
import pytest

from lnplugin.nodes.cln import ClnNode
from lnplugin.nodes.dev import DevNode
from lnplugin.nodes.dev.node import HTLC_CLTV_DELTA
from lnplugin.nwc import protocol as p
from lnplugin.nwc.connections import connect
from lnplugin.nwc.worker import NwcWorker, RateLimiter
from lnplugin.store import Store, invoices
from lnplugin.store import nwc as db
from lnplugin_sim.cln_sim import ClnSim
from tests import e2e
from tests.helpers_present import present

tmp = e2e.fixture_tmp  # a short directory: unix socket paths must be short


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[NwcWorker]:
    store = Store(tmp_path / "lnplugin.sqlite")
    w = NwcWorker(store, DevNode(tmp_path), [], "regtest", RateLimiter(burst=3, per_second=0.0))
    w.load_keys()
    yield w
    store.close()


# The wallet key each app's URI names (each connection has its own); an app
# not in here (a stranger) writes to the shared key.
WALLET_KEY: dict[str, str] = {}


def app_keys(worker: NwcWorker, *scopes: str) -> ns.Keys:
    _, uri = connect(worker.store, scopes, "test", ["ws://127.0.0.1:1"])
    parsed = ns.NostrWalletConnectUri.parse(uri)
    app = ns.Keys(parsed.secret())
    WALLET_KEY[app.public_key().to_hex()] = parsed.public_key().to_hex()
    return app


def wallet_key(worker: NwcWorker, app: ns.Keys) -> str:
    return WALLET_KEY.get(app.public_key().to_hex(), worker.pubkey)


def request(
    worker: NwcWorker,
    app: ns.Keys,
    method: str,
    params: dict[str, Any],
    encryption: str = p.NIP44,
) -> dict[str, Any]:
    service = ns.PublicKey.parse(wallet_key(worker, app))
    plain = json.dumps({"method": method, "params": params})
    content = p.encrypt(app, service, encryption, plain)
    tags = [["p", wallet_key(worker, app)]]
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
    assert event.author().to_hex() == wallet_key(worker, app)
    plain = p.decrypt(app, ns.PublicKey.parse(wallet_key(worker, app)), encryption, event.content())
    return json.loads(plain)


def minted(worker: NwcWorker) -> int:
    return int(worker.store.conn.execute("SELECT COUNT(*) FROM invoices").fetchone()[0])


def test_an_idle_worker_writes_nothing_and_so_does_not_wake_itself(worker: NwcWorker) -> None:
    # Its notification thread runs after every commit; one that committed
    # even when it found nothing to send woke itself at once, for ever (a
    # core of CPU on an idle server).
    worker.start()
    try:
        time.sleep(0.3)  # the first pass, and any pruning, are done
        seen = worker.store.commit_version
        assert worker.store.wait_for_commit(seen, 1.0) == seen
        assert worker.notify_step() is False
        assert worker.store.commit_version == seen
    finally:
        worker.stop()


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


def test_get_info_leaves_out_what_it_does_not_know_rather_than_send_null(
    worker: NwcWorker,
) -> None:
    app = app_keys(worker, "invoices:read")
    info = answer(app, worker, worker.handle(request(worker, app, "get_info", {}), time.time()))
    result = info["result"]
    assert None not in result.values()
    assert "color" not in result and "block_hash" not in result  # not asked of the node
    assert {"alias", "pubkey", "network", "block_height", "methods"} <= set(result)


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
            answer(
                noisy, worker, worker.handle(request(worker, noisy, "get_info", {}), time.time())
            )["error"]
            or {}
        ).get("code")
        for _ in range(4)
    ]
    assert codes == [None, None, None, "RATE_LIMITED"]
    body = answer(quiet, worker, worker.handle(request(worker, quiet, "get_info", {}), time.time()))
    assert body["error"] is None


def test_the_rate_limiter_forgets_connections_whose_bucket_is_full_again(
    worker: NwcWorker,
) -> None:
    """Each connection that asked had a bucket kept for the life of the
    process, revoked connections' too: a server whose apps come and go grew
    by one per connection, without end. Forgetting a full bucket changes no
    answer; an emptied one is still remembered."""
    worker.limiter = RateLimiter(burst=3, per_second=1.0)  # full again 3 s after emptied
    now = time.time()
    apps = [app_keys(worker, "invoices:read") for _ in range(20)]
    for app in apps:
        worker.handle(request(worker, app, "get_info", {}), now)
    for connection in db.list_all(worker.store.conn):
        with worker.store.transaction() as tx:
            db.revoke(tx, connection.id)
    assert worker.limiter.kept == 20
    noisy = app_keys(worker, "invoices:read")
    for _ in range(3):  # empties its bucket just before the others are full again
        worker.handle(request(worker, noisy, "get_info", {}), now + 2.5)
    late = answer(noisy, worker, worker.handle(request(worker, noisy, "get_info", {}), now + 3.0))
    assert late["error"]["code"] == "RATE_LIMITED"  # remembered across the sweep
    assert worker.limiter.kept == 1


def test_bad_params_are_answered_with_an_error_not_a_crash(worker: NwcWorker) -> None:
    worker.limiter = RateLimiter()  # the default limits: this test is not a flood
    app = app_keys(worker, "invoices:create", "invoices:read")
    refused: list[tuple[str, dict[str, Any]]] = [
        ("make_invoice", {"amount": "many"}),
        ("make_invoice", {"amount": 1, "expiry": -1}),
        ("lookup_invoice", {}),
        ("list_transactions", {"limit": -3}),
        ("list_transactions", {"type": "sideways"}),
    ]
    for method, params in refused:
        body = answer(app, worker, worker.handle(request(worker, app, method, params), time.time()))
        assert body["result_type"] == method and body["error"]["code"] == "OTHER", method
    body = answer(
        app,
        worker,
        worker.handle(
            request(worker, app, "lookup_invoice", {"payment_hash": "00" * 32}), time.time()
        ),
    )
    assert body["error"]["code"] == "NOT_FOUND"
    assert worker.handle({"kind": 23194, "content": "junk"}, time.time()) is None  # dropped


def test_strangers_share_one_bucket_and_past_it_get_no_answer(worker: NwcWorker) -> None:
    answers = []
    for _ in range(4):
        stranger = ns.Keys.generate()
        answers.append(worker.handle(request(worker, stranger, "get_info", {}), time.time()))
    assert [a is not None for a in answers] == [True, True, True, False]
    app = app_keys(worker, "invoices:read")  # a real connection has its own bucket
    body = answer(app, worker, worker.handle(request(worker, app, "get_info", {}), time.time()))
    assert body["error"] is None


# -- hold invoices ------------------------------------------------------------------


def hold_pair() -> tuple[str, str]:
    preimage = secrets.token_bytes(32)
    return preimage.hex(), hashlib.sha256(preimage).hexdigest()


def call(worker: NwcWorker, app: ns.Keys, method: str, params: dict[str, Any]) -> dict[str, Any]:
    return answer(app, worker, worker.handle(request(worker, app, method, params), time.time()))


def stored(worker: NwcWorker, payment_hash: str) -> tuple[str, int | None, str | None]:
    row = worker.store.conn.execute(
        "SELECT state, settle_deadline, cancel_reason FROM invoices WHERE payment_hash = ?",
        (payment_hash,),
    ).fetchone()
    return tuple(row)


def pay_and_follow(worker: NwcWorker, payment_hash: str) -> None:
    """Pay on the dev node and let the follower's sweep store ACCEPTED, as the
    running service's hold feed would."""
    assert isinstance(worker.node, DevNode)
    worker.node.pay(payment_hash)
    worker.follower.sweep()


def notifications(worker: NwcWorker) -> list[dict[str, Any]]:
    with worker.store.transaction() as tx:
        db.fan_out(tx)
    out = []
    for row in db.pending(worker.store.conn):
        body = json.loads(row["body"])
        inv = invoices.by_id(worker.store.conn, body["invoice_id"])
        assert inv is not None
        out.append({"type": body["type"], "notification": p.notification(body["type"], inv)})
    return out


def test_a_hold_invoice_is_made_held_notified_and_settled_by_its_preimage(
    worker: NwcWorker,
) -> None:
    worker.limiter = RateLimiter()
    app = app_keys(worker, "invoices:create", "invoices:read")
    preimage, payment_hash = hold_pair()
    made = call(
        worker,
        app,
        "make_hold_invoice",
        {"amount": 21_000, "payment_hash": payment_hash, "description": "escrow"},
    )
    assert made["error"] is None and made["result_type"] == "make_hold_invoice"
    result = made["result"]
    assert (result["payment_hash"], result["amount"], result["state"]) == (
        payment_hash,
        21_000,
        "pending",
    )
    assert "preimage" not in result
    assert reference.decode(result["invoice"]).payment_hash == payment_hash

    early = call(worker, app, "settle_hold_invoice", {"preimage": preimage})
    assert early["error"]["code"] == "OTHER" and "not paid yet" in early["error"]["message"]

    pay_and_follow(worker, payment_hash)
    state, deadline, _ = stored(worker, payment_hash)
    assert state == "ACCEPTED" and deadline is not None
    (note,) = notifications(worker)
    assert note["type"] == "hold_invoice_accepted"
    assert note["notification"] == {
        "type": "incoming",
        "state": "accepted",
        "invoice": result["invoice"],
        "description": "escrow",
        "payment_hash": payment_hash,
        "amount": 21_000,
        "created_at": result["created_at"],
        "expires_at": result["expires_at"],
        "settle_deadline": deadline,
        "metadata": {},
    }
    looked = call(worker, app, "lookup_invoice", {"payment_hash": payment_hash})["result"]
    assert looked["state"] == "accepted" and looked["settle_deadline"] == deadline

    wrong, _ = hold_pair()
    refused = call(worker, app, "settle_hold_invoice", {"preimage": wrong})
    assert refused["error"]["code"] == "NOT_FOUND"
    mismatch = call(
        worker, app, "settle_hold_invoice", {"preimage": wrong, "payment_hash": payment_hash}
    )
    assert mismatch["error"]["code"] == "OTHER"
    assert stored(worker, payment_hash)[0] == "ACCEPTED"

    settled = call(worker, app, "settle_hold_invoice", {"preimage": preimage})
    assert settled == {"result_type": "settle_hold_invoice", "error": None, "result": {}}
    assert stored(worker, payment_hash)[0] == "SETTLED"
    # A retry with a new request (the app lost the answer) succeeds again.
    assert call(worker, app, "settle_hold_invoice", {"preimage": preimage})["error"] is None
    types = [n["type"] for n in notifications(worker)]
    assert types == ["hold_invoice_accepted", "payment_received"]


def test_a_hold_request_seen_twice_mints_once_and_answers_the_same(worker: NwcWorker) -> None:
    app = app_keys(worker, "invoices:create")
    _, payment_hash = hold_pair()
    event = request(
        worker, app, "make_hold_invoice", {"amount": 1000, "payment_hash": payment_hash}
    )
    first = worker.handle(event, time.time())
    assert worker.handle(event, time.time()) == first
    assert answer(app, worker, first)["result"]["payment_hash"] == payment_hash
    assert minted(worker) == 1
    # The same hash again in a new request: the invoice exists.
    again = call(worker, app, "make_hold_invoice", {"amount": 1000, "payment_hash": payment_hash})
    assert again["error"]["code"] == "OTHER" and "exists" in again["error"]["message"]
    assert minted(worker) == 1
    cancel = request(worker, app, "cancel_hold_invoice", {"payment_hash": payment_hash})
    answered = worker.handle(cancel, time.time())
    assert answer(app, worker, answered)["error"] is None
    assert worker.handle(cancel, time.time()) == answered
    assert stored(worker, payment_hash)[0] == "CANCELED"


def test_a_held_invoice_canceled_over_nwc_fails_back_and_refuses_settle(
    worker: NwcWorker,
) -> None:
    worker.limiter = RateLimiter()
    app = app_keys(worker, "invoices:create")
    preimage, payment_hash = hold_pair()
    call(worker, app, "make_hold_invoice", {"amount": 5000, "payment_hash": payment_hash})
    pay_and_follow(worker, payment_hash)
    body = call(worker, app, "cancel_hold_invoice", {"payment_hash": payment_hash})
    assert body == {"result_type": "cancel_hold_invoice", "error": None, "result": {}}
    state, _, reason = stored(worker, payment_hash)
    assert (state, reason) == ("CANCELED", "canceled through Nostr Wallet Connect")
    assert present(worker.node.lookup_invoice(payment_hash)).state == "CANCELED"
    late = call(worker, app, "settle_hold_invoice", {"preimage": preimage})
    assert late["error"]["code"] == "OTHER"
    # Canceling again is answered as done.
    assert call(worker, app, "cancel_hold_invoice", {"payment_hash": payment_hash})["error"] is None


def test_a_connection_settles_and_cancels_only_its_own_hold_invoices(worker: NwcWorker) -> None:
    worker.limiter = RateLimiter()
    mine, other = app_keys(worker, "invoices:create"), app_keys(worker, "invoices:create")
    preimage, payment_hash = hold_pair()
    call(worker, mine, "make_hold_invoice", {"amount": 5000, "payment_hash": payment_hash})
    regular = call(worker, other, "make_invoice", {"amount": 5000})["result"]["payment_hash"]
    pay_and_follow(worker, payment_hash)
    for method, params in [
        ("cancel_hold_invoice", {"payment_hash": payment_hash}),
        ("settle_hold_invoice", {"preimage": preimage}),
        ("cancel_hold_invoice", {"payment_hash": regular}),  # not a hold invoice
        ("cancel_hold_invoice", {"payment_hash": "ab" * 32}),  # unknown
    ]:
        body = call(worker, other, method, params)
        assert body["error"]["code"] == "NOT_FOUND", (method, params)
    assert stored(worker, payment_hash)[0] == "ACCEPTED"
    assert stored(worker, regular)[0] == "OPEN"


def test_min_cltv_expiry_delta_is_asked_of_the_node_and_sets_the_deadline(
    worker: NwcWorker,
) -> None:
    worker.limiter = RateLimiter()
    app = app_keys(worker, "invoices:create")
    _, payment_hash = hold_pair()
    made = call(
        worker,
        app,
        "make_hold_invoice",
        {"amount": 1000, "payment_hash": payment_hash, "min_cltv_expiry_delta": 144},
    )["result"]
    assert reference.decode(made["invoice"]).min_final_cltv_expiry == 144
    assert isinstance(worker.node, DevNode)
    height = worker.node.block_height()
    pay_and_follow(worker, payment_hash)
    assert stored(worker, payment_hash)[1] == height + 144
    # Within the safety margin lnplugin would cancel it as soon as it is paid.
    _, other = hold_pair()
    short = call(
        worker,
        app,
        "make_hold_invoice",
        {"amount": 1000, "payment_hash": other, "min_cltv_expiry_delta": 24},
    )
    assert short["error"]["code"] == "OTHER" and "margin" in short["error"]["message"]
    # And the safety cancel covers invoices made over NWC like those made over HTTP.
    worker.node.mine(144 - worker.follower.hold_cancel_margin)
    assert worker.follower.cancel_near_deadline() == 1
    assert stored(worker, payment_hash)[0] == "CANCELED"


def test_hold_params_are_checked(worker: NwcWorker) -> None:
    worker.limiter = RateLimiter()
    app = app_keys(worker, "invoices:create")
    _, payment_hash = hold_pair()
    refused: list[tuple[str, dict[str, Any]]] = [
        ("make_hold_invoice", {"amount": 1000}),
        ("make_hold_invoice", {"amount": 1000, "payment_hash": "xyz"}),
        ("make_hold_invoice", {"amount": -1, "payment_hash": payment_hash}),
        (
            "make_hold_invoice",
            {"amount": 1, "payment_hash": payment_hash, "min_cltv_expiry_delta": "x"},
        ),
        ("settle_hold_invoice", {"preimage": "00"}),
        ("cancel_hold_invoice", {}),
    ]
    for method, params in refused:
        body = call(worker, app, method, params)
        assert body["result_type"] == method and body["error"]["code"] == "OTHER", params
    assert minted(worker) == 0


def test_hold_methods_need_invoices_create(worker: NwcWorker) -> None:
    reader = app_keys(worker, "invoices:read")
    _, payment_hash = hold_pair()
    body = call(worker, reader, "make_hold_invoice", {"amount": 1, "payment_hash": payment_hash})
    assert body["error"]["code"] == "RESTRICTED"
    info = call(worker, reader, "get_info", {})["result"]
    assert info["methods"] == ["get_info", "lookup_invoice", "list_transactions"]
    assert info["notifications"] == ["payment_received", "hold_invoice_accepted"]
    maker = app_keys(worker, "invoices:create")
    info = call(worker, maker, "get_info", {})["result"]
    assert info["methods"] == [
        "get_info",
        "make_invoice",
        "make_hold_invoice",
        "settle_hold_invoice",
        "cancel_hold_invoice",
    ]
    assert info["notifications"] == []  # it may not read invoices


def test_a_node_without_hold_invoices_offers_no_hold_methods(tmp: Path) -> None:
    with ClnSim(tmp / "sim", tmp / "rpc") as sim:
        store = Store(tmp / "lnplugin.sqlite")
        node = ClnNode(sim.socket_path, network="regtest")
        worker = NwcWorker(store, node, [], "regtest")
        worker.load_keys()
        try:
            app = app_keys(worker, "invoices:create", "invoices:read")
            info = call(worker, app, "get_info", {})["result"]
            assert not set(info["methods"]) & set(p.HOLD_METHODS)
            assert info["notifications"] == ["payment_received"]
            _, payment_hash = hold_pair()
            body = call(
                worker, app, "make_hold_invoice", {"amount": 1000, "payment_hash": payment_hash}
            )
            assert body["error"]["code"] == "NOT_IMPLEMENTED"
            assert "hold" in body["error"]["message"]
            assert minted(worker) == 0
            assert worker.keys is not None
            event = ns.Event.from_json(p.info_event(worker.keys, worker.hold).as_json())
            assert "hold" not in event.content()
        finally:
            node.close()
            store.close()


# -- a wallet key per connection ---------------------------------------------------


def test_each_connection_has_its_own_wallet_key(worker: NwcWorker) -> None:
    """NIP-47: "ideally unique keys are used for each individual connection",
    so a relay cannot tell that two apps talk to one wallet. Each URI names
    its own key, which the answers to its app are signed with (`answer`
    checks the author), and the subscription asks for every one."""
    one, two = app_keys(worker, "invoices:read"), app_keys(worker, "invoices:read")
    keys = {wallet_key(worker, one), wallet_key(worker, two), worker.pubkey}
    assert len(keys) == 3
    for app in (one, two):
        body = answer(app, worker, worker.handle(request(worker, app, "get_info", {}), time.time()))
        assert body["error"] is None
        assert body["result"]["methods"] == ["get_info", "lookup_invoice", "list_transactions"]
    assert keys <= set(worker._filter()["#p"])


def test_an_app_key_is_good_only_with_its_own_wallet_key(worker: NwcWorker) -> None:
    one, two = app_keys(worker, "invoices:create"), app_keys(worker, "invoices:create")
    WALLET_KEY[one.public_key().to_hex()] = wallet_key(worker, two)  # one writes to two's key
    event = request(worker, one, "make_invoice", {"amount": 1000})
    body = answer(one, worker, worker.handle(event, time.time()))
    assert body["error"]["code"] == "UNAUTHORIZED"
    assert minted(worker) == 0


def test_a_connection_made_before_keys_per_connection_keeps_the_shared_key(
    worker: NwcWorker,
) -> None:
    # As migration 16 leaves the connections made before it: no key of their
    # own, so their URIs (which name the shared key) keep working.
    app = ns.Keys.generate()
    with worker.store.transaction() as tx:
        db.create(tx, app.public_key().to_hex(), ["invoices:create"], "old")
    assert wallet_key(worker, app) == worker.pubkey  # `request` writes to the shared key
    event = request(worker, app, "make_invoice", {"amount": 1000})
    assert answer(app, worker, worker.handle(event, time.time()))["result"]["amount"] == 1000
    newer = app_keys(worker, "invoices:create")  # the shared key is no good for a newer one
    WALLET_KEY[newer.public_key().to_hex()] = worker.pubkey
    refused = worker.handle(request(worker, newer, "get_info", {}), time.time())
    assert answer(newer, worker, refused)["error"]["code"] == "UNAUTHORIZED"


def test_a_connection_made_past_the_spares_is_taken_up_by_its_first_request(
    worker: NwcWorker,
) -> None:
    # Another process made connections faster than the server made spares.
    with worker.store.transaction() as tx:
        while db.take_spare(tx):
            pass
    app = app_keys(worker, "invoices:create")  # a fresh key, not listened on yet
    assert worker.wallet.get(wallet_key(worker, app)) is None
    body = answer(app, worker, worker.handle(request(worker, app, "get_info", {}), time.time()))
    assert body["error"] is None
    assert worker.wallet.get(wallet_key(worker, app)) is not None
    assert db.spare_count(worker.store.conn) == db.SPARES


def test_a_settle_within_the_hold_cancel_margin_is_other_and_cancels(worker: NwcWorker) -> None:
    """The rule the HTTP route follows too (`invoicing.settle`): the app is
    told why, and the payer's HTLC is failed back before its deadline."""
    worker.limiter = RateLimiter()
    app = app_keys(worker, "invoices:create")
    preimage, payment_hash = hold_pair()
    call(worker, app, "make_hold_invoice", {"amount": 5000, "payment_hash": payment_hash})
    pay_and_follow(worker, payment_hash)
    assert isinstance(worker.node, DevNode)
    worker.node.mine(HTLC_CLTV_DELTA - worker.follower.hold_cancel_margin + 5)
    late = call(worker, app, "settle_hold_invoice", {"preimage": preimage})
    assert late["error"]["code"] == "OTHER"
    assert late["error"]["message"].startswith("Too late to settle")
    state, _, reason = stored(worker, payment_hash)
    assert state == "CANCELED" and reason is not None and reason in late["error"]["message"]


def dated(
    app: ns.Keys, worker: NwcWorker, created_at: int, params: dict[str, Any]
) -> dict[str, Any]:
    """A make_invoice request signed by `app` with its own `created_at`."""
    service = ns.PublicKey.parse(wallet_key(worker, app))
    content = p.encrypt(
        app, service, p.NIP44, json.dumps({"method": "make_invoice", "params": params})
    )
    tags = [["p", wallet_key(worker, app)], ["encryption", p.NIP44]]
    builder = (
        ns.EventBuilder(ns.Kind(p.REQUEST), content)
        .tags([ns.Tag.parse(t) for t in tags])
        .custom_created_at(ns.Timestamp.from_secs(created_at))
    )
    return json.loads(app.sign_event(builder.finalize_unsigned(app.public_key())).as_json())


def test_a_request_replayed_after_it_was_forgotten_is_dropped_and_mints_nothing(
    worker: NwcWorker,
) -> None:
    # Answered requests are kept 7 days, then forgotten. Anyone who saw the
    # signed request (a relay, whoever read it from one) can send it again
    # after that; it must not mint a second invoice. Alby Hub ignores
    # make_invoice requests over 6 hours old.
    from lnplugin.nwc.worker import REQUEST_MEMORY

    app = app_keys(worker, "invoices:create")
    now = int(time.time())
    event = dated(app, worker, now, {"amount": 5000})
    assert answer(app, worker, worker.handle(event, now))["result"]["amount"] == 5000
    later = now + REQUEST_MEMORY + 60
    with worker.store.transaction() as tx:
        db.prune_requests(tx, later - REQUEST_MEMORY)  # the hourly prune, a week on
    assert db.response(worker.store.conn, event["id"]) is None
    assert worker.handle(event, later) is None
    # Dated far ahead, a request would outlive its memory the same way.
    ahead = dated(app, worker, now + 2 * 86400, {"amount": 6000})
    assert worker.handle(ahead, now) is None
    # Within the window: answered (a client clock a few minutes off is fine).
    skewed = dated(app, worker, now + 300, {"amount": 7000})
    assert answer(app, worker, worker.handle(skewed, now))["result"]["amount"] == 7000
    assert minted(worker) == 2


def test_a_zero_expiry_or_limit_is_taken_as_not_given(worker: NwcWorker) -> None:
    """NIP-47 gives 0 no meaning for either; an invoice expired as it is made
    and a page of nothing help no app, and a wallet service whose JSON
    decoding cannot tell 0 from absent (Go's, say) takes 0 as not given:
    lnplugin does the same (docs/nwc.md)."""
    worker.limiter = RateLimiter()
    app = app_keys(worker, "invoices:create", "invoices:read")
    made = answer(
        app,
        worker,
        worker.handle(
            request(worker, app, "make_invoice", {"amount": 1, "expiry": 0}), time.time()
        ),
    )["result"]
    assert made["expires_at"] - made["created_at"] == 86400
    assert reference.decode(made["invoice"]).expiry == 86400
    for n in range(2):
        request_ = request(worker, app, "make_invoice", {"amount": 2 + n})
        worker.handle(request_, time.time())
    listed = answer(
        app,
        worker,
        worker.handle(
            request(worker, app, "list_transactions", {"limit": 0, "unpaid": True}), time.time()
        ),
    )["result"]["transactions"]
    assert len(listed) == 3


def test_metadata_that_is_not_an_object_is_refused_and_mints_nothing(worker: NwcWorker) -> None:
    """NIP-47's `metadata` is an object; one of another type was dropped
    without a word while every other parameter of the wrong type is `OTHER`.
    (One over NIP-47's 4096 characters is dropped, as NIP-47 says it MUST be.)"""
    worker.limiter = RateLimiter()
    app = app_keys(worker, "invoices:create")
    for bad in ("a note", ["a", "b"], 5, True):
        body = answer(
            app,
            worker,
            worker.handle(
                request(worker, app, "make_invoice", {"amount": 1, "metadata": bad}), time.time()
            ),
        )
        assert body["error"]["code"] == "OTHER", bad
        assert "metadata" in body["error"]["message"]
    assert minted(worker) == 0
    big = {"note": "x" * 5000}
    body = answer(
        app,
        worker,
        worker.handle(
            request(worker, app, "make_invoice", {"amount": 1, "metadata": big}), time.time()
        ),
    )
    assert body.get("error") is None, body
    assert "note" not in body["result"].get("metadata", {})
    stored = worker.store.conn.execute("SELECT metadata FROM invoices").fetchall()
    assert [tuple(row) for row in stored] == [(None,)]  # minted, its metadata dropped


def test_a_spare_taken_by_a_connection_gets_a_newer_info_event_offering_its_scopes(
    worker: NwcWorker,
) -> None:
    """The spare's info event (all the wallet offers) may date from this very
    second; NIP-01 keeps the lower id of two replaceable events of one
    second, so the connection's own one is dated after it, or a relay could
    keep offering `make_invoice` to a read-only app."""
    pubkey = db.wallet_keys(worker.store.conn)[0][0]  # no connection yet: a spare
    spare = worker.wallet.get(pubkey)
    assert spare is not None and worker.wallet.scopes(pubkey) is None
    before = json.loads(worker._info(spare).json)
    assert "make_invoice" in before["content"].split()
    with worker.store.transaction() as tx:  # the spare taken, as `connect` takes the oldest
        while (taken := db.take_spare(tx)) and taken[0] != pubkey:
            pass
        db.create(tx, "ab" * 32, ["invoices:read"], "reader", taken)
    worker.wallet.take_up()
    after = json.loads(worker._info(spare).json)
    assert after["content"].split() == [
        "get_info",
        "lookup_invoice",
        "list_transactions",
        "notifications",
    ]
    assert after["created_at"] > before["created_at"]
    again = json.loads(worker._info(spare).json)  # unchanged: dated now, as before
    assert again["content"] == after["content"] and again["created_at"] >= after["created_at"]
