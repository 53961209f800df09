"""lnplugin.service: the service's lifecycle when its runner starts and stops
it from two threads, as the CLN plugin does (`init` starts it on a serving
thread; lightningd's `shutdown` stops it on its own)."""

from __future__ import annotations

import fcntl
import threading
import time
from pathlib import Path

import pytest

from lnplugin.config import load_settings
from lnplugin.datadir import LOCK_FILE
from lnplugin.service import Service
from lnplugin_sim.cln_sim import ClnSim
from tests import e2e

tmp = e2e.fixture_tmp  # a short directory under /tmp (the node's socket path)

# Threads `Service.start` starts; none may outlive `stop`.
WORKER_THREADS = ("lnplugin-webhook", "lnplugin-event-hub", "lnplugin-rss-payment", "lnplugin-feed")


def _claimed(data_dir: Path) -> bool:
    """Whether the data dir's lock is held. A lock of our own open file: a
    flock belongs to the open file, so this process's service holding it
    refuses ours (`datadir.lock_holder` does not name this process)."""
    try:
        handle = open(data_dir / LOCK_FILE)  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False


def _workers_alive(before: set[threading.Thread]) -> list[str]:
    """Worker threads started since `before` (other tests' services may
    still run threads of the same names in this process) and still alive."""
    return [
        t.name
        for t in threading.enumerate()
        if t not in before and t.name.startswith(WORKER_THREADS)
    ]


# A worker thread that dies of an exception (as workers started on a closed
# store did) fails the test rather than only warning.
@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_stop_while_the_service_is_starting_waits_for_the_start_then_stops_it_all(
    tmp: Path,
) -> None:
    """lightningd can send `shutdown` right after `init`, while the plugin's
    serving thread is still in `start` (here: waiting on the node's answer to
    the network check). `stop` used to run at once, beside it: it stopped
    workers while they were being started (once, under load: "cannot join
    thread before it is started", and the plugin stayed up until lightningd
    killed it), and the workers `start` went on to start ran on for good."""
    before = set(threading.enumerate())
    with ClnSim(tmp / "sim", tmp / "rpc") as sim:
        settings = load_settings(
            {
                "data_dir": str(tmp / "data"),
                "node": "cln",
                "cln_socket": str(sim.socket_path),
                "network": "regtest",
            },
            environ={},
        )
        service = Service.build(settings)
        sim.reply_delay = 1.5  # the start's network check waits on the node
        failed: list[BaseException] = []
        order: list[str] = []

        def start() -> None:
            try:
                service.start()
            except BaseException as exc:  # reported below
                failed.append(exc)
            order.append("started")

        starting = threading.Thread(target=start)
        starting.start()
        time.sleep(0.3)  # inside `start`, waiting on the node
        assert starting.is_alive()
        service.stop()
        order.append("stopped")
        starting.join(10)
        assert not starting.is_alive() and failed == []
        assert order == ["started", "stopped"]  # `stop` waited for the start
        e2e.wait_for(lambda: _workers_alive(before) == [], "the started workers to end")


def test_a_service_stopped_before_it_started_starts_nothing(tmp: Path) -> None:
    settings = load_settings({"data_dir": str(tmp / "data"), "node": "dev"}, environ={})
    service = Service.build(settings)
    before = set(threading.enumerate())
    service.stop()
    service.start()
    assert _workers_alive(before) == []
    assert not _claimed(settings.data_dir)  # nor was the data dir claimed
