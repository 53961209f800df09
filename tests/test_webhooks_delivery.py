"""At-least-once delivery over real HTTP: retries keep the webhook-id, a
SIGKILL mid-delivery does not lose the event, the SSRF guard refuses
loopback without the allow-list, and dead letters can be redelivered, to
endpoints and to an invoice's own `webhook` URL alike; a redeliver made while
an attempt is still open is sent once more after it, never alongside."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from lnplugin import handout, wakeloop, webhooks
from lnplugin import hub as hub_module
from lnplugin.store import Store, events
from lnplugin.store import webhooks as db
from tests.helpers_store import invoice_by_id, open_invoice
from tests.helpers_webhooks import Receiver, Server, run_cli, wait_for

ALLOW = {"LNPLUGIN_WEBHOOK_ALLOW": "127.0.0.0/8", "LNPLUGIN_WEBHOOK_RETRY_SCHEDULE": "0,0,0,0"}
CREATED, SETTLED = "invoice.incoming.created", "invoice.incoming.settled"


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.close()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("delivery"), ALLOW).start()
    yield srv
    srv.stop()


@pytest.fixture()
def server(shared: Server) -> Iterator[Server]:
    """The shared server, with each test's endpoints removed afterwards."""
    yield shared
    for endpoint in shared.call("GET", "/webhook_endpoints").json():
        shared.call("DELETE", f"/webhook_endpoints/{endpoint['id']}")


def _settled_event(server: Server, receiver: Receiver, path: str) -> tuple[dict, str]:
    endpoint = server.add_endpoint(receiver.url(path))
    invoice = server.create_invoice()
    server.pay(invoice["payment_hash"])
    return endpoint, invoice["payment_hash"]


def test_retries_reuse_the_webhook_id_and_are_accepted_once(
    server: Server, receiver: Receiver
) -> None:
    receiver.script["/flaky"] = [500, 500, 500, 200]
    endpoint, payment_hash = _settled_event(server, receiver, "/flaky")
    attempts = wait_for(
        lambda: (
            [r for r in receiver.of_type("invoice.incoming.settled", payment_hash)]
            if len(receiver.received) >= 4
            else None
        )
    )
    ids = {r.headers["webhook-id"] for r in attempts}
    assert len(attempts) == 4 and len(ids) == 1
    [event_id] = ids
    assert list(receiver.accepted) == [event_id]
    delivery = wait_for(
        lambda: (
            (d := server.delivery(endpoint["id"], event_id)) and d["status"] == "delivered" and d
        )
    )
    assert delivery["attempts"] == 4
    assert delivery["last_status_code"] == 200
    assert delivery["next_attempt_at"] is None


def test_dead_letter_stays_visible_and_can_be_redelivered(
    server: Server, receiver: Receiver
) -> None:
    receiver.script["/down"] = [503]
    endpoint, payment_hash = _settled_event(server, receiver, "/down")
    # 1 attempt + 4 retries (the schedule has four entries), then dead-lettered.
    dead = wait_for(
        lambda: [d for d in server.deliveries(endpoint["id"]) if d["status"] == "failed"]
    )
    assert dead[0]["attempts"] == 5
    assert dead[0]["last_status_code"] == 503
    assert dead[0]["next_attempt_at"] is None
    event_id = dead[0]["event_id"]
    assert len(receiver.for_event(event_id)) == 5
    assert receiver.accepted == {}

    receiver.script["/down"] = [200]
    reply = server.call(
        "POST", f"/webhook_endpoints/{endpoint['id']}/deliveries/{event_id}/redeliver"
    )
    assert reply.status_code == 202
    done = wait_for(
        lambda: (
            (d := server.delivery(endpoint["id"], event_id)) and d["status"] == "delivered" and d
        )
    )
    assert done["attempts"] == 6
    assert list(receiver.accepted) == [event_id]
    assert receiver.accepted[event_id].json["data"]["payment_hash"] == payment_hash


def test_test_event_is_delivered(server: Server, receiver: Receiver) -> None:
    endpoint = server.add_endpoint(receiver.url("/t"))
    reply = server.call("POST", f"/webhook_endpoints/{endpoint['id']}/test")
    assert reply.status_code == 202
    event_id = reply.json()["event_id"]
    [got] = wait_for(lambda: receiver.for_event(event_id))
    assert got.json["type"] == "webhook.test"


