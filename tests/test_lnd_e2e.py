"""`lnplugin serve --node lnd` as a real process against the LND simulator.

The simulator is a real gRPC server over TLS in this process that checks
macaroons; lnplugin reaches it exactly as it reaches lnd, and the tests talk
HTTP to lnplugin. Waits are liveness bounds, never timing assertions.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from lnplugin.nodes.lnd.rpc import lightning_pb2 as ln
from lnplugin_sim.lnd_sim import LndSim
from tests import e2e
from tests.e2e import BOOST, BOOST_BYTES, CHAT, Api, Server, wait_for
from tests.helpers_present import present

# The shared fixtures: `tmp`, a short directory under /tmp, and `api`, a client for `server`.
tmp = e2e.fixture_tmp
api = e2e.fixture_api


# lnd's bbolt store replays the settle backlog by settle_index, its native SQL
# store by add_index: the restart, drop and outage tests run against both.
BOTH_ORDERS = pytest.mark.parametrize("sim", ["settle", "add"], indirect=True)


@pytest.fixture
def sim(tmp: Path, request: pytest.FixtureRequest) -> Iterator[LndSim]:
    order = getattr(request, "param", "settle")
    with LndSim(tmp / "lnd", network="regtest", port=0, replay_order=order) as s:
        yield s


def serve_args(sim: LndSim, macaroon: Path | None = None, network: str = "regtest") -> list[str]:
    """The flags an operator passes to point lnplugin at lnd."""
    return [
        "--node", "lnd", "--network", network, "--lnd-host", sim.target,
        "--lnd-cert", str(sim.cert_path),
        "--lnd-macaroon", str(macaroon or sim.admin_macaroon_path),
    ]  # fmt: skip


def _serve(tmp: Path, sim: LndSim, macaroon: Path | None = None) -> Server:
    return Server(tmp / "data", *serve_args(sim, macaroon))


@pytest.fixture
def server(tmp: Path, sim: LndSim) -> Iterator[Server]:
    with _serve(tmp, sim) as running:
        yield running


def test_create_pay_and_see_the_settlement(server: Server, sim: LndSim, api: Api) -> None:
    e2e.create_pay_and_see_the_settlement(api, "lnd", sim.pay_invoice)


def test_requests_go_on_while_calls_to_a_slow_lnd_wait(server: Server, sim: LndSim) -> None:
    """An lnd slow to answer (busy, or across a congested link) holds the
    requests that wait on it, and those alone: four creates are in flight
    on lnd at once, and reads are answered meanwhile. lnplugin's worker pool
    runs quick requests one after another on one thread, so this is what
    tells a request waiting on the node from one still running Python."""

    def create(n: int) -> requests.Response:
        return requests.post(
            server.url + "/invoices",
            json={"amount": 10 + n, "description": f"slow {n}"},
            headers={"Authorization": f"Bearer {server.token}"},
            timeout=e2e.WAIT,
        )

    with ThreadPoolExecutor(4) as pool:
        with sim.faults.stall("AddInvoice"):
            creates = [pool.submit(create, n) for n in range(4)]
            wait_for(lambda: sim.faults.stalled == 4, "four creates waiting on lnd at once")
            api = Api(server.url, server.token or "")
            assert api.get("/health")["status"] == "ok"
            assert api.get("/invoices") == []  # nothing made yet, and the list answers
            api.close()
            assert not any(c.done() for c in creates)  # still waiting on lnd
        made = [c.result(timeout=e2e.WAIT) for c in creates]
    assert [r.status_code for r in made] == [201] * 4, [r.text for r in made]
    assert sorted(r.json()["amount"] for r in made) == [10, 11, 12, 13]


def test_keysend_boostagram_and_message(server: Server, sim: LndSim, api: Api) -> None:
    sent = sim.keysend(21_000, {7629169: BOOST_BYTES, 34349334: CHAT})
    payment_hash = sent.r_hash.hex()
    got = wait_for(lambda: api.incoming(payment_hash), "the keysend")
    assert got["is_keysend"] is True and got["amount_received_msat"] == 21_000
    boost = got["boostagram"]
    assert boost["podcast"] == BOOST["podcast"] and boost["message"] == BOOST["message"]
    assert boost["sender_name"] == BOOST["sender_name"]
    assert got["keysend_message"] == CHAT.decode()


def test_amp_boost_is_stored_with_its_boostagram(server: Server, sim: LndSim, api: Api) -> None:
    """A spontaneous AMP payment (a podcast app's boost to a value block with
    method "amp"): stored as its own settled keysend-like row, keyed by its
    set id, with the boostagram of its HTLCs' records and exactly one
    settled event, as a keysend boost is."""
    sent = sim.amp_payment(21_000, {7629169: BOOST_BYTES, 34349334: CHAT}, parts=2)
    (set_id,) = sent.amp_invoice_state
    got = wait_for(lambda: api.incoming(set_id), "the AMP boost")
    assert got["is_keysend"] is True and got["amount_received_msat"] == 21_000
    assert got["settled"] is True and got["preimage"] is None
    settle_time = sent.amp_invoice_state[set_id].settle_time
    assert got["settled_at"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(settle_time))
    boost = got["boostagram"]
    assert boost["podcast"] == BOOST["podcast"] and boost["message"] == BOOST["message"]
    assert got["keysend_message"] == CHAT.decode()
    assert present(api.settled(set_id))["payment_hash"] == set_id
    kinds = e2e.scalar(
        server.data_dir,
        "SELECT COUNT(*) FROM events WHERE payment_hash = ? AND type = ?",
        set_id,
        "invoice.incoming.settled",
    )
    assert kinds == (1,)


def test_invoice_made_on_the_node_appears(server: Server, sim: LndSim, api: Api) -> None:
    made = sim.create_invoice(77_000, memo="lncli addinvoice")
    sim.pay_invoice(made.r_hash)
    got = wait_for(lambda: api.incoming(made.r_hash.hex()), "the outside invoice")
    assert got["description"] == "lncli addinvoice" and got["amount_received_msat"] == 77_000
    assert got["payment_request"] == made.payment_request


def test_outgoing_payment_appears_after_restart(tmp: Path, sim: LndSim) -> None:
    with _serve(tmp, sim) as server:
        assert server.token
        token = server.token
        api = Api(server.url, token)
        assert api.get("/invoices/outgoing") == []
        api.close()
    dest = "02" + "cd" * 32
    paid = sim.make_payment(12_000, fee_msat=7, destination=dest, custom_records={7629169: b"{}"})
    sim.make_payment(5_000, status="FAILED")  # never listed
    with _serve(tmp, sim) as server:  # the startup sweep fetches the history
        api = Api(server.url, token)
        out = wait_for(lambda: api.get("/invoices/outgoing"), "the outgoing payment")
        api.close()
    assert len(out) == 1
    assert out[0]["payment_hash"] == paid.payment_hash and out[0]["type"] == "outgoing"
    assert out[0]["amount_msat"] == 12_000 and out[0]["fee_msat"] == 7
    assert out[0]["destination"] == dest and out[0]["preimage"] == paid.payment_preimage


def test_network_mismatch_refuses_to_start(tmp: Path, sim: LndSim) -> None:
    proc = e2e.run(tmp / "data", "serve", "--port", "0", *serve_args(sim, network="bitcoin"))
    assert proc.returncode == 2
    [error] = proc.stderr.splitlines()  # the only line, before anything else is logged
    assert error.startswith("Error: ") and "regtest" in error and "bitcoin" in error


def test_a_certificate_lnd_does_not_present_refuses_to_start(tmp: Path, sim: LndSim) -> None:
    """A tls.cert from another lnd (or one lnd has since replaced): exit 2
    with one line naming the setting, not a server that retries forever
    while gRPC writes a line per handshake."""
    with LndSim(tmp / "other", network="regtest") as other:
        args = serve_args(sim)
        args[args.index("--lnd-cert") + 1] = str(other.cert_path)
        proc = e2e.run(tmp / "data", "serve", "--port", "0", *args)
    assert proc.returncode == 2
    [error] = proc.stderr.splitlines()
    assert error.startswith("Error: invalid setting lnd_cert (--lnd-cert / LNPLUGIN_LND_CERT)")
    assert f"does not match {other.cert_path}: self signed certificate;" in error
    assert proc.stdout == ""  # no address, no token: it never served


def test_a_forgotten_lnd_cert_is_named_as_missing(tmp: Path, sim: LndSim) -> None:
    """Without --lnd-cert lnd's self-signed certificate is checked against the
    system's CAs and refused: the one line says no certificate was given,
    not that lnd does not match one."""
    args = serve_args(sim)
    del args[args.index("--lnd-cert") : args.index("--lnd-cert") + 2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LNPLUGIN_")}
    proc = e2e.run(tmp / "data", "serve", "--port", "0", *args, env=env)
    assert proc.returncode == 2
    [error] = proc.stderr.splitlines()
    assert error.startswith("Error: invalid setting lnd_cert (--lnd-cert / LNPLUGIN_LND_CERT)")
    assert "none is given" in error and "self signed certificate" in error
    assert "does not match" not in error and "regenerated" not in error


@BOTH_ORDERS
def test_node_down_create_503_reads_work(server: Server, sim: LndSim, api: Api) -> None:
    created = api.post("/invoices", {"amount": 10, "description": "before"})
    sim.stop()
    try:
        reply = server.request("POST", "/invoices", json={"amount": 10, "description": "x"})
        assert reply.status_code == 503
        assert "unreachable" in reply.json()["message"].lower()
        assert server.request("GET", f"/invoices/{created['payment_hash']}").status_code == 200
        assert server.request("GET", "/invoices/incoming").status_code == 200
        # /info does not show the node as it was before it went away.
        wait_for(
            lambda: server.request("GET", "/info").json()["node"]["reachable"] is False or None,
            "/info to see the node gone",
        )
    finally:
        sim.start()
    # Back up: creation works again and the follower reconnects on its own.
    again = wait_for(
        lambda: (
            (
                r := server.request(
                    "POST", "/invoices", json={"amount": 10, "description": "after"}
                )
            ).status_code
            == 201
            and r.json()
        ),
        "node back",
    )
    sim.pay_invoice(again["payment_hash"])
    wait_for(lambda: api.settled(again["payment_hash"]), "settlement after reconnect")


def _column(data: Path, column: str, payment_hash: str) -> Any:
    """One column of the stored incoming invoice `payment_hash`."""
    sql = f"SELECT {column} FROM invoices WHERE type = 'incoming' AND payment_hash = ?"
    return e2e.scalar(data, sql, payment_hash)[0]


def test_an_invoice_paid_while_lnplugin_was_down_never_expires(tmp: Path, sim: LndSim) -> None:
    """Paid on lnd while lnplugin was down, and its expiry passed before
    lnplugin was back: it is settled, once, and never `expired` (whose
    webhook would tell a shop to give up on an order that was paid). The
    feed is held back at the restart (lnd slow to list), so the expiry tick
    comes first, as it does after any outage long enough to outlast it."""
    data = tmp / "data"
    with _serve(tmp, sim) as server:
        assert server.token
        token = server.token
        api = Api(server.url, token)
        # 5 s: time enough to pay it on a busy machine before lnd's expiry.
        created = api.post("/invoices", {"amount": 21, "description": "paid", "expiry": 5})
        api.close()
        server.stop(signal.SIGKILL)
    payment_hash = created["payment_hash"]
    sim.pay_invoice(created["payment_request"])
    expires_at = _column(data, "expires_at", payment_hash)
    wait_for(lambda: time.time() > expires_at + 1, "the invoice's expiry to pass")
    server = _serve(tmp, sim)
    try:
        with sim.faults.stall("ListInvoices"):  # the feed waits until the block ends
            server.start()
            state = wait_for(
                lambda: (s := _column(data, "state", payment_hash)) != "OPEN" and s,
                "the expiry tick to decide",
            )
        api = Api(server.url, token)
        got = wait_for(lambda: api.settled(payment_hash), "the settlement")
        api.close()
    finally:
        server.stop()
    stored = e2e.db(data)
    try:
        kinds = stored.execute(
            "SELECT type FROM events WHERE payment_hash = ? ORDER BY seq", (payment_hash,)
        ).fetchall()
    finally:
        stored.close()
    assert state == "SETTLED"
    assert got["amount_received_msat"] == 21_000 and got["state"] == "SETTLED"
    assert [k for (k,) in kinds] == ["invoice.incoming.created", "invoice.incoming.settled"]


def _pay_out_of_order(sim: LndSim, label: str) -> int:
    """Invoices made by another app, paid in the reverse of their creation order
    between keysends. Replayed by add_index (lnd's SQL store), the invoice made
    first comes first with the highest settle_index. Returns how many settled."""
    made = [sim.create_invoice(10_000 + i, memo=f"other app {label}.{i}") for i in range(4)]
    for i, inv in enumerate(reversed(made)):
        sim.keysend(2_000 + i, {34349334: label.encode()})
        sim.pay_invoice(inv.r_hash)
    return 2 * len(made)


def _pay_with_amp(sim: LndSim, reusable: bytes, label: str) -> int:
    """Plain invoices paid out of order (`_pay_out_of_order`) between AMP
    payment sets: spontaneous ones (each its own AMP invoice, made after the
    plain ones, so the SQL store's order and the settle order disagree) and
    another set on an AMP invoice made long before. Returns how many settled."""
    count = _pay_out_of_order(sim, label)
    for i in range(2):
        sim.amp_payment(3_000 + i, {7629169: BOOST_BYTES, 34349334: label.encode()})
        sim.settle_amp_set(reusable, 4_000 + i, htlc_records=[{34349334: label.encode()}, {}])
    return count + 4


@BOTH_ORDERS
def test_amp_sets_across_outages_and_restarts_are_stored_once(tmp: Path, sim: LndSim) -> None:
    """Every settled AMP payment set is one incoming row and one settled event,
    whether it arrives live, in the backlog after an outage or a restart
    (either store's order), or from a listing; the saved cursor ends at the
    top, every set's settle_index counted as a settlement stored."""
    reusable = sim.add_invoice(ln.Invoice(value_msat=4_000, is_amp=True)).r_hash
    total = 0
    data = tmp / "data"
    for restart in range(2):
        with _serve(tmp, sim) as server:
            total += _pay_with_amp(sim, reusable, f"live {restart}")
            counts, events, cursor = e2e.stored_once(data, total)
            assert counts == (total, total, total) and events == (total, total)
            assert cursor == total
            sim.stop()
            total += _pay_with_amp(sim, reusable, f"outage {restart}")
            sim.start()
            counts, events, cursor = e2e.stored_once(data, total)
            assert counts == (total, total, total) and events == (total, total)
            assert cursor == total
            server.stop(signal.SIGKILL)
        total += _pay_with_amp(sim, reusable, f"restart {restart}")  # lnplugin is down
    with _serve(tmp, sim):
        counts, events, cursor = e2e.stored_once(data, total)
    assert counts == (total, total, total) and events == (total, total)
    assert cursor == total
    stored = e2e.db(data)
    try:
        rows = {
            row[0]: row[1:]
            for row in stored.execute(
                "SELECT payment_hash, amount_received_msat, is_keysend, boostagram FROM invoices"
            )
        }
    finally:
        stored.close()
    sets = {
        set_id: state.amt_paid_msat
        for inv in sim.ledger.invoices
        for set_id, state in inv.amp_invoice_state.items()
    }
    plain = {inv.r_hash.hex() for inv in sim.ledger.invoices if not inv.is_amp}
    assert set(rows) == plain | set(sets) and len(sets) == 24  # 2 x 3 rounds of 4
    assert all(rows[set_id][0] == msat for set_id, msat in sets.items())
    spontaneous = [r for set_id, r in rows.items() if set_id in sets and r[1]]
    assert len(spontaneous) == 12
    assert all(json.loads(r[2])["podcast"] == BOOST["podcast"] for r in spontaneous)


@BOTH_ORDERS
def test_backlog_out_of_settle_order_across_outages_and_restarts(tmp: Path, sim: LndSim) -> None:
    """Settlements made while lnd is unreachable, or while lnplugin is down, are
    replayed from the saved settle_index when it comes back; whatever order that
    backlog comes in, each is stored exactly once and the cursor ends at the top."""
    sim.keysend(1000)
    total = 1
    data = tmp / "data"
    for restart in range(2):
        with _serve(tmp, sim) as server:
            assert e2e.stored_once(data, total)[2] == total
            for outage in range(2):  # lnplugin keeps running and reconnects
                sim.stop()
                total += _pay_out_of_order(sim, f"outage {restart}.{outage}")
                sim.start()
                counts, events, cursor = e2e.stored_once(data, total)
                assert counts == (total, total, total) and events == (total, total)
                assert cursor == total
            server.stop(signal.SIGKILL)
        total += _pay_out_of_order(sim, f"restart {restart}")  # lnplugin is down
    with _serve(tmp, sim):
        counts, events, cursor = e2e.stored_once(data, total)
    assert counts == (total, total, total) and events == (total, total)
    assert cursor == total
    stored = e2e.db(data)
    try:
        hashes = {row[0] for row in stored.execute("SELECT payment_hash FROM invoices")}
    finally:
        stored.close()
    assert hashes == {inv.r_hash.hex() for inv in sim.ledger.invoices}


@pytest.mark.parametrize(("seed", "new_settlements"), [("new", 2), ("new", 5), ("restored", 2)])
def test_a_new_node_behind_the_data_dir_is_read_from_its_start(
    tmp: Path, sim: LndSim, seed: str, new_settlements: int
) -> None:
    """lnd's data dir wiped while lnplugin is down: a new node on the same
    address, or the same one restored from its seed (same identity key, no
    invoices). Every payment the node took since is stored once, whether it
    settled fewer or more invoices than the stored cursor counted, and so is
    its outgoing history; what was stored before is not counted twice."""
    data = tmp / "data"
    for i in range(3):
        sim.keysend(1_000 + i)
    sim.make_payment(500, destination="02" + "cd" * 32)
    with _serve(tmp, sim) as server:
        assert e2e.stored_once(data, 3)[2] == 3
        token = server.token
        assert token
        api = Api(server.url, token)
        wait_for(lambda: api.get("/invoices/outgoing"), "the old node's outgoing payment")
        api.close()
        server.stop(signal.SIGKILL)
    port = sim.port
    sim.close()
    key = (sim._node_key,)
    shutil.rmtree(tmp / "lnd")
    if seed == "restored":  # the seed gives back the node's identity key, and nothing else
        (tmp / "lnd").mkdir()
        ledger = sqlite3.connect(tmp / "lnd" / "sim.sqlite")
        ledger.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB)")
        ledger.execute("INSERT INTO meta VALUES ('node_key', ?)", key)
        ledger.commit()
        ledger.close()
    new = LndSim(tmp / "lnd", network="regtest", port=port)
    with new:
        for i in range(new_settlements):
            new.keysend(50_000 + i)
        new.make_payment(600, destination="02" + "ef" * 32)
        with _serve(tmp, new) as server:
            api = Api(server.url, token)
            total = 3 + new_settlements
            incoming = wait_for(
                lambda: (
                    len(got := api.get("/invoices/incoming", params={"items": 100})) == total
                    and got
                ),
                "every settlement listed",
            )
            outgoing = wait_for(
                lambda: len(got := api.get("/invoices/outgoing")) == 2 and got,
                "both outgoing payments",
            )
            counts, events, _ = e2e.stored_once(data, total + 2)
            api.close()
            server.stop()
            log = server.stderr_text()
    assert counts == (total, total, total) and events == (total, total)
    amounts = sorted(inv["amount_msat"] for inv in incoming)
    assert amounts == [1_000, 1_001, 1_002, *range(50_000, 50_000 + new_settlements)]
    assert sorted(inv["amount_msat"] for inv in outgoing) == [500, 600]
    assert "re-reading" in log


def _reset_lnd(tmp: Path, sim: LndSim, seed: str) -> LndSim:
    """lnd loses its invoice database while lnplugin runs, and comes back on
    the same address with the same certificate and macaroons: restored from
    its seed (the same identity key, no invoices) or a new node (a new key).
    Returned not yet listening."""
    port, key = sim.port, sim._node_key
    sim.close()
    for name in ("sim.sqlite", "sim.sqlite-wal", "sim.sqlite-shm"):
        (tmp / "lnd" / name).unlink(missing_ok=True)
    if seed == "restored":  # the seed gives back the node's identity key, and nothing else
        ledger = sqlite3.connect(tmp / "lnd" / "sim.sqlite")
        ledger.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB)")
        ledger.execute("INSERT INTO meta VALUES ('node_key', ?)", (key,))
        ledger.commit()
        ledger.close()
    return LndSim(tmp / "lnd", network="regtest", port=port)


def _settled_counts(data: Path) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Settled incoming rows (rows, distinct hashes) and their settled events."""
    rows = e2e.scalar(
        data,
        "SELECT COUNT(*), COUNT(DISTINCT payment_hash) FROM invoices "
        "WHERE type = 'incoming' AND state = 'SETTLED'",
    )
    settled = e2e.scalar(
        data,
        "SELECT COUNT(*), COUNT(DISTINCT payment_hash) FROM events WHERE type = ?",
        "invoice.incoming.settled",
    )
    return rows, settled


@pytest.mark.parametrize(
    ("seed", "while_away"), [("new", 0), ("restored", 0), ("restored", 1), ("restored", 5)]
)
def test_a_node_reset_while_lnplugin_runs_is_read_from_its_start_at_the_reconnect(
    tmp: Path, sim: LndSim, seed: str, while_away: int
) -> None:
    """lnd restored from its seed (or replaced by a new node) while lnplugin
    runs: its positions start at 1 again. At the reconnect lnplugin re-reads
    it from the start, whether it settled fewer (`while_away`, before
    lnplugin reconnected) or more invoices than the stored cursor counted,
    so every payment it takes is stored once with its event, as are its
    outgoing payments; what was stored before is not counted twice. (They
    were once skipped until lnplugin's next start: the reset was looked for
    only then.)"""
    data = tmp / "data"
    for i in range(3):
        sim.keysend(1_000 + i)
    sim.make_payment(500, destination="02" + "cd" * 32)
    with _serve(tmp, sim) as server:
        assert server.token
        api = Api(server.url, server.token)
        wait_for(lambda: api.get("/invoices/outgoing"), "the old node's outgoing payment")
        assert e2e.stored_once(data, 3 + 1)[2] == 3  # it counts the outgoing row too
        new = _reset_lnd(tmp, sim, seed)
        for i in range(while_away):  # before it listens, so before lnplugin is back
            new.keysend(40_000 + i)
        with new:
            new.wait_for_subscribers(1, timeout=60)
            # Paid after the reconnect: an invoice made through lnplugin (so on
            # the new node) and keysends.
            created = api.post("/invoices", {"amount": 50, "description": "after the reset"})
            new.pay_invoice(created["payment_request"])
            for i in range(2):
                new.keysend(50_000 + i)
            new.make_payment(600, destination="02" + "ef" * 32)
            got = wait_for(lambda: api.settled(created["payment_hash"]), "the new settlement")
            total = 3 + while_away + 3
            outgoing = wait_for(
                lambda: len(out := api.get("/invoices/outgoing")) == 2 and out,
                "both outgoing payments",
            )
            counts, _, _ = e2e.stored_once(data, total + 2)  # it counts outgoing rows too
            incoming = api.get("/invoices/incoming", params={"items": 100})
            stored = _settled_counts(data)
            api.close()
            server.stop()
            log = server.stderr_text()
    assert got["amount_received_msat"] == 50_000
    assert counts[:2] == (total, total) and stored == ((total, total), (total, total))
    amounts = sorted(inv["amount_msat"] for inv in incoming if inv["state"] == "SETTLED")
    assert amounts == sorted(
        [1_000, 1_001, 1_002, 50_000, 50_001, *range(40_000, 40_000 + while_away), 50_000]
    )
    assert sorted(inv["amount_msat"] for inv in outgoing) == [500, 600]
    assert "re-reading" in log
    if seed == "restored":  # the same key: found by its history, whatever its head
        assert "invoice history is not the one lnplugin followed" in log


def test_a_plain_lnd_restart_re_reads_nothing(tmp: Path, sim: LndSim) -> None:
    """lnd restarting with its history (the usual restart) is no reset: the
    reconnect asks lnd one small question rather than listing its history
    again, rewinds nothing, and the next payments are stored once."""
    data = tmp / "data"
    sim.bulk_settle(500, amount_msat=1000)
    with _serve(tmp, sim) as server:
        assert e2e.stored_once(data, 500)[2] == 500
        assert server.token
        api = Api(server.url, server.token)
        wait_for(lambda: api.get("/info")["follower"]["head"] == 500, "the head")
        reconnects = api.get("/info")["follower"]["reconnects"]
        sim.invoices_listed = 0
        sim.restart()
        wait_for(
            lambda: api.get("/info")["follower"]["reconnects"] > reconnects,
            "the feed to reconnect",
        )
        sim.wait_for_subscribers(1, timeout=60)
        created = api.post("/invoices", {"amount": 21, "description": "after the restart"})
        sim.pay_invoice(created["payment_request"])
        wait_for(lambda: api.settled(created["payment_hash"]), "the next settlement")
        counts, events, cursor = e2e.stored_once(data, 501)
        listed = sim.invoices_listed
        api.close()
        server.stop()
        log = server.stderr_text()
    assert counts == (501, 501, 501) and events == (501, 501) and cursor == 501
    assert "re-reading" not in log
    assert listed < 500  # not the whole history again


# -- crash safety ----------------------------------------------------------------

BULK = 10_000
CHUNK = 500
PRESETTLED = 2_000  # settled before lnplugin first starts: the replay/backfill part
MIN_KILLS = 5


def _settle_live(sim: LndSim, count: int = BULK - PRESETTLED) -> None:
    # Each chunk's invoices are paid in random order, so a replay by add_index
    # (lnd's SQL store) is out of settle order.
    for _ in range(count // CHUNK):
        sim.bulk_settle(CHUNK, amount_msat=1000, shuffle=True)
        time.sleep(0.2)


@BOTH_ORDERS
def test_sigkill_during_10k_settlements_stores_each_once(tmp: Path, sim: LndSim) -> None:
    """SIGKILL lnplugin every 0.3-0.5 s while lnd replays and delivers 10,000 settlements."""
    sim.bulk_settle(PRESETTLED, amount_msat=1000, shuffle=True)
    drill = e2e.sigkill_while_settling(
        lambda: _serve(tmp, sim), lambda: _settle_live(sim), BULK, MIN_KILLS
    )
    print(f"\nLND 10k SIGKILL: {drill}")
    assert drill.kills >= MIN_KILLS
    assert drill.counts == (BULK, BULK, BULK)  # each once, and the incoming list is dense
    assert drill.events == (BULK, BULK)  # one settled event each: webhooks fire once
    assert drill.cursor == BULK  # the persisted settle_index


@BOTH_ORDERS
def test_dropped_connections_during_10k_settlements_store_each_once(tmp: Path, sim: LndSim) -> None:
    """Streams cut mid-replay, mid-live, and lnd restarting: still each settlement once."""
    sim.bulk_settle(PRESETTLED, amount_msat=1000, shuffle=True)
    sim.faults.drop_stream_after = 700  # the first stream dies mid-replay
    sim.faults.drop_stream_times = 1
    sim.faults.duplicate_every = 7  # and lnd sends some events twice
    started = time.monotonic()
    with _serve(tmp, sim):
        live = threading.Thread(target=_settle_live, args=(sim,), daemon=True)
        live.start()
        disruptions = 1
        time.sleep(1.0)
        sim.drop_streams()
        disruptions += 1
        time.sleep(1.0)
        sim.restart(down_for=0.5)
        disruptions += 1
        live.join(60)
        counts, events, cursor = e2e.stored_once(tmp / "data", BULK)
    print(
        f"\nLND 10k drops: disruptions={disruptions} elapsed={time.monotonic() - started:.1f}s "
        f"counts={counts} events={events} cursor={cursor}"
    )
    assert counts == (BULK, BULK, BULK)
    assert events == (BULK, BULK)
    assert cursor == BULK


# -- the macaroons docs/lnd.md tells operators to bake -----------------------------

LND_DOC = Path(__file__).resolve().parent.parent / "docs" / "lnd.md"


def doc_bakes() -> dict[str, list[str]]:
    """Each `lncli bakemacaroon` command in docs/lnd.md's section 2, read from
    the doc itself (so the doc and this test cannot drift): "entity" for the
    entity:action form, "uri" for the per-method form -> its permissions."""
    text = LND_DOC.read_text().split("## 2. Choose a macaroon", 1)[1].split("\n## ", 1)[0]
    bakes: dict[str, list[str]] = {}
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        words = block.replace("\\\n", " ").split()
        if words[:2] != ["lncli", "bakemacaroon"]:
            continue
        perms = [w for w in words[2:] if not w.startswith("--")]
        kind = "uri" if all(p.startswith("uri:") for p in perms) else "entity"
        assert kind not in bakes, f"two {kind} bakes in docs/lnd.md"
        bakes[kind] = perms
    assert set(bakes) == {"entity", "uri"}, bakes
    return bakes


@pytest.mark.parametrize("form", ["entity", "uri"])
def test_the_macaroons_docs_lnd_md_recommends_do_everything(
    tmp: Path, sim: LndSim, form: str
) -> None:
    """Bake exactly what docs/lnd.md tells the operator to bake, run `lnplugin
    serve` with it, and use what lnplugin offers on LND: invoices and their
    settlements, hold invoices (ACCEPTED, settle), cancel, outgoing history,
    node info. A method missing from the doc's bake fails here; `lnplugin
    doctor` must find nothing missing and nothing extra in it either."""
    macaroon = sim.bake(doc_bakes()[form], "lnplugin.macaroon")
    code, lines = e2e.run_doctor(
        tmp / "doctor", "--node", "lnd", "--lnd-host", sim.target, "--lnd-cert",
        str(sim.cert_path), "--lnd-macaroon", str(macaroon), "--network", "regtest",
    )  # fmt: skip
    lines = e2e.node_lines(lines)
    assert code == 0 and all(line.startswith("OK ") for line in lines), lines
    assert "more than lnplugin needs" not in "\n".join(lines)
    with _serve(tmp, sim, macaroon) as server:
        assert server.token
        api = Api(server.url, server.token)
        try:
            e2e.create_pay_and_see_the_settlement(api, "lnd", sim.pay_invoice)
            info = api.get("/info")
            assert info["node"]["alias"] == sim.alias  # GetInfo
            # A hold invoice: created, seen ACCEPTED (its own stream), settled.
            preimage, payment_hash = e2e.hold_pair()
            api.post("/invoices", {"amount": 21, "payment_hash": payment_hash})
            sim.pay_invoice(payment_hash)
            wait_for(
                lambda: api.get(f"/invoices/{payment_hash}")["state"] == "ACCEPTED",
                "the hold invoice ACCEPTED",
            )
            settled = server.request(
                "POST", f"/invoices/{payment_hash}/settle", json={"preimage": preimage}
            )
            assert settled.status_code == 200, settled.text
            assert settled.json()["state"] == "SETTLED"
            # Cancel a regular invoice.
            other = api.post("/invoices", {"amount": 5, "description": "to cancel"})
            canceled = server.request("POST", f"/invoices/{other['payment_hash']}/cancel")
            assert canceled.status_code == 200, canceled.text
            assert canceled.json()["state"] == "CANCELED"
            # Outgoing history.
            paid = sim.make_payment(3_000)
            out = wait_for(lambda: api.get("/invoices/outgoing"), "the outgoing payment")
            assert [p["payment_hash"] for p in out] == [paid.payment_hash]
            assert api.get("/info")["follower"]["outgoing"] == "ok"
        finally:
            api.close()
