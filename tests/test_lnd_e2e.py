"""`lnplugin serve --node lnd` as a real process against the LND simulator.

The simulator is a real gRPC server over TLS in this process that checks
macaroons; lnplugin reaches it exactly as it reaches lnd, and the tests talk
HTTP to lnplugin. Waits are liveness bounds, never timing assertions.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lnplugin_sim.lnd_sim import LndSim
from tests import e2e
from tests.e2e import BOOST, BOOST_BYTES, CHAT, Api, Server, wait_for

# The shared fixtures: `tmp`, a short directory under /tmp, and `api`, a client for `server`.
tmp = e2e.fixture_tmp
api = e2e.fixture_api


@pytest.fixture
def sim(tmp: Path) -> Iterator[LndSim]:
    with LndSim(tmp / "lnd", network="regtest", port=0) as s:
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


def test_keysend_boostagram_and_message(server: Server, sim: LndSim, api: Api) -> None:
    sent = sim.keysend(21_000, {7629169: BOOST_BYTES, 34349334: CHAT})
    payment_hash = sent.r_hash.hex()
    got = wait_for(lambda: api.incoming(payment_hash), "the keysend")
    assert got["is_keysend"] is True and got["amount_received_msat"] == 21_000
    boost = got["boostagram"]
    assert boost["podcast"] == BOOST["podcast"] and boost["message"] == BOOST["message"]
    assert boost["sender_name"] == BOOST["sender_name"]
    assert got["keysend_message"] == CHAT.decode()


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
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if "regtest" in line]
    assert len(errors) == 1, proc.stderr
    assert "bitcoin" in errors[0]


def test_node_down_create_503_reads_work(server: Server, sim: LndSim, api: Api) -> None:
    created = api.post("/invoices", {"amount": 10, "description": "before"})
    sim.stop()
    try:
        reply = server.request("POST", "/invoices", json={"amount": 10, "description": "x"})
        assert reply.status_code == 503
        assert "unreachable" in reply.json()["message"].lower()
        assert server.request("GET", f"/invoices/{created['payment_hash']}").status_code == 200
        assert server.request("GET", "/invoices/incoming").status_code == 200
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


def test_invoice_macaroon_least_privilege(tmp: Path, sim: LndSim) -> None:
    server = _serve(tmp, sim, sim.invoice_macaroon_path).start()
    try:
        assert server.token
        api = Api(server.url, server.token)
        created = api.post("/invoices", {"amount": 5, "description": "least privilege"})
        sim.pay_invoice(created["payment_hash"])
        wait_for(lambda: api.settled(created["payment_hash"]), "settlement")
        info = wait_for(
            lambda: (i := api.get("/info"))["follower"]["outgoing"] == "unavailable" and i,
            "outgoing reported unavailable",
        )
        assert info["follower"]["outgoing"] == "unavailable"
        api.close()
    finally:
        assert server.stop(signal.SIGTERM) == 0
    assert server.proc is not None and server.proc.stderr is not None
    log = server.proc.stderr.read().splitlines()
    network = [line for line in log if "network check unavailable" in line]
    outgoing = [line for line in log if "outgoing payment history unavailable" in line]
    assert len(network) == 1 and "info:read" in network[0], log
    assert len(outgoing) == 1, log


# -- crash safety ----------------------------------------------------------------

BULK = 10_000
CHUNK = 500
PRESETTLED = 2_000  # settled before lnplugin first starts: the replay/backfill part
MIN_KILLS = 5


def _settle_live(sim: LndSim, count: int = BULK - PRESETTLED) -> None:
    for _ in range(count // CHUNK):
        sim.bulk_settle(CHUNK, amount_msat=1000)
        time.sleep(0.2)


def test_sigkill_during_10k_settlements_stores_each_once(tmp: Path, sim: LndSim) -> None:
    """SIGKILL lnplugin every 0.3-0.5 s while lnd replays and delivers 10,000 settlements."""
    sim.bulk_settle(PRESETTLED, amount_msat=1000)
    drill = e2e.sigkill_while_settling(
        lambda: _serve(tmp, sim), lambda: _settle_live(sim), BULK, MIN_KILLS
    )
    print(f"\nLND 10k SIGKILL: {drill}")
    assert drill.kills >= MIN_KILLS
    assert drill.counts == (BULK, BULK, BULK)  # each once, and the incoming list is dense
    assert drill.events == (BULK, BULK)  # one settled event each: webhooks fire once
    assert drill.cursor == BULK  # the persisted settle_index


def test_dropped_connections_during_10k_settlements_store_each_once(tmp: Path, sim: LndSim) -> None:
    """Streams cut mid-replay, mid-live, and lnd restarting: still each settlement once."""
    sim.bulk_settle(PRESETTLED, amount_msat=1000)
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