def test_deleted_endpoint_receives_nothing_more(server: Server, receiver: Receiver) -> None:
    endpoint = server.add_endpoint(receiver.url("/gone"))
    assert server.call("DELETE", f"/webhook_endpoints/{endpoint['id']}").status_code == 200
    other = server.add_endpoint(receiver.url("/still"))
    invoice = server.create_invoice()
    server.pay(invoice["payment_hash"])
    wait_for(lambda: server.deliveries(other["id"]) and receiver.accepted)
    assert [r.path for r in receiver.received] == ["/still"]


def test_a_receiver_that_never_answers_does_not_hold_up_another_endpoint(
    server: Server, receiver: Receiver
) -> None:
    """Twelve events go to a receiver that never answers and to one that
    does. The stalled one may have at most half of the 8 senders, so every
    delivery to the other goes out while the stalled attempts are still
    open (none of them has an outcome yet), not after they time out."""
    receiver.stall.add("/stalled")
    stalled = server.add_endpoint(receiver.url("/stalled"), [CREATED])
    healthy = server.add_endpoint(receiver.url("/healthy"), [CREATED])
    events = [server.create_invoice()["payment_hash"] for _ in range(12)]

    def healthy_done() -> bool:
        rows = server.deliveries(healthy["id"])
        return len(rows) == len(events) and all(d["status"] == "delivered" for d in rows)

    wait_for(healthy_done)
    assert [d["attempts"] for d in server.deliveries(stalled["id"])] == [0] * len(events)
    assert receiver.most_stalled == webhooks.SENDERS // 2
    receiver.release.set()


def test_sigkill_mid_delivery_then_restart_still_delivers(
    tmp_path_factory: pytest.TempPathFactory, receiver: Receiver
) -> None:
    server = Server(tmp_path_factory.mktemp("crash"), ALLOW).start()
    try:
        receiver.hold.add("/slow")
        endpoint, payment_hash = _settled_event(server, receiver, "/slow")
        assert receiver.held.wait(15), "the first attempt never arrived"
        server.kill()  # while the receiver still holds the request open
        receiver.release.set()
        [first] = receiver.of_type("invoice.incoming.settled", payment_hash)
        event_id = first.headers["webhook-id"]

        server.start()
        wait_for(lambda: len(receiver.for_event(event_id)) >= 2)
        assert {r.headers["webhook-id"] for r in receiver.for_event(event_id)} == {event_id}
        delivery = wait_for(
            lambda: (
                (d := server.delivery(endpoint["id"], event_id))
                and d["status"] == "delivered"
                and d
            )
        )
        assert delivery["last_status_code"] == 200
    finally:
        server.stop()


def test_loopback_refused_without_allow_list(
    tmp_path_factory: pytest.TempPathFactory, receiver: Receiver
) -> None:
    env = {"LNPLUGIN_WEBHOOK_ALLOW": "", "LNPLUGIN_WEBHOOK_RETRY_SCHEDULE": "0"}
    server = Server(tmp_path_factory.mktemp("noallow"), env).start()
    try:
        # An IP literal is refused when the endpoint is created...
        reply = server.call(
            "POST",
            "/webhook_endpoints",
            json={"url": receiver.url("/x"), "filter_types": ["invoice.incoming.settled"]},
        )
        assert reply.status_code == 400
        assert "loopback" in reply.json()["errors"]["url"]
        # ...as is an invoice's own `webhook` URL, by the same check...
        reply = server.call(
            "POST", "/invoices", json={"amount": 10, "webhook": receiver.url("/per-invoice")}
        )
        assert reply.status_code == 400
        assert "loopback" in reply.json()["errors"]["webhook"]
        # ...and a hostname that resolves to loopback is refused at delivery.
        port = receiver.url().split(":")[2].split("/")[0]
        endpoint = server.add_endpoint(f"http://localhost:{port}/x")
        invoice = server.create_invoice(webhook=f"http://localhost:{port}/per-invoice")
        server.pay(invoice["payment_hash"])
        [dead] = wait_for(
            lambda: [d for d in server.deliveries(endpoint["id"]) if d["status"] == "failed"]
        )
        assert "refused" in dead["last_error"] and "loopback" in dead["last_error"]
        assert dead["last_status_code"] is None
        own = server.wait_invoice_delivery(invoice["payment_hash"], SETTLED, "failed")
        assert "refused" in own["last_error"] and "loopback" in own["last_error"]
        assert receiver.received == []
    finally:
        server.stop()


