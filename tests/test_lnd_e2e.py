"""`lnplugin serve --node lnd` as a real process against the LND simulator.

The simulator is a real gRPC server over TLS in this process that checks
macaroons; lnplugin reaches it exactly as it reaches lnd, and the tests talk
HTTP to lnplugin. Waits are liveness bounds, never timing assertions.
"""

from __future__ import annotations

import hashlib
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lnplugin.testing.lnd_sim import LndSim
from tests.cln_helpers import BOOST, BOOST_BYTES, CHAT, Api, wait_for
from tests.e2e import Server


@pytest.fixture
def tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(dir="/tmp", prefix="lnde"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


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


@pytest.fixture
def api(server: Server) -> Iterator[Api]:
    assert server.token
    client = Api(server.url, server.token)
    yield client
    client.close()


def test_create_pay_and_see_the_settlement(server: Server, sim: LndSim, api: Api) -> None:
    info = api.get("/info")
    assert info["node"]["kind"] == "lnd" and info["node"]["network"] == "regtest"
    created = api.post("/invoices", {"amount": 50, "description": "via lnplugin"})
    assert created["payment_request"].startswith("lnbcrt500n1")
    sim.pay_invoice(created["payment_request"])
    got = wait_for(lambda: api.settled(created["payment_hash"]), "settlement")
    assert got["amount_received_msat"] == 50_000 and got["state"] == "SETTLED"
    assert hashlib.sha256(bytes.fromhex(got["preimage"])).hexdigest() == created["payment_hash"]
    listed = api.incoming(created["payment_hash"])
    assert listed is not None and listed["identifier"] == created["identifier"]


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
    proc = subprocess.run(
        [
            sys.executable, "-m", "lnplugin", "serve", "--data-dir", str(tmp / "data"),
            "--port", "0", *serve_args(sim, network="bitcoin"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
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
