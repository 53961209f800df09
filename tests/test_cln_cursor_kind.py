"""The incoming cursor remembers what it counts, and restarts when that changes.

A CLN node upgraded past 23.08 moves lnplugin from `waitanyinvoice` (cursor =
pay_index) to the `updated_index` feed: the old number means nothing there.
The outgoing cursor has a kind too: an older lnplugin kept `listsendpays`
`id` in it, and payments from before 23.11 have no `updated_index` at all.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lnplugin.follower import Follower
from lnplugin.nodes.cln import ClnNode
from lnplugin.store import Store, cursors
from lnplugin_sim.cln_sim import ClnSim


@pytest.fixture
def tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(dir="/tmp", prefix="clnk"))  # unix socket paths must be short
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _sweep(sim: ClnSim, store: Store) -> tuple[int, str, int]:
    node = ClnNode(sim.socket_path, network="regtest", wait_timeout=1)
    follower = Follower(node, store)
    follower.sweep()
    node.close()
    with store.snapshot() as conn:
        kind = conn.execute("SELECT kind FROM cursor_kinds WHERE name = 'incoming'").fetchone()
        settled = conn.execute("SELECT COUNT(*) FROM invoices WHERE state = 'SETTLED'").fetchone()
        return cursors.get(conn, cursors.INCOMING), kind[0], settled[0]


def _expire_new(sim: ClnSim, count: int) -> None:
    for _ in range(count):
        label = f"gone-{sim.counters['inv_created']}"
        made = sim.dispatch("invoice", {"amount_msat": 1, "label": label, "description": "x"})
        sim.expire(made["payment_hash"])


def test_kind_change_resets_the_cursor_and_misses_nothing(
    tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """updated_index 6 read as a pay_index would skip payments 3 to 5."""
    store = Store(tmp / "store.sqlite")
    with ClnSim(tmp / "sim", tmp / "rpc") as sim:
        _expire_new(sim, 4)  # updated_index 1-4
        sim.settle_bulk(2)  # updated_index 5-6, pay_index 1-2
        assert _sweep(sim, store) == (6, "updated_index", 2)
        assert _sweep(sim, store) == (6, "updated_index", 2)  # same kind: resumed, kept

        sim.version = "v23.05"  # the node now only offers waitanyinvoice (same data)
        sim.settle_bulk(3)  # pay_index 3-5
        caplog.clear()
        cursor, kind, settled = _sweep(sim, store)
    assert kind == "pay_index"
    assert "the node's feed position now counts its pay_index: re-reading from the start" in [
        r.getMessage() for r in caplog.records
    ]
    assert settled == 5  # nothing missed, nothing twice
    assert cursor == 5  # a pay_index now
    store.close()


def _outgoing(sim: ClnSim, store: Store) -> tuple[set[str], int]:
    node = ClnNode(sim.socket_path, network="regtest", wait_timeout=1)
    Follower(node, store).sweep_outgoing()
    node.close()
    with store.snapshot() as conn:
        rows = conn.execute("SELECT payment_hash FROM invoices WHERE type = 'outgoing'").fetchall()
        return {r[0] for r in rows}, cursors.get(conn, cursors.OUTGOING)


def test_an_outgoing_cursor_of_listsendpays_ids_is_read_again(tmp: Path) -> None:
    """lnplugin once kept `listsendpays` `id` as the outgoing cursor: read as
    an updated_index it skips every payment up to it. A cursor with no kind
    recorded is such a one, and starts over (the store keeps each once)."""
    store = Store(tmp / "store.sqlite")
    try:
        with store.transaction() as tx:
            cursors.advance(tx, cursors.OUTGOING, 7)  # as an older lnplugin left it
        with ClnSim(tmp / "sim", tmp / "rpc", version="v24.11") as sim:
            paid = {sim.send_payment(1000 + n)["payment_hash"] for n in range(3)}  # updated 1-3
            stored, cursor = _outgoing(sim, store)
            assert stored == paid and cursor == 3
            sim.send_payment(2000)
            again, cursor = _outgoing(sim, store)  # the kind is kept: resumed, not restarted
        assert len(again) == 4 and cursor == 4
    finally:
        store.close()


def test_payments_from_before_23_11_are_listed_after_an_upgrade(tmp: Path) -> None:
    """Payments completed before a node's upgrade to 23.11 keep updated_index
    0, which `listpays index=updated` (24.11+) never lists."""
    store = Store(tmp / "store.sqlite")
    try:
        with ClnSim(tmp / "sim", tmp / "rpc", version="v23.05") as sim:
            old = {sim.send_payment(1000 + n)["payment_hash"] for n in range(2)}
            sim.version = "v24.11"  # upgraded: the old rows have updated_index 0
            new = sim.send_payment(3000)["payment_hash"]
            stored, cursor = _outgoing(sim, store)
            assert stored == old | {new} and cursor == 1
            assert len(_outgoing(sim, store)[0]) == 3  # read again from 1: nothing twice
    finally:
        store.close()
