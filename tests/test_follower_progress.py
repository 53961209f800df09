"""The follower's view of the node's head, and backfill progress lines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lnplugin.follower import BackfillProgress, Follower
from lnplugin.nodes.base import Feature, FeedHead
from lnplugin.nodes.cln import ClnNode
from lnplugin.nodes.dev import DevNode
from lnplugin.store import Store
from lnplugin_sim.cln_sim import ClnSim
from tests import e2e

tmp = e2e.fixture_tmp


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_no_line_for_live_payments() -> None:
    progress = BackfillProgress(every=5, clock=Clock())
    assert progress.batch(1, 0, 1, 1, more=False) is None
    assert progress.batch(1, 1, 2, 2, more=False) is None


def test_a_backlog_logs_at_most_every_few_seconds_then_a_closing_line() -> None:
    clock = Clock()
    progress = BackfillProgress(every=5, clock=clock)
    assert progress.batch(1000, 0, 1000, 50_000, more=True) is None  # starts the count
    clock.now += 1
    assert progress.batch(1000, 1000, 2000, 50_000, more=True) is None  # too soon
    clock.now += 4
    line = progress.batch(1000, 2000, 3000, 50_000, more=True)
    assert line is not None
    assert "3000 updates applied" in line and "cursor 3000 of head 50000 (6%)" in line
    assert "600 updates/s" in line and "about 78 s left" in line
    clock.now += 1
    assert progress.batch(1000, 3000, 4000, 50_000, more=True) is None
    clock.now += 1
    done = progress.batch(10, 4000, 4010, 4010, more=False)
    assert done is not None and done.startswith("backfill done: 4010 updates in 7 s")
    # A later live payment starts nothing.
    assert progress.batch(1, 4010, 4011, 4011, more=False) is None


def test_a_short_backlog_logs_nothing() -> None:
    clock = Clock()
    progress = BackfillProgress(every=5, clock=clock)
    assert progress.batch(1000, 0, 1000, 1500, more=True) is None
    assert progress.batch(500, 1000, 1500, 1500, more=False) is None


def test_the_dev_nodes_head_is_its_real_head_before_the_backlog_is_read(tmp_path: Path) -> None:
    node = DevNode(tmp_path / "dev")
    for _ in range(30):
        node.keysend(1000, {})
    assert node.has_feature(Feature.FEED_HEAD) and isinstance(node, FeedHead)
    store = Store(tmp_path / "store.sqlite")
    follower = Follower(node, store)
    try:
        assert follower.status.as_dict()["lag"] == 0  # before asking: only the cursor is known
        follower.refresh_head()
        status = follower.status.as_dict()
        assert (status["cursor"], status["head"], status["lag"]) == (0, 30, 30)
    finally:
        node.close()
        store.close()


@pytest.fixture
def sim(tmp: Path) -> Iterator[ClnSim]:
    with ClnSim(tmp / "data", tmp / "rpc") as s:
        yield s


def test_cln_reports_its_updated_index_as_head(sim: ClnSim) -> None:
    node = ClnNode(sim.socket_path, network="regtest", wait_timeout=5)
    try:
        assert node.feed_head() == 0
        for _ in range(3):
            sim.keysend(1000)
        head = node.feed_head()
        assert head is not None and head >= 3
        assert head == max(update.cursor for update in node.settled_since(0))
    finally:
        node.close()
