"""Standalone mode end to end: `lnplugin serve --node cln` as a real process.

The CLN simulator listens on a real unix socket in this process; lnplugin
reaches it exactly as it would reach lightningd, and the tests talk HTTP.
"""

from __future__ import annotations

import json
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lnplugin_sim.cln_sim import ClnSim
from tests import e2e
from tests.e2e import BOOST_BYTES, Api, Server, wait_for

# The shared fixtures: `tmp`, a short directory under /tmp, and `api`, a client for `server`.
tmp = e2e.fixture_tmp
api = e2e.fixture_api

BULK = 10_000
CHUNK = 500
MIN_KILLS = 5


@pytest.fixture
def sim(tmp: Path) -> Iterator[ClnSim]:
    with ClnSim(tmp / "sim", tmp / "rpc") as s:
        yield s


def _serve(tmp: Path, sim: ClnSim) -> Server:
    return Server(
        tmp / "data", "--node", "cln", "--cln-socket", sim.socket_path, "--network", "regtest"
    )


@pytest.fixture
def server(tmp: Path, sim: ClnSim) -> Iterator[Server]:
    with _serve(tmp, sim) as running:
        yield running


def test_create_pay_and_see_the_settlement(server: Server, sim: ClnSim, api: Api) -> None:
    def pay(bolt11: str) -> None:
        assert sim.pay(bolt11)["status"] == "paid"

    e2e.create_pay_and_see_the_settlement(api, "cln", pay)


def test_invoices_created_outside_lnplugin_appear(server: Server, sim: ClnSim, api: Api) -> None:
    made = sim.dispatch(
        "invoice", {"amount_msat": 77000, "label": "by-hand", "description": "lightning-cli"}
    )
    sim.pay("by-hand")
    got = wait_for(lambda: api.incoming(made["payment_hash"]), "the outside invoice")
    assert got["description"] == "lightning-cli" and got["amount_received_msat"] == 77000
    assert got["payment_request"] == made["bolt11"]

    # A keysend in standalone mode: CLN lists it, but without TLV records
    # (that is what plugin mode is for); its description keeps the longest text.
    keysend = sim.keysend(21000, {7629169: BOOST_BYTES})
    seen = wait_for(lambda: api.incoming(keysend["payment_hash"]), "the keysend")
    assert seen["is_keysend"] is True and seen["payment_request"] == ""
    assert seen["amount_msat"] == 21000 and seen["amount"] == 21
    assert seen["description"] == "keysend: " + BOOST_BYTES.decode()
    assert seen["boostagram"] is None


def test_outgoing_payment_appears(tmp: Path, sim: ClnSim) -> None:
    peer = "02" + "ab" * 32
    sim.add_node(peer, "BOB")
    paid = sim.send_payment(12_000, destination=peer, fee_msat=7)
    sim.send_payment(5_000, destination=peer, status="failed")  # never listed
    with _serve(tmp, sim) as server:
        assert server.token
        api = Api(server.url, server.token)
        out = wait_for(lambda: api.get("/invoices/outgoing"), "the outgoing payment")
        assert len(out) == 1
        assert out[0]["payment_hash"] == paid["payment_hash"]
        assert out[0]["amount_msat"] == 12_000 and out[0]["fee_msat"] == 7
        assert out[0]["destination"] == peer and out[0]["type"] == "outgoing"
        assert out[0]["preimage"] == paid["preimage"]
        api.close()


