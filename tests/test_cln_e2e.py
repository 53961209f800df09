"""Standalone mode end to end: `lnplugin serve --node cln` as a real process.

The CLN simulator listens on a real unix socket in this process; lnplugin
reaches it exactly as it would reach lightningd, and the tests talk HTTP.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lnplugin.testing.cln_sim import ClnSim
from tests.cln_helpers import BOOST_BYTES, Api, scalar, wait_for
from tests.e2e import Server

BULK = 10_000
CHUNK = 500
MIN_KILLS = 5


@pytest.fixture
def tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(dir="/tmp", prefix="clne"))  # unix socket paths must be short
    yield path
    shutil.rmtree(path, ignore_errors=True)


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


@pytest.fixture
def api(server: Server) -> Iterator[Api]:
    assert server.token
    client = Api(server.url, server.token)
    yield client
    client.close()


def test_create_pay_and_see_the_settlement(server: Server, sim: ClnSim, api: Api) -> None:
    info = api.get("/info")
    assert info["node"]["kind"] == "cln" and info["node"]["network"] == "regtest"
    created = api.post("/invoices", {"amount": 50, "description": "fixture invoice"})
    assert created["payment_request"].startswith("lnbcrt500n1")
    assert sim.pay(created["payment_request"])["status"] == "paid"
    got = wait_for(lambda: api.settled(created["payment_hash"]), "settlement")
    assert got["amount_received_msat"] == 50_000 and got["state"] == "SETTLED"
    assert hashlib.sha256(bytes.fromhex(got["preimage"])).hexdigest() == created["payment_hash"]
    listed = api.incoming(created["payment_hash"])
    assert listed is not None and listed["identifier"] == created["identifier"]


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
    server = _serve(tmp, sim).start()
    settled = threading.Event()

    def settle() -> None:
        for _ in range(BULK // CHUNK):
            sim.settle_bulk(CHUNK, amount_msat=1000)
            time.sleep(0.25)
        settled.set()

    started = time.monotonic()
    threading.Thread(target=settle, daemon=True).start()
    kills = 0
    progress: list[int] = []  # rows stored at each kill, for the log
    try:
        while not settled.is_set() or kills < MIN_KILLS:
            time.sleep(random.uniform(0.3, 0.5))
            server.stop(signal.SIGKILL)
            kills += 1
            progress.append(scalar(tmp / "data", "SELECT COUNT(*) FROM invoices")[0])
            server = _serve(tmp, sim).start()
        stored = wait_for(
            lambda: (
                (n := scalar(tmp / "data", "SELECT COUNT(*) FROM invoices WHERE state = 'SETTLED'"))
                and n[0] >= BULK
                and n
            ),
            "all settlements stored",
            timeout=60,
        )
    finally:
        server.stop()
    elapsed = time.monotonic() - started
    counts = scalar(
        tmp / "data",
        "SELECT COUNT(*), COUNT(DISTINCT payment_hash), MAX(list_seq) FROM invoices "
        "WHERE type = 'incoming' AND state = 'SETTLED'",
    )
    events = scalar(
        tmp / "data",
        "SELECT COUNT(*), COUNT(DISTINCT payment_hash) FROM events WHERE type = ?",
        "invoice.incoming.settled",
    )
    cursor = scalar(tmp / "data", "SELECT value FROM cursors WHERE name = 'incoming'")
    print(
        f"\n10k SIGKILL: kills={kills} elapsed={elapsed:.1f}s stored={stored[0]} "
        f"counts={counts} events={events} cursor={cursor[0]} stored_at_kills={progress}"
    )
    assert kills >= MIN_KILLS
    assert counts == (BULK, BULK, BULK)  # each once, and the incoming list is dense
    assert events == (BULK, BULK)  # one settled event each: webhooks fire once
    assert cursor[0] == sim.counters["inv_updated"]