def test_invoice_webhook_deliveries_are_listed_under_the_invoice(
    server: Server, receiver: Receiver
) -> None:
    receiver.script["/inv"] = [500, 200]
    invoice = server.create_invoice(webhook=receiver.url("/inv"))
    payment_hash = invoice["payment_hash"]
    server.pay(payment_hash)

    def both_delivered() -> dict | None:
        rows = server.invoice_deliveries(payment_hash)
        return (
            rows
            if len(rows) == 2 and {"delivered"} == {d["status"] for d in rows.values()}
            else None
        )

    rows = wait_for(both_delivered)
    assert set(rows) == {CREATED, SETTLED}
    # One of them got the 500 and was retried.
    assert sorted(d["attempts"] for d in rows.values()) == [1, 2]
    settled = rows[SETTLED]
    assert settled["last_status_code"] == 200 and settled["next_attempt_at"] is None
    assert settled["event_id"] in receiver.accepted
    # Same shape as an endpoint's deliveries.
    endpoint = server.add_endpoint(receiver.url("/ep"))
    server.call("POST", f"/webhook_endpoints/{endpoint['id']}/test")
    [listed] = wait_for(lambda: server.deliveries(endpoint["id"]))
    assert set(listed) == set(settled)
    # An invoice without a webhook URL has none.
    other = server.create_invoice()
    assert server.call("GET", f"/invoices/{other['payment_hash']}/deliveries").json() == []


def _redeliver_invoice_event(server: Server, payment_hash: str, event_id: str) -> dict:
    reply = server.call("POST", f"/invoices/{payment_hash}/deliveries/{event_id}/redeliver")
    assert reply.status_code == 202, reply.text
    queued = dict(reply.json())
    assert queued["event_id"] == event_id and queued["status"] == "pending"
    return queued


def test_invoice_webhook_delivery_is_redelivered_with_the_same_webhook_id(
    server: Server, receiver: Receiver
) -> None:
    invoice = server.create_invoice(webhook=receiver.url("/again"))
    payment_hash = invoice["payment_hash"]
    server.pay(payment_hash)
    first = server.wait_invoice_delivery(payment_hash, SETTLED, "delivered")
    event_id = first["event_id"]
    [original] = receiver.for_event(event_id)

    queued = _redeliver_invoice_event(server, payment_hash, event_id)
    assert set(queued) == set(first)  # the same delivery object the list shows
    _, again = wait_for(lambda: len(got := receiver.for_event(event_id)) == 2 and got)
    assert again.path == "/again"
    assert again.headers["webhook-id"] == original.headers["webhook-id"] == event_id
    assert again.body == original.body
    # Signed, like every invoice delivery, with the service-wide secret.
    secret = run_cli("webhook-secret", data_dir=server.data_dir).strip().splitlines()[-1]
    assert Webhook(secret).verify(again.body, again.headers)["data"]["payment_hash"] == payment_hash
    done = wait_for(
        lambda: (d := server.invoice_deliveries(payment_hash)[SETTLED])["attempts"] == 2 and d
    )
    assert done["status"] == "delivered" and done["last_status_code"] == 200
    # Only the event asked for was sent again.
    created = server.invoice_deliveries(payment_hash)[CREATED]
    assert len(receiver.for_event(created["event_id"])) == created["attempts"] == 1


