"""`lnplugin doctor --node lnd` against the LND simulator, run as the operator runs it."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from lnplugin.nodes.lnd.doctor import LND_BAKE, LND_BAKE_METHODS
from lnplugin.nodes.lnd.macaroon import RPC_PERMISSIONS
from lnplugin_sim.lnd_sim import LndSim, mint_macaroon
from tests import e2e
from tests.test_lnd_e2e import doc_bakes

tmp = e2e.fixture_tmp  # a short directory under /tmp


@pytest.fixture
def sim(tmp: Path) -> Iterator[LndSim]:
    with LndSim(tmp / "lnd", network="regtest", port=0) as s:
        yield s


def doctor(
    tmp: Path, target: str, cert: Path, macaroon: Path | str, network: str = "regtest"
) -> tuple[int, list[str]]:
    """Exit code and the LND checks' lines (the data-dir checks are tested on their own)."""
    code, lines = e2e.run_doctor(
        tmp / "data", "--node", "lnd", "--lnd-host", target, "--lnd-cert", str(cert),
        "--lnd-macaroon", str(macaroon), "--network", network,
    )  # fmt: skip
    return code, e2e.node_lines(lines)


def closed_port() -> str:
    """HOST:PORT where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def baked(tmp: Path, name: str, permissions: set[str], mode: int = 0o600) -> Path:
    """A macaroon file in lnd's format granting `permissions` (the sim does not
    know it, so only the offline file check can judge it)."""
    path = tmp / name
    path.write_bytes(mint_macaroon(frozenset(permissions)))
    path.chmod(mode)
    return path


def names(lines: list[str]) -> list[str]:
    return [line.split(":")[0] for line in lines]


def test_admin_macaroon_works_but_warns_that_it_can_spend(tmp: Path, sim: LndSim) -> None:
    code, lines = doctor(tmp, sim.target, sim.cert_path, sim.admin_macaroon_path)
    assert code == 0, lines  # a warning, not a failure: lnplugin works with it
    assert names(lines) == [
        "OK   cert file",
        "WARN macaroon file",
        "OK   address",
        "OK   TLS",
        "OK   permissions",
        "OK   network",
        "OK   least privilege",
    ]
    spend = lines[1]
    assert "can spend the node's funds" in spend
    assert "offchain:write" in spend and "onchain:write" in spend
    assert spend.endswith(LND_BAKE)
    assert "invoices:read invoices:write offchain:read info:read" in lines[4]
    assert lines[-1].endswith(LND_BAKE)


def test_a_node_that_never_made_an_invoice_passes(tmp: Path, sim: LndSim) -> None:
    """lnd's bbolt store answers the LookupInvoiceV2 probe with "there are no
    existing invoices" (status UNKNOWN, not NOT_FOUND) until its first invoice:
    that still proves invoices:write, on a new node and on a used one alike."""
    for _ in range(2):
        code, lines = doctor(tmp, sim.target, sim.cert_path, sim.invoice_macaroon_path)
        assert code == 0, lines
        perms = next(line for line in lines if line.split(":")[0].endswith("permissions"))
        assert "invoices:write" not in perms.split("bake")[0], perms  # not missing
        assert "failed" not in perms, perms
        sim.create_invoice(1000)


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


def test_unreachable_still_checks_the_cert_and_macaroon_files(tmp: Path, sim: LndSim) -> None:
    target = sim.target
    sim.stop()
    code, lines = doctor(tmp, target, sim.cert_path, sim.admin_macaroon_path)
    assert code == 1
    assert names(lines) == ["OK   cert file", "WARN macaroon file", "FAIL address"], lines
    assert lines[2].startswith(f"FAIL address: cannot connect to {target} (127.0.0.1 port ")
    assert "can spend" in lines[1]


def test_every_resolved_address_is_tried_and_named(tmp: Path, sim: LndSim) -> None:
    port = closed_port().rsplit(":", 1)[1]
    code, lines = doctor(tmp, f"localhost:{port}", sim.cert_path, sim.invoice_macaroon_path)
    assert code == 1
    address = next(line for line in lines if "address" in line.split(":")[0])
    resolved = {info[4][0] for info in socket.getaddrinfo("localhost", int(port))}
    assert all(f"{ip} port {port}" in address for ip in resolved), (resolved, address)


def test_the_stock_invoice_macaroon_cannot_spend(tmp: Path) -> None:
    sim = LndSim(tmp / "lnd", network="regtest")  # never started: only its files
    try:
        _, lines = doctor(tmp, closed_port(), sim.cert_path, sim.invoice_macaroon_path)
    finally:
        sim.close()
    line = next(line for line in lines if line.split(":")[0].endswith("macaroon file"))
    assert line.startswith("OK   macaroon file") and "cannot spend" in line
    assert "more than lnplugin needs: address:read address:write onchain:read" in line


def test_a_least_privilege_macaroon_is_ok_offline(tmp: Path, sim: LndSim) -> None:
    path = baked(tmp, "lnplugin.macaroon", {"invoices:read", "invoices:write", "offchain:read"})
    code, lines = doctor(tmp, closed_port(), sim.cert_path, path)
    assert lines[1] == (
        f"OK   macaroon file: {path} grants invoices:read invoices:write offchain:read; "
        "cannot spend"
    )
    assert code == 1  # the address, not the files
    _, hex_lines = doctor(tmp, closed_port(), sim.cert_path, path.read_bytes().hex())
    assert hex_lines[1].startswith("OK   macaroon file: the hex macaroon grants")


@pytest.mark.parametrize(
    "permissions,mode,expect",
    [
        ({"invoices:read"}, 0o600, "FAIL macaroon file: {path} lacks invoices:write"),
        ({"invoices:read", "invoices:write"}, 0o644, "WARN macaroon file: {path} (mode 0644)"),
        (
            {"invoices:read", "invoices:write", "uri:/routerrpc.Router/SendPaymentV2"},
            0o600,
            "WARN macaroon file: {path} can spend",
        ),
        (
            {"invoices:read", "invoices:write", "macaroon:generate"},
            0o600,
            "WARN macaroon file: {path} can spend the node's funds: macaroon:generate",
        ),
    ],
)
def test_the_macaroon_file_is_judged_without_the_node(
    tmp: Path, sim: LndSim, permissions: set[str], mode: int, expect: str
) -> None:
    path = baked(tmp, "m.macaroon", permissions, mode)
    _, lines = doctor(tmp, closed_port(), sim.cert_path, path)
    assert lines[1].startswith(expect.format(path=path)), lines


def test_missing_cert_file_fails_but_the_macaroon_is_still_checked(tmp: Path, sim: LndSim) -> None:
    code, lines = doctor(tmp, sim.target, tmp / "no-such.cert", sim.invoice_macaroon_path)
    assert code == 1
    assert lines[0] == f"FAIL cert file: {tmp / 'no-such.cert'} does not exist (--lnd-cert)"
    assert lines[1].startswith("OK   macaroon file")
    assert names(lines)[2:] == ["OK   address"]  # no handshake without a cert


def test_a_macaroon_lnd_did_not_bake_is_reported_not_guessed(tmp: Path, sim: LndSim) -> None:
    path = tmp / "random.macaroon"
    path.write_bytes(b"\x02\x01\x03lnd-sim" + bytes(48))
    path.chmod(0o600)
    _, lines = doctor(tmp, closed_port(), sim.cert_path, path)
    assert lines[1].startswith(f"WARN macaroon file: cannot read the permissions in {path}")


def doctor_without_cert(tmp: Path, sim: LndSim, trusted: Path | None) -> tuple[int, list[str]]:
    """No --lnd-cert, as `serve` allows for an lnd whose certificate a CA the
    system trusts has signed; `trusted` stands in for the system's CAs
    (Python's and gRPC's bundles)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LNPLUGIN_")}
    if trusted is not None:
        env |= {"SSL_CERT_FILE": str(trusted), "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(trusted)}
    proc = e2e.run(
        tmp / "data", "doctor", "--node", "lnd", "--lnd-host", sim.target,
        "--lnd-macaroon", str(sim.admin_macaroon_path), "--network", "regtest", env=env,
    )  # fmt: skip
    return proc.returncode, e2e.node_lines(proc.stdout.splitlines())


def test_no_cert_is_fine_when_the_systems_cas_vouch_for_lnd(tmp: Path, sim: LndSim) -> None:
    """`serve` runs without --lnd-cert against such an lnd; doctor agrees."""
    code, lines = doctor_without_cert(tmp, sim, trusted=sim.cert_path)
    assert code == 0, lines
    assert lines[0].startswith("OK   cert file: none given (--lnd-cert / LNPLUGIN_LND_CERT)")
    assert lines[3].startswith("OK   TLS: handshake ok with the system's CAs"), lines
    # Past TLS, over gRPC with the same trust: lnd answered every probe.
    assert "OK   network" in names(lines) and not any(line.startswith("FAIL") for line in lines)


def test_no_cert_fails_the_handshake_when_they_do_not(tmp: Path, sim: LndSim) -> None:
    code, lines = doctor_without_cert(tmp, sim, trusted=None)
    assert code == 1
    assert lines[3].startswith(f"FAIL TLS: {sim.target}'s certificate is not one the system's")
    assert lines[3].endswith("give lnd's tls.cert with --lnd-cert")
    assert len(lines) == 4  # nothing is asked of a node whose TLS failed


# -- per-method macaroons (lnd's `uri:` permissions) ------------------------------

ALL_METHODS = [f"uri:{method}" for method in RPC_PERMISSIONS]
# What docs/lnd.md used to recommend: no hold invoice methods.
WITHOUT_HOLD = [
    p
    for p in ALL_METHODS
    if not p.startswith(
        tuple(
            f"uri:/invoicesrpc.Invoices/{m}"
            for m in ("AddHoldInvoice", "SettleInvoice", "CancelInvoice", "SubscribeSingleInvoice")
        )
    )
]


def test_the_bakes_in_docs_lnd_md_are_the_ones_doctor_gives(tmp: Path) -> None:
    """An operator who copies doctor's bake line gets what docs/lnd.md shows."""
    bakes = doc_bakes()
    assert " ".join(bakes["entity"]) == LND_BAKE.split("lnplugin.macaroon ", 1)[1]
    assert " ".join(bakes["uri"]) == LND_BAKE_METHODS.split("lnplugin.macaroon ", 1)[1]
    assert bakes["uri"] == ALL_METHODS


def test_a_complete_per_method_macaroon_passes(tmp: Path, sim: LndSim) -> None:
    path = sim.bake(ALL_METHODS)
    code, lines = doctor(tmp, sim.target, sim.cert_path, path)
    assert code == 0, lines
    assert all(line.startswith("OK ") for line in lines), lines
    assert "more than lnplugin needs" not in lines[1]
    assert lines[4] == (
        "OK   permissions: granted LookupInvoice ListInvoices LookupInvoiceV2 ListPayments "
        "GetInfo (all probed)"
    )
    assert lines[-1] == f"OK   least privilege: {LND_BAKE_METHODS}"


def test_a_per_method_macaroon_without_the_hold_methods_warns_what_stops(
    tmp: Path, sim: LndSim
) -> None:
    """The bake docs/lnd.md used to give: lnplugin runs, but offers no hold
    invoices and refuses cancel; doctor names each method and its loss."""
    path = sim.bake(WITHOUT_HOLD)
    code, lines = doctor(tmp, sim.target, sim.cert_path, path)
    assert code == 0, lines
    line = lines[1]
    assert line.startswith(f"WARN macaroon file: {path} grants uri:"), lines
    assert "; but lacks AddHoldInvoice (no hold invoices" in line
    assert "SettleInvoice (no hold invoices: they could not be settled)" in line
    assert "CancelInvoice (no hold invoices, and invoices cannot be canceled" in line
    assert "SubscribeSingleInvoice (a paid hold invoice is seen ACCEPTED only" in line
    assert line.endswith(LND_BAKE_METHODS)
    assert "more than lnplugin needs" not in line
    assert lines[4].startswith("OK   permissions"), lines  # what it has, lnd grants


def test_a_per_method_macaroon_without_a_required_method_fails(tmp: Path, sim: LndSim) -> None:
    path = sim.bake([p for p in ALL_METHODS if not p.endswith("/SubscribeInvoices")])
    code, lines = doctor(tmp, sim.target, sim.cert_path, path)
    assert code == 1, lines
    assert lines[1].startswith(
        f"FAIL macaroon file: {path} lacks SubscribeInvoices (cannot follow settlements): "
        "lnplugin cannot work without the first 1;"
    ), lines
    assert lines[1].endswith(LND_BAKE_METHODS)


def test_a_per_method_macaroon_without_only_the_probe_method_warns(tmp: Path, sim: LndSim) -> None:
    """LookupInvoiceV2 stands in for invoices:write in the probes; a per-method
    macaroon without it can still create invoices, so that is a warning, not
    "missing invoices:write (cannot create invoices)"."""
    path = sim.bake([p for p in ALL_METHODS if not p.endswith("/LookupInvoiceV2")])
    code, lines = doctor(tmp, sim.target, sim.cert_path, path)
    assert code == 0, lines
    assert lines[1].startswith("WARN macaroon file") and "lacks LookupInvoiceV2" in lines[1]
    assert lines[4].startswith("WARN permissions: missing LookupInvoiceV2 (doctor cannot"), lines
    assert "invoices:write" not in lines[4].split("bake one with")[0]


def test_an_expired_cert_file_says_how_lnd_replaces_it(tmp: Path, sim: LndSim) -> None:
    """lnd replaces an expired tls.cert whenever it starts (not only with
    `tlsautorefresh`, which is about changed IPs and domains, and which the
    message used to misspell as a condition)."""
    import datetime as dt

    from lnplugin_sim.lnd_sim import self_signed_cert

    now = dt.datetime.now(dt.UTC)
    pem, _ = self_signed_cert(now - dt.timedelta(days=400), now - dt.timedelta(days=35))
    path = tmp / "old-tls.cert"
    path.write_bytes(pem)
    code, lines = doctor(tmp, sim.target, path, sim.invoice_macaroon_path)
    assert code == 1
    expired = f"{now - dt.timedelta(days=35):%Y-%m-%d}"
    assert lines[0] == (
        f"FAIL cert file: {path} expired {expired}: lnd makes a new tls.cert when it "
        "restarts; restart it and copy the new one"
    )