def test_sigkill_during_10k_settlements_stores_each_once(tmp: Path, sim: ClnSim) -> None:
    """SIGKILL lnplugin every 0.3-0.5 s while the node settles 10,000 invoices."""

    def settle() -> None:
        for _ in range(BULK // CHUNK):
            sim.settle_bulk(CHUNK, amount_msat=1000)
            time.sleep(0.25)

    drill = e2e.sigkill_while_settling(lambda: _serve(tmp, sim), settle, BULK, MIN_KILLS)
    print(f"\n10k SIGKILL: {drill}")
    assert drill.kills >= MIN_KILLS
    assert drill.counts == (BULK, BULK, BULK)  # each once, and the incoming list is dense
    assert drill.events == (BULK, BULK)  # one settled event each: webhooks fire once
    assert drill.cursor == sim.counters["inv_updated"]


def _reset_cln(sim: ClnSim, seed: str) -> None:
    """lightningd comes back on the same socket with a new database while
    lnplugin runs: the same hsm_secret (same node id) or a new one. Its
    updated index starts over; the simulator keeps no invoices or payments."""
    sim.stop()
    journal = sim.data_dir / "cln_sim.jsonl"
    kept = [line for line in journal.read_text().splitlines() if json.loads(line)["t"] == "meta"]
    journal.write_text("".join(line + "\n" for line in kept) if seed == "restored" else "")
    sim._load()
    sim.start()


@pytest.mark.parametrize("seed", ["restored", "new"])
def test_a_node_reset_while_lnplugin_runs_is_read_from_its_start_at_the_reconnect(
    tmp: Path, sim: ClnSim, seed: str
) -> None:
    """Core Lightning started over with a new database while lnplugin runs:
    its updated index is behind the stored cursor (or it is another node).
    At the reconnect lnplugin re-reads it from the start, so each payment
    it takes is stored once with its event, and so are its outgoing
    payments. (They were once skipped until lnplugin's next start.)"""
    data = tmp / "data"
    peer = "02" + "ab" * 32
    sim.add_node(peer, "BOB")
    for i in range(3):
        sim.keysend(1_000 + i)
    sim.send_payment(500, destination=peer)
    with _serve(tmp, sim) as server:
        assert server.token
        api = Api(server.url, server.token)
        wait_for(lambda: api.get("/invoices/outgoing"), "the old node's outgoing payment")
        assert e2e.stored_once(data, 3 + 1)[0] == (3, 3, 3)
        old_id = sim.node_id
        reconnects = api.get("/info")["follower"]["reconnects"]
        _reset_cln(sim, seed)
        assert (sim.node_id == old_id) == (seed == "restored")
        sim.add_node(peer, "BOB")
        wait_for(
            lambda: (
                (follower := api.get("/info")["follower"])["reconnects"] > reconnects
                and follower["connection"] == "connected"
            ),
            "the feed to reconnect",
        )
        created = api.post("/invoices", {"amount": 50, "description": "after the reset"})
        assert sim.pay(created["payment_request"])["status"] == "paid"
        keysend = sim.keysend(50_001)
        sim.send_payment(600, destination=peer)
        got = wait_for(lambda: api.settled(created["payment_hash"]), "the new settlement")
        wait_for(lambda: api.settled(keysend["payment_hash"]), "the new keysend")
        outgoing = wait_for(
            lambda: len(out := api.get("/invoices/outgoing")) == 2 and out,
            "both outgoing payments",
        )
        counts, events, _ = e2e.stored_once(data, 5 + 2)  # it counts outgoing rows too
        api.close()
        server.stop()
        log = server.stderr_text()
    assert got["amount_received_msat"] == 50_000
    assert counts == (5, 5, 5) and events == (5, 5)
    assert sorted(inv["amount_msat"] for inv in outgoing) == [500, 600]
    assert "re-reading" in log


# -- the node's settings at start (docs/cln.md, "What is refused at start") ------


def test_a_cln_on_another_network_refuses_to_start(tmp: Path, sim: ClnSim) -> None:
    """A setting that is wrong: no wait mends it, so one line (exit 2) naming
    --network, before anything is served."""
    proc = e2e.run(
        tmp / "data", "serve", "--port", "0", "--node", "cln", "--cln-socket", sim.socket_path,
        "--network", "bitcoin",
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    [error] = proc.stderr.splitlines()
    assert error.startswith("Error: the cln node is on regtest but lnplugin is configured for ")
    assert "--network regtest (LNPLUGIN_NETWORK)" in error and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_a_stale_socket_is_a_node_that_is_down(tmp: Path) -> None:
    """The socket a killed lightningd leaves: nothing listens (ECONNREFUSED).
    lightningd removes it and binds anew when it starts again
    (lightningd/jsonrpc.c), so it is waited for like a missing socket: serve
    runs, create answers 503, and works once lightningd is back."""
    path = tmp / "rpc"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays; nothing listens on it
    assert stat.S_ISSOCK(path.stat().st_mode)
    with Server(
        tmp / "data", "--node", "cln", "--cln-socket", str(path), "--network", "regtest"
    ) as server:
        reply = server.request("POST", "/invoices", json={"amount": 10})
        assert reply.status_code == 503 and "unreachable" in reply.json()["message"]
        with ClnSim(tmp / "sim", path):
            wait_for(
                lambda: server.request("POST", "/invoices", json={"amount": 10}).status_code == 201,
                "create once lightningd is back on the socket",
            )
    assert "Traceback" not in server.stderr_text()