def test_dead_lettered_invoice_delivery_is_redelivered_with_a_fresh_budget(
    server: Server, receiver: Receiver
) -> None:
    receiver.script["/inv-down"] = [503]
    invoice = server.create_invoice(webhook=receiver.url("/inv-down"))
    payment_hash = invoice["payment_hash"]
    server.pay(payment_hash)
    server.wait_invoice_delivery(payment_hash, CREATED, "failed")
    dead = server.wait_invoice_delivery(payment_hash, SETTLED, "failed")
    # 1 attempt + 4 retries (the schedule has four entries), then dead-lettered.
    assert dead["attempts"] == 5 and dead["next_attempt_at"] is None
    event_id = dead["event_id"]
    assert len(receiver.for_event(event_id)) == 5
    assert receiver.accepted == {}

    # A fresh retry budget: the first new attempt fails and is retried, where
    # the exhausted budget would have dead-lettered it at once.
    receiver.script["/inv-down"] = [503, 200]
    _redeliver_invoice_event(server, payment_hash, event_id)
    done = server.wait_invoice_delivery(payment_hash, SETTLED, "delivered")
    assert done["attempts"] == 7 and done["last_status_code"] == 200
    assert list(receiver.accepted) == [event_id]
    assert {r.headers["webhook-id"] for r in receiver.for_event(event_id)} == {event_id}
    assert receiver.accepted[event_id].json["data"]["payment_hash"] == payment_hash
    # The created event, dead-lettered too, was not asked for and stays so.
    assert server.invoice_deliveries(payment_hash)[CREATED]["status"] == "failed"


@pytest.mark.parametrize("target", ["endpoint", "invoice"])
def test_redeliver_during_an_attempt_sends_once_more_after_it(
    server: Server, receiver: Receiver, target: str
) -> None:
    """The receiver holds the first attempt open until the redeliver has been
    accepted; that attempt's outcome must not overwrite the redeliver, and the
    second attempt must wait for the first to be answered."""
    path = f"/busy-{target}"
    receiver.hold.add(path)
    if target == "endpoint":
        endpoint = server.add_endpoint(receiver.url(path), [CREATED])
        server.create_invoice()
    else:
        payment_hash = server.create_invoice(webhook=receiver.url(path))["payment_hash"]
    assert receiver.held.wait(15), "the first attempt never arrived"
    [first] = receiver.received
    event_id = first.headers["webhook-id"]
    if target == "endpoint":
        route = f"/webhook_endpoints/{endpoint['id']}/deliveries/{event_id}/redeliver"

        def row() -> dict | None:
            return server.delivery(endpoint["id"], event_id)
    else:
        route = f"/invoices/{payment_hash}/deliveries/{event_id}/redeliver"

        def row() -> dict | None:
            return server.invoice_deliveries(payment_hash).get(CREATED)

    reply = server.call("POST", route)  # the first attempt is still open
    assert reply.status_code == 202, reply.text
    assert reply.json()["status"] == "pending" and reply.json()["attempts"] == 0
    receiver.release.set()

    recorded = wait_for(lambda: (d := row()) and d["attempts"] >= 1 and d)
    lost = recorded["attempts"] == 1 and recorded["status"] != "pending"
    assert not lost, f"the first attempt's outcome overwrote the redeliver: {recorded}"
    done = wait_for(
        lambda: (d := row()) and d["attempts"] == 2 and d["status"] == "delivered" and d
    )
    assert done["last_status_code"] == 200 and done["next_attempt_at"] is None
    again = receiver.for_event(event_id)
    assert [r.path for r in again] == [path, path]
    assert again[1].headers["webhook-id"] == event_id and again[1].body == first.body
    assert receiver.overlapped == []
    assert list(receiver.accepted) == [event_id]


