"""`lnplugin doctor`: check the node connection and its configuration.

An operator's first question is "why does lnplugin not see my payments / my
boostagrams?". Each check answers one cause in one line, with the fix, so
the output can be pasted into an issue as is. There is a function per node
kind (`check_cln`, ...); `run` picks the one the settings select.
"""

from __future__ import annotations

import datetime as _dt
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lnplugin.config import Settings

Status = Literal["ok", "warn", "fail"]

# Even TLV types Podcasting 2.0 / chat senders use (PROTOCOLS.md D). lightningd
# strips even types it was not told to accept, so their data never arrives.
EVEN_TLV_TYPES: dict[int, str] = {
    34349334: "chat message",
    133773310: "Sphinx podcast metadata",
    818818: "Hive account",
    112111100: "LNPay wallet id",
    906608: "Fountain",
}


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    detail: str

    def line(self) -> str:
        return f"{self.status.upper():<4} {self.name}: {self.detail}"


def exit_code(checks: list[Check]) -> int:
    """1 when any check failed (warnings alone still exit 0)."""
    return 1 if any(c.status == "fail" for c in checks) else 0


# ---------------------------------------------------------------- Core Lightning


def _cln_socket(path: os.PathLike[str] | str | None) -> Check:
    if path is None:
        return Check(
            "socket", "fail", "no socket configured: set --cln-socket / LNPLUGIN_CLN_SOCKET"
        )
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return Check("socket", "fail", f"{path} does not exist: is lightningd running?")
    except PermissionError:
        return Check("socket", "fail", f"{path}: a parent directory is not accessible to this user")
    if not stat.S_ISSOCK(info.st_mode):
        return Check("socket", "fail", f"{path} is not a unix socket")
    mode = stat.S_IMODE(info.st_mode)
    if not os.access(path, os.R_OK | os.W_OK):
        return Check(
            "socket",
            "fail",
            f"{path} (mode {mode:04o}) is not read/writable by uid {os.getuid()}: run lnplugin "
            "as the CLN user, or set rpc-file-mode=0660 and add this user to its group",
        )
    if mode & 0o007:
        return Check(
            "socket",
            "warn",
            f"{path} mode {mode:04o}: every local user can control the node; use 0600 or 0660",
        )
    return Check("socket", "ok", f"{path} (mode {mode:04o})")


def _accepted_tlv_types(configs: dict[str, Any]) -> set[int]:
    """`accept-htlc-tlv-type` values (v23.08+), or the older comma list."""
    entry = configs.get("accept-htlc-tlv-type") or {}
    types = {int(v) for v in entry.get("values_int", [])}
    legacy = configs.get("accept-htlc-tlv-types") or {}
    text = legacy.get("value_str", "") if isinstance(legacy, dict) else str(legacy)
    types |= {int(t) for t in text.split(",") if t.strip().isdigit()}
    return types


def _listconfigs(rpc: Any) -> dict[str, Any]:
    reply = rpc.call("listconfigs")
    if "configs" in reply:
        return dict(reply["configs"])
    # Before v23.08: a flat object of option -> value.
    return {k: {"value_str": v} if not isinstance(v, dict) else v for k, v in reply.items()}


def check_cln(settings: Settings) -> list[Check]:
    """Socket, version, network, and the even TLV types plugin mode needs accepted."""
    from pyln.client import LightningRpc, RpcError

    from lnplugin.nodes.cln import version_tuple

    socket_check = _cln_socket(settings.cln_socket)
    if socket_check.status == "fail":
        return [socket_check]
    checks = [socket_check]
    rpc = LightningRpc(str(settings.cln_socket))
    try:
        info = rpc.call("getinfo")
    except (OSError, ValueError, RpcError) as exc:
        checks.append(Check("getinfo", "fail", f"Core Lightning did not answer: {exc}"))
        return checks
    version = str(info.get("version"))
    if version_tuple(version) < (23, 8):
        checks.append(
            Check(
                "version",
                "warn",
                f"{version} is older than v23.08: no `wait`, so lnplugin follows payments "
                "with waitanyinvoice (expiries are found by the periodic sweep only)",
            )
        )
    else:
        checks.append(Check("version", "ok", f"{version} (node {info.get('id', '?')[:16]}…)"))
    expected = settings.effective_network
    if info.get("network") == expected:
        checks.append(Check("network", "ok", expected))
    else:
        checks.append(
            Check(
                "network",
                "fail",
                f"the node is on {info.get('network')} but lnplugin expects {expected} "
                "(--network / LNPLUGIN_NETWORK)",
            )
        )
    try:
        accepted = _accepted_tlv_types(_listconfigs(rpc))
    except (OSError, ValueError, RpcError) as exc:
        checks.append(Check("even TLV types", "warn", f"listconfigs failed: {exc}"))
        return checks
    missing = [t for t in EVEN_TLV_TYPES if t not in accepted]
    if missing:
        names = ", ".join(f"{t} ({EVEN_TLV_TYPES[t]})" for t in missing)
        checks.append(
            Check(
                "even TLV types",
                "warn",
                f"not accepted, so CLN strips them from keysends: {names}; add one "
                "`accept-htlc-tlv-type=N` line each to the CLN config (see docs/cln.md)",
            )
        )
    else:
        checks.append(
            Check("even TLV types", "ok", "all accepted: " + ", ".join(map(str, EVEN_TLV_TYPES)))
        )
    return checks


