"""`lnplugin doctor --node lnd` against the LND simulator, run as the operator runs it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lnplugin.nodes.lnd.doctor import LND_BAKE
from lnplugin_sim.lnd_sim import LndSim
from tests import e2e

tmp = e2e.fixture_tmp  # a short directory under /tmp


@pytest.fixture
def sim(tmp: Path) -> Iterator[LndSim]:
    with LndSim(tmp / "lnd", network="regtest", port=0) as s:
        yield s


def doctor(
    tmp: Path, target: str, cert: Path, macaroon: Path, network: str = "regtest"
) -> tuple[int, list[str]]:
    return e2e.run_doctor(
        tmp / "data", "--node", "lnd", "--lnd-host", target, "--lnd-cert", str(cert),
        "--lnd-macaroon", str(macaroon), "--network", network,
    )  # fmt: skip


def names(lines: list[str]) -> list[str]:
    return [line.split(":")[0] for line in lines]


def test_admin_macaroon_all_good(tmp: Path, sim: LndSim) -> None:
    code, lines = doctor(tmp, sim.target, sim.cert_path, sim.admin_macaroon_path)
    assert code == 0, lines
    assert names(lines) == [
        "OK   address",
        "OK   TLS",
        "OK   permissions",
        "OK   network",
        "OK   least privilege",
    ]
    assert "invoices:read invoices:write offchain:read info:read" in lines[2]
    assert lines[-1].endswith(LND_BAKE)


def test_invoice_macaroon_warns_what_is_disabled(tmp: Path, sim: LndSim) -> None:
    code, lines = doctor(tmp, sim.target, sim.cert_path, sim.invoice_macaroon_path)
    assert code == 0, lines  # creating and following still work
    perms = next(line for line in lines if line.startswith("WARN permissions"))
    assert perms.startswith("WARN permissions: missing offchain:read"), lines
    assert "info:read" in perms and "invoices:" not in perms.split("bake")[0]
    assert "lncli bakemacaroon" in perms
    network = next(line for line in lines if line.split(":")[0].endswith("network"))
    assert network.startswith("WARN network") and "info:read" in network


def test_wrong_network_fails(tmp: Path, sim: LndSim) -> None:
    code, lines = doctor(tmp, sim.target, sim.cert_path, sim.admin_macaroon_path, "bitcoin")
    assert code == 1
    assert any(line.startswith("FAIL network") and "regtest" in line for line in lines), lines


def test_foreign_macaroon_and_cert_fail(tmp: Path, sim: LndSim) -> None:
    other = LndSim(tmp / "other", network="regtest")  # never started: only its files
    try:
        code, lines = doctor(tmp, sim.target, sim.cert_path, other.admin_macaroon_path)
        assert code == 1 and lines[-1].startswith("FAIL macaroon"), lines
        code, lines = doctor(tmp, sim.target, other.cert_path, sim.admin_macaroon_path)
        assert code == 1 and lines[-1].startswith("FAIL TLS"), lines
    finally:
        other.close()


def test_unreachable_fails_with_one_line(tmp: Path, sim: LndSim) -> None:
    target = sim.target
    sim.stop()
    code, lines = doctor(tmp, target, sim.cert_path, sim.admin_macaroon_path)
    assert code == 1
    assert len(lines) == 1 and lines[0].startswith(f"FAIL address: cannot connect to {target}")