@pytest.mark.parametrize(
    ("ok", "retry_in"), [(True, None), (False, 5.0), (False, None)], ids=["ok", "retry", "dead"]
)
def test_an_attempt_does_not_overwrite_a_redeliver_made_during_it(
    tmp_path: Path, ok: bool, retry_in: float | None
) -> None:
    """Whatever the attempt's outcome (delivered, retry later, dead-lettered),
    the redeliver's reset stands and the row is due again; the attempt itself
    is still counted and its answer shown."""
    store = Store(tmp_path / "db.sqlite")
    try:
        with store.transaction() as tx:
            ep = db.create_endpoint(tx, "https://shop.example/hook", None, [CREATED])
            db.add_test_delivery(tx, ep, "evt_race", "{}")
        [dispatched] = db.due(store.conn, time.time(), (), 8)  # the attempt starts
        with store.transaction() as tx:
            queued = db.redeliver(tx, ep, "evt_race")  # accepted while it runs
        assert queued is not None and queued["generation"] == dispatched["generation"] + 1
        code = 200 if ok else 503
        with store.transaction() as tx:
            decided = db.record_attempt(
                tx,
                dispatched["id"],
                dispatched["generation"],
                ok=ok,
                status_code=code,
                error=None if ok else "HTTP 503",
                retry_in=retry_in,
            )
        assert decided is False
        row = db.delivery(store.conn, ep["id"], "evt_race")
        assert row is not None
        assert row["status"] == "pending" and row["retry_index"] == 0
        assert row["next_attempt_at"] == queued["next_attempt_at"]
        assert row["attempts"] == 1 and row["last_status_code"] == code
        assert row["last_attempt_at"] is not None
        assert (row["delivered_at"] is not None) is ok

        [again] = db.due(store.conn, time.time(), (), 8)  # the redeliver's own attempt
        with store.transaction() as tx:
            assert db.record_attempt(
                tx,
                again["id"],
                again["generation"],
                ok=True,
                status_code=200,
                error=None,
                retry_in=None,
            )
        row = db.delivery(store.conn, ep["id"], "evt_race")
        assert row is not None
        assert row["status"] == "delivered" and row["attempts"] == 2
        assert db.due(store.conn, time.time(), (), 8) == []
    finally:
        store.close()


def test_stop_wakes_the_worker_and_the_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both wait on store commits; stop() must wake them rather than leave them
    asleep until their idle timeout (made an hour here, so a missed wake-up
    would outlast the join and fail the test)."""
    monkeypatch.setattr(wakeloop, "IDLE_WAIT", 3600.0)
    monkeypatch.setattr(hub_module, "IDLE_WAIT", 3600.0)
    store = Store(tmp_path / "db.sqlite")
    try:
        for _ in range(3):  # repeat: a wake-up must not depend on where a thread was
            worker = webhooks.DeliveryWorker(store)
            hub = hub_module.EventHub(store)
            worker.start()
            hub.start()
            with store.transaction():
                pass  # one commit, so both threads go round their loop once
            worker.stop(timeout=30)
            hub.stop(timeout=30)
            assert not worker.running
            assert hub._thread is not None and not hub._thread.is_alive()
    finally:
        store.close()


def test_the_worker_is_woken_by_what_its_endpoints_and_invoice_webhooks_take(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server with no endpoint taking `invoice.incoming.created` is not
    woken by each invoice created; an endpoint added while it runs, and an
    invoice with its own webhook URL, wake it. The idle timeout is an hour
    here, so a missed wake-up leaves the delivery unmade and fails the test."""
    monkeypatch.setattr(wakeloop, "IDLE_WAIT", 3600.0)
    store = Store(tmp_path / "db.sqlite")
    worker = webhooks.DeliveryWorker(store, allow=["127.0.0.0/8"])
    worker.start()
    try:
        hooked_types = {events.HAS_INVOICE_WEBHOOK}
        assert store._listeners[worker._loop._wake] == frozenset(hooked_types)

        with store.transaction() as tx:
            ep = db.create_endpoint(tx, "http://127.0.0.1:9/hook", None, [SETTLED])
        wait_for(
            lambda: store._listeners[worker._loop._wake] == frozenset({SETTLED, *hooked_types})
        )
        plain, hooked = (open_invoice(store, h) for h in ("01" * 32, "02" * 32))
        with store.transaction() as tx:
            tx.execute(
                "UPDATE invoices SET webhook_url = 'http://127.0.0.1:9/own' WHERE id = ?", (hooked,)
            )
        with store.transaction() as tx:
            settled = events.append(tx, SETTLED, invoice_by_id(tx, plain))
        assert wait_for(lambda: db.deliveries(store.conn, ep["id"]))[0]["event_seq"] == settled
        with store.transaction() as tx:
            created = events.append(tx, CREATED, invoice_by_id(tx, hooked))
        own = wait_for(lambda: db.invoice_deliveries(store.conn, hooked))
        assert [d["event_seq"] for d in own] == [created]
    finally:
        worker.stop()
        store.close()


def _stored_delivery(store: Store, url: str) -> tuple[str, str]:
    """A test delivery to `url`, written straight into the store, as a URL
    stored before validation was tightened would be: (endpoint id, event id)."""
    with store.transaction() as tx:
        ep = db.create_endpoint(tx, url, None, [CREATED])
        db.add_test_delivery(tx, ep, "evt_raises", "{}")
    return ep["id"], "evt_raises"


