"""CLN outgoing payments: each completed payment once, with its whole amount
and fee, whatever the page size, across restarts.

`listsendpays` has one row per part; `listpays` combines only the parts of
one answer, and its `limit` counts parts (plugins/pay.c v24.11,
plugins/xpay/listpays.c v26.06, lightningd/pay.c `json_listsendpays`). The
simulator pages exactly so; these tests put parts on either side of a page.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lnplugin.follower import Follower
from lnplugin.nodes.base import OutgoingPayment
from lnplugin.nodes.cln import ClnNode
from lnplugin.store import Store, cursors, events, invoices
from lnplugin_sim.cln_sim import ClnSim

# Indexed listpays (24.11+, and the xpay plugin's from 26.06), indexed
# listsendpays alone (23.11+), and none (older).
VERSIONS = ["v26.06.6", "v24.11", "v24.05", "v23.05"]
FIXTURES = Path(__file__).parent / "fixtures" / "cln"


@pytest.fixture
def tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(dir="/tmp", prefix="clno"))  # unix socket paths must be short
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _hash(n: int) -> str:
    return f"{n:064x}"


class Ledger:
    """What the store does with outgoing payments: keeps the first of each
    payment hash, and the highest cursor handed on."""

    def __init__(self) -> None:
        self.kept: dict[str, OutgoingPayment] = {}
        self.cursor = 0

    def poll(self, node: ClnNode) -> list[OutgoingPayment]:
        got = list(node.outgoing_payments(self.cursor))
        for payment in got:
            self.kept.setdefault(payment.payment_hash, payment)
            self.cursor = max(self.cursor, payment.cursor)
        return got

    def amounts(self) -> dict[str, tuple[int, int]]:
        return {h: (p.amount_msat, p.fee_msat) for h, p in self.kept.items()}


def test_listpays_with_a_limit_splits_a_payment_as_cln_does(tmp: Path) -> None:
    """The simulator answers as lightningd and the pay plugin: `limit`
    counts parts, and the parts on either side come back as two entries;
    `listsendpays payment_hash` lists every part whatever the paging."""
    with ClnSim(tmp / "d", tmp / "s") as sim:
        for part in (1, 2, 3):
            sim.add_part(_hash(1), groupid=5, partid=part, amount_msat=1000, status="complete")
        first = sim.dispatch("listpays", {"index": "updated", "start": 1, "limit": 2})["pays"]
        rest = sim.dispatch("listpays", {"index": "updated", "start": 3, "limit": 2})["pays"]
        assert [(p["amount_msat"], p.get("number_of_parts")) for p in first] == [(2000, 2)]
        assert [(p["amount_msat"], p.get("number_of_parts")) for p in rest] == [(1000, None)]
        whole = sim.dispatch("listpays", {})["pays"]
        assert [(p["amount_msat"], p["number_of_parts"]) for p in whole] == [(3000, 3)]
        parts = sim.dispatch("listsendpays", {"payment_hash": _hash(1), "status": "failed"})
        assert len(parts["payments"]) == 3  # status is not applied to a hash's parts


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("page", [1, 2, 3, 100])
def test_parts_straddling_pages_make_one_whole_payment(tmp: Path, version: str, page: int) -> None:
    """Parts of three payments complete interleaved; read with small pages
    from a cursor past an earlier payment, each is kept once and whole."""
    with ClnSim(tmp / "d", tmp / "s", version=version) as sim:
        node = ClnNode(sim.socket_path)
        node.outgoing_history.page = page
        ledger = Ledger()
        sim.add_part(_hash(9), groupid=1, partid=1, amount_msat=100, status="complete")
        ledger.poll(node)
        a, b, c = _hash(1), _hash(2), _hash(3)
        for part in (1, 2, 3):
            sim.add_part(a, groupid=7, partid=part, amount_msat=1000, fee_msat=10)
        sim.add_part(c, groupid=8, partid=1, amount_msat=2000, fee_msat=1)
        sim.add_part(c, groupid=8, partid=2, amount_msat=2000, fee_msat=1)
        sim.set_part(a, 7, 1, "complete")
        sim.add_part(b, groupid=3, partid=1, amount_msat=5000, fee_msat=5, status="complete")
        sim.set_part(a, 7, 2, "complete")
        sim.set_part(c, 8, 1, "complete")
        sim.set_part(a, 7, 3, "complete")
        sim.set_part(c, 8, 2, "complete")
        got = ledger.poll(node)
        assert {p.payment_hash for p in got} >= {a, b, c}
        assert ledger.amounts() == {
            _hash(9): (100, 0),
            a: (3000, 30),
            b: (5000, 5),
            c: (4000, 2),
        }
        again = {p.payment_hash for p in ledger.poll(node)}
        assert again == (set() if version >= "v23.11" else {_hash(9), a, b, c})  # kept once
        node.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_failed_attempts_before_the_group_that_completed(tmp: Path, version: str) -> None:
    """A first `pay` whose parts all failed, then a second whose first part
    failed: only the complete parts of the group that completed count. The
    old pay plugin gives the bolt11 to each run's first part only, here a
    failed one: the payment keeps it (it is no keysend)."""
    invoice = json.loads((FIXTURES / "invoice_b.json").read_text())
    bolt11, h = invoice["bolt11"], invoice["payment_hash"]
    with ClnSim(tmp / "d", tmp / "s", version=version) as sim:
        node = ClnNode(sim.socket_path)
        node.outgoing_history.page = 2
        ledger = Ledger()
        sim.add_part(h, groupid=1, partid=1, amount_msat=50000, bolt11=bolt11, status="failed")
        sim.add_part(h, groupid=1, partid=2, amount_msat=25000, status="failed")
        assert ledger.poll(node) == []
        sim.add_part(h, groupid=2, partid=1, amount_msat=50000, bolt11=bolt11, status="failed")
        sim.add_part(h, groupid=2, partid=2, amount_msat=30000, fee_msat=6)
        sim.add_part(h, groupid=2, partid=3, amount_msat=20000, fee_msat=4)
        sim.set_part(h, 2, 2, "complete")
        sim.set_part(h, 2, 3, "complete")
        (paid,) = ledger.poll(node)
        assert (paid.amount_msat, paid.fee_msat) == (50000, 10)
        assert paid.payment_request == bolt11 and paid.preimage
        node.close()


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("last_part", ["complete", "failed"])
def test_a_payment_waits_for_its_pending_parts(tmp: Path, version: str, last_part: str) -> None:
    """One part completed, another still in flight: not kept yet (its amount
    would stay too low), the payments after it are, and the cursor stays
    below it until its last part settles, even when that one fails (which
    no `status=complete` listing would show)."""
    with ClnSim(tmp / "d", tmp / "s", version=version) as sim:
        node = ClnNode(sim.socket_path)
        node.outgoing_history.page = 1
        ledger = Ledger()
        sim.add_part(_hash(9), groupid=1, partid=1, amount_msat=100, status="complete")
        ledger.poll(node)
        a, b = _hash(1), _hash(2)
        sim.add_part(a, groupid=4, partid=1, amount_msat=700, fee_msat=7)
        sim.add_part(a, groupid=4, partid=2, amount_msat=300, fee_msat=3)
        sim.set_part(a, 4, 1, "complete")
        sim.add_part(b, groupid=5, partid=1, amount_msat=2000, status="complete")
        new = {p.payment_hash for p in ledger.poll(node)} - {_hash(9)}  # listed again before 23.11
        assert new == {b} and a not in ledger.kept
        assert ledger.cursor == (1 if version >= "v23.11" else 0)  # below a's part
        assert {p.payment_hash for p in ledger.poll(node)} - {_hash(9)} == {b}  # read again
        sim.set_part(a, 4, 2, last_part)
        ledger.poll(node)
        whole = (1000, 10) if last_part == "complete" else (700, 7)
        assert ledger.amounts() == {_hash(9): (100, 0), a: whole, b: (2000, 0)}
        last = 4 if last_part == "complete" else 3  # a failed part is not listed
        assert ledger.cursor == (last if version >= "v23.11" else 0)
        node.close()


def _sweep(sim: ClnSim, store: Store, page: int) -> None:
    """One outgoing sweep by a freshly started lnplugin (nothing in memory)."""
    node = ClnNode(sim.socket_path, network="regtest", wait_timeout=1)
    node.outgoing_history.page = page
    Follower(node, store).sweep_outgoing()
    node.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_a_restart_in_the_middle_of_a_payment(tmp: Path, version: str) -> None:
    """lnplugin and the node restart while a payment has a part in flight:
    the stored cursor did not pass its completed part, so the next start
    finds it whole; every payment is stored and announced once."""
    store = Store(tmp / "store.sqlite")
    try:
        with ClnSim(tmp / "sim", tmp / "rpc", version=version) as sim:
            a, b, c = _hash(1), _hash(2), _hash(3)
            for part in (1, 2, 3):
                sim.add_part(a, groupid=6, partid=part, amount_msat=1000, fee_msat=1)
            sim.set_part(a, 6, 1, "complete")
            sim.set_part(a, 6, 2, "complete")
            sim.add_part(b, groupid=2, partid=1, amount_msat=4000, fee_msat=4, status="complete")
            _sweep(sim, store, page=2)
            sim.restart()
            sim.set_part(a, 6, 3, "complete")
            sim.add_part(c, groupid=3, partid=1, amount_msat=500)
            sim.add_part(c, groupid=3, partid=2, amount_msat=500)
            sim.set_part(c, 3, 1, "complete")
            sim.set_part(c, 3, 2, "complete")
            _sweep(sim, store, page=2)
            _sweep(sim, store, page=2)
        with store.snapshot() as conn:
            rows = {h: invoices.by_hash(conn, h, "outgoing") for h in (a, b, c)}
            amounts = {h: (r.amount_msat, r.fee_msat) for h, r in rows.items() if r}
            announced = [e["type"] for e in events.after(conn, 0)]
            cursor = cursors.get(conn, cursors.OUTGOING)
        assert amounts == {a: (3000, 3), b: (4000, 4), c: (1000, 0)}
        assert announced == [events.OUTGOING_SETTLED] * 3
        assert cursor == (6 if version >= "v23.11" else 0)
    finally:
        store.close()