# ---------------------------------------------------------------- LND

# What lnplugin needs, per PROTOCOLS.md A.1, and the least-privilege bake for it.
LND_BAKE = (
    "lncli bakemacaroon --save_to=lnplugin.macaroon "
    "invoices:read invoices:write offchain:read info:read"
)
# (permission, read-only probe RPC, what lnplugin loses without it). Each probe
# either succeeds or answers NOT_FOUND for a zero hash, so doctor creates
# nothing; LookupInvoiceV2 is read-only yet needs invoices:write, which makes
# it a harmless stand-in for AddInvoice.
_LND_PROBES: tuple[tuple[str, str, str], ...] = (
    ("invoices:read", "LookupInvoice", "cannot follow settlements"),
    ("invoices:read", "ListInvoices", "cannot sweep for missed settlements"),
    ("invoices:write", "LookupInvoiceV2", "cannot create invoices (AddInvoice)"),
    ("offchain:read", "ListPayments", "no outgoing history in /invoices/outgoing"),
    ("info:read", "GetInfo", "no network check at startup"),
)
_REQUIRED = {"invoices:read", "invoices:write"}


def _split_host(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    return host.strip("[]") or "localhost", int(port or 10009)


def _lnd_address(target: str) -> Check:
    import socket

    try:
        host, port = _split_host(target)
        with socket.create_connection((host, port), timeout=5):
            pass
    except ValueError:
        return Check("address", "fail", f"{target!r} is not HOST:PORT (--lnd-host)")
    except OSError as exc:
        return Check(
            "address",
            "fail",
            f"cannot connect to {target}: {exc.strerror or exc}: is lnd running, and does "
            "its rpclisten include this address?",
        )
    return Check("address", "ok", f"{target} accepts connections")


def _lnd_tls(target: str, cert_path: os.PathLike[str] | str | None) -> Check:
    """Load tls.cert and verify a handshake with it, hostname included, as gRPC does.

    Standard library only: doctor must run where lnplugin runs, without extras.
    """
    import socket
    import ssl

    if cert_path is None:
        return Check("TLS", "fail", "no --lnd-cert / LNPLUGIN_LND_CERT: copy lnd's tls.cert")
    try:
        pem = Path(cert_path).read_text("ascii")
        ssl.PEM_cert_to_DER_cert(pem.strip())
        context = ssl.create_default_context(cadata=pem)
    except OSError as exc:
        return Check("TLS", "fail", f"cannot read {cert_path}: {exc.strerror}")
    except (ValueError, ssl.SSLError):
        return Check("TLS", "fail", f"{cert_path} is not a PEM certificate (lnd's tls.cert)")
    host, port = _split_host(target)
    context.set_alpn_protocols(["h2"])
    try:
        with (
            socket.create_connection((host, port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            peer = tls.getpeercert() or {}
    except ssl.SSLCertVerificationError as exc:
        return Check(
            "TLS",
            "fail",
            f"{target} does not match {cert_path}: {exc.verify_message}; if lnd regenerated "
            "tls.cert copy the new one, or add tlsextraip/tlsextradomain for this host",
        )
    except (OSError, ssl.SSLError) as exc:
        return Check("TLS", "fail", f"TLS handshake with {target} failed: {exc}")
    not_after = peer.get("notAfter")
    if not isinstance(not_after, str):
        return Check("TLS", "ok", f"handshake ok with {cert_path}")
    expires = _dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), _dt.UTC)
    if expires - _dt.datetime.now(_dt.UTC) < _dt.timedelta(days=30):
        return Check(
            "TLS", "warn", f"handshake ok, but tls.cert expires {expires:%Y-%m-%d}: renew it"
        )
    return Check("TLS", "ok", f"handshake ok with {cert_path} (expires {expires:%Y-%m-%d})")


def _lnd_probe(node: Any, rpc: str) -> Any:
    """Call one probe RPC; returns its reply, or None for an expected NOT_FOUND."""
    from lnplugin.nodes.base import InvoiceNotFound
    from lnplugin.nodes.lnd.rpc import invoices_pb2, invoices_pb2_grpc
    from lnplugin.nodes.lnd.rpc import lightning_pb2 as ln

    zero = bytes(32)
    calls: dict[str, tuple[Any, Any]] = {
        "LookupInvoice": (node._ln.LookupInvoice, ln.PaymentHash(r_hash=zero)),
        "ListInvoices": (node._ln.ListInvoices, ln.ListInvoiceRequest(num_max_invoices=1)),
        "LookupInvoiceV2": (
            invoices_pb2_grpc.InvoicesStub(node._channel).LookupInvoiceV2,
            invoices_pb2.LookupInvoiceMsg(payment_hash=zero),
        ),
        "ListPayments": (node._ln.ListPayments, ln.ListPaymentsRequest(max_payments=1)),
        "GetInfo": (node._ln.GetInfo, ln.GetInfoRequest()),
    }
    method, request = calls[rpc]
    try:
        return node._call(method, request, timeout=10)
    except InvoiceNotFound:
        return None


def check_lnd(settings: Settings) -> list[Check]:
    """Address, TLS, macaroon permissions (read-only probes) and network, one line each."""
    from lnplugin.nodes.base import NodeError, NodeInfo, NodePermissionDenied
    from lnplugin.nodes.lnd.node import LndNode, load_macaroon, to_node_info

    checks = [_lnd_address(settings.lnd_host)]
    if checks[-1].status == "fail":
        return checks
    checks.append(_lnd_tls(settings.lnd_host, settings.lnd_cert))
    if checks[-1].status == "fail":
        return checks
    try:
        if load_macaroon(settings.lnd_macaroon) is None:
            checks.append(
                Check("macaroon", "fail", "no --lnd-macaroon / LNPLUGIN_LND_MACAROON; " + LND_BAKE)
            )
            return checks
    except NodeError as exc:
        checks.append(Check("macaroon", "fail", str(exc)))
        return checks
    node = LndNode.from_settings(settings)
    try:
        granted: dict[str, None] = {}  # ordered like _LND_PROBES
        missing: dict[str, str] = {}
        info: NodeInfo | None = None
        for permission, rpc, loss in _LND_PROBES:
            try:
                reply = _lnd_probe(node, rpc)
            except NodePermissionDenied as exc:
                if "rejected the macaroon" in str(exc):
                    checks.append(
                        Check("macaroon", "fail", f"{exc}: is it from this node? {LND_BAKE}")
                    )
                    return checks
                missing.setdefault(permission, f"{permission} ({rpc}: {loss})")
                continue
            except NodeError as exc:
                checks.append(Check("permissions", "fail", f"{rpc} failed: {exc}"))
                return checks
            granted[permission] = None
            if rpc == "GetInfo":
                info = to_node_info(reply)
        if not missing:
            checks.append(
                Check("permissions", "ok", "granted " + " ".join(granted) + " (all needed)")
            )
        else:
            status: Status = "fail" if _REQUIRED & set(missing) else "warn"
            checks.append(
                Check(
                    "permissions",
                    status,
                    "missing " + "; ".join(missing.values()) + f"; bake one with: {LND_BAKE}",
                )
            )
        expected = settings.effective_network
        if info is None:
            checks.append(
                Check(
                    "network",
                    "warn",
                    f"not checked (no info:read); make sure the node is on {expected}",
                )
            )
        elif info.network in (None, expected):
            checks.append(Check("network", "ok", f"{expected} (node {info.alias or '?'})"))
        else:
            checks.append(
                Check(
                    "network",
                    "fail",
                    f"the node is on {info.network} but lnplugin expects {expected} "
                    "(--network / LNPLUGIN_NETWORK)",
                )
            )
        checks.append(Check("least privilege", "ok", LND_BAKE))
        return checks
    finally:
        node.close()


CHECKS: dict[str, Callable[[Settings], list[Check]]] = {"cln": check_cln, "lnd": check_lnd}


def run(settings: Settings) -> list[Check]:
    """The checks for the node kind the settings select."""
    checker = CHECKS.get(settings.node)
    if checker is None:
        return [Check("node", "warn", f"no doctor checks for --node {settings.node} yet")]
    return checker(settings)