# Each of these makes the sender raise (not return a failed outcome):
# urlsplit's port check, and the resolver's IDNA encoding of the host.
RAISING_URLS = [
    pytest.param("http://localhost:99999/x", "Port out of range", id="port"),
    pytest.param(f"http://{'a' * 64}.example/x", "label", id="long-label"),
    pytest.param("http://a..b/x", "label", id="empty-label"),
]


@pytest.mark.parametrize(("url", "reason"), RAISING_URLS)
def test_a_send_that_raises_is_a_failed_attempt_on_the_schedule(
    tmp_path: Path, url: str, reason: str
) -> None:
    """Recorded with its reason and retried after the schedule's delay (with
    jitter), not re-dispatched at once: the row's attempt count and due time
    say which."""
    store = Store(tmp_path / "db.sqlite")
    worker = webhooks.DeliveryWorker(store, schedule=(3600, 3600))
    try:
        endpoint_id, event_id = _stored_delivery(store, url)
        before = time.time()
        worker.start()
        row = wait_for(
            lambda: (r := db.delivery(store.conn, endpoint_id, event_id)) and r["attempts"] and r
        )
        assert row["attempts"] == 1 and row["retry_index"] == 1
        assert row["status"] == "pending" and row["last_status_code"] is None
        assert reason in row["last_error"]
        low, high = 3600 * (1 - handout.JITTER), 3600 * (1 + handout.JITTER)
        assert before + low <= row["next_attempt_at"] <= time.time() + high
    finally:
        worker.stop()
        store.close()


@pytest.mark.parametrize(("url", "reason"), RAISING_URLS[:1])
def test_a_send_that_raises_is_dead_lettered_after_the_last_retry(
    tmp_path: Path, url: str, reason: str
) -> None:
    store = Store(tmp_path / "db.sqlite")
    worker = webhooks.DeliveryWorker(store, schedule=(0, 0))
    try:
        endpoint_id, event_id = _stored_delivery(store, url)
        worker.start()
        row = wait_for(
            lambda: (
                (r := db.delivery(store.conn, endpoint_id, event_id))
                and r["status"] == "failed"
                and r
            )
        )
        # 1 attempt + 2 retries, then the dead letter: no more, however long it runs.
        assert row["attempts"] == 3 and row["next_attempt_at"] is None
        assert reason in row["last_error"]
    finally:
        worker.stop()
        store.close()


def test_an_attempt_whose_outcome_cannot_be_recorded_is_not_resent_at_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A database that refuses the write (here a real SQLite trigger) leaves
    the row due; the worker parks it instead of POSTing it again on its next
    pass. Driven step by step, so the second pass is a fact, not a wait."""
    store = Store(tmp_path / "db.sqlite")
    worker = webhooks.DeliveryWorker(store, allow=("127.0.0.0/8",), schedule=(0,))
    try:
        _stored_delivery(store, receiver.url("/parked"))
        with store.transaction() as tx:
            tx.execute(
                "CREATE TRIGGER no_outcomes BEFORE UPDATE ON webhook_deliveries"
                " BEGIN SELECT RAISE(ABORT, 'disk full'); END"
            )
        worker.step()
        wait_for(lambda: receiver.received and not worker._handout.out)
        worker.step()  # the row is still due in the database
        worker._pool.shutdown()  # whatever the second pass dispatched has run
        assert [r.path for r in receiver.received] == ["/parked"]
        assert db.next_due_at(store.conn) is not None  # still pending, due
    finally:
        worker.stop()
        store.close()


@pytest.mark.parametrize(
    ("url", "logged"),
    [
        ("https://shop.example/hook?token=secret", "https://shop.example"),
        ("http://[::1]:8080/x", "http://[::1]"),
        ("http://[2606:4700::1111]/hook", "http://[2606:4700::1111]"),
    ],
)
def test_a_target_is_logged_as_scheme_and_host_only(url: str, logged: str) -> None:
    """Paths and queries may carry the receiver's own tokens; an IPv6 host
    keeps its brackets, so the line names a URL a reader can use."""
    from lnplugin.webhooks import _origin

    assert _origin(url) == logged
