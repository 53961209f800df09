"""`lnplugin doctor` against the CLN simulator, run as the operator runs it."""

from __future__ import annotations

import os
from pathlib import Path

from lnplugin.nodes.cln.doctor import EVEN_TLV_TYPES
from lnplugin_sim.cln_sim import ClnSim
from tests import e2e

tmp = e2e.fixture_tmp  # a short directory under /tmp: the sim's socket lives there


def doctor(tmp: Path, socket: str, network: str = "regtest") -> tuple[int, list[str]]:
    """Exit code and the CLN checks' lines (the data-dir checks are tested on their own)."""
    code, lines = e2e.run_doctor(
        tmp / "data", "--node", "cln", "--cln-socket", socket, "--network", network
    )
    return code, e2e.node_lines(lines)


def test_all_good_one_line_per_check(tmp: Path) -> None:
    with ClnSim(tmp / "sim", tmp / "rpc", accept_htlc_tlv_types=tuple(EVEN_TLV_TYPES)) as sim:
        code, lines = doctor(tmp, sim.socket_path)
    assert code == 0, lines
    assert [line.split(":")[0] for line in lines] == [
        "OK   socket",
        "OK   version",
        "OK   network",
        "OK   even TLV types",
    ]
    assert "mode 0600" in lines[0] and "v26.06.6" in lines[1]


def test_missing_even_types_and_open_socket_warn(tmp: Path) -> None:
    with ClnSim(tmp / "sim", tmp / "rpc", accept_htlc_tlv_types=(133773310,)) as sim:
        os.chmod(sim.socket_path, 0o666)
        code, lines = doctor(tmp, sim.socket_path)
    assert code == 0, lines  # warnings only
    assert lines[0].startswith("WARN socket") and "0666" in lines[0]
    tlv = lines[-1]
    assert tlv.startswith("WARN even TLV types")
    assert "34349334 (chat message)" in tlv and "accept-htlc-tlv-type=N" in tlv
    assert "133773310" not in tlv


def test_wrong_network_and_old_version(tmp: Path) -> None:
    with ClnSim(tmp / "sim", tmp / "rpc", version="v23.05") as sim:
        code, lines = doctor(tmp, sim.socket_path, network="bitcoin")
    assert code == 1
    assert any(line.startswith("WARN version") and "waitanyinvoice" in line for line in lines)
    assert any(line.startswith("FAIL network") and "regtest" in line for line in lines)


def test_no_socket_fails_with_the_fix(tmp: Path) -> None:
    code, lines = doctor(tmp, str(tmp / "nope"))
    assert code == 1
    assert lines == [f"FAIL socket: {tmp / 'nope'} does not exist: is lightningd running?"]


class Silent:
    """A unix socket that takes connections and never answers: a wedged
    lightningd (or something else listening at its path). It never calls
    accept(): the kernel completes each connection into the backlog, and
    what the client sends is buffered, unread."""

    def __init__(self, path: Path) -> None:
        import socket

        self.path = str(path)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen(64)

    def close(self) -> None:
        self.server.close()


def test_a_node_that_never_answers_is_a_failed_check_not_a_hang(tmp: Path) -> None:
    silent = Silent(tmp / "rpc")
    try:
        code, lines = doctor(tmp, silent.path)
    finally:
        silent.close()
    assert code == 1, lines
    assert lines[0].split(":")[0].endswith("socket")  # the socket itself is fine (or warned)
    assert lines[1].startswith("FAIL getinfo: Core Lightning did not answer: ")
    assert "did not answer getinfo within 10 s" in lines[1]


def test_a_call_the_node_never_answers_is_unavailable_not_a_hang(tmp: Path) -> None:
    """A 503 for the API's create, a retry for the follower: bounded, as lnd's calls are."""
    import pytest

    from lnplugin.nodes.base import NodeUnavailable
    from lnplugin.nodes.cln.node import ClnNode

    silent = Silent(tmp / "rpc")
    node = ClnNode(silent.path, rpc_timeout=0.5)
    try:
        with pytest.raises(NodeUnavailable, match=r"did not answer getinfo within 0\.5 s"):
            node.get_info()
    finally:
        node.close()
        silent.close()
