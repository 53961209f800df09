"""`lnplugin doctor` for LND: address, TLS, macaroon permissions, network.

One check per cause of "lnplugin cannot reach / follow my node", each with
its fix; `lnplugin.doctor` prints them and sets the exit code. Permissions
are probed with read-only calls (`LndNode.probe`), so doctor changes nothing.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import TYPE_CHECKING

from lnplugin.nodes.checks import Check, Status

if TYPE_CHECKING:
    from lnplugin.config import Settings

# What lnplugin needs (docs/protocols.md#lnd-permissions-per-rpc) and the
# least-privilege bake for it.
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


def checks(settings: Settings) -> list[Check]:
    """Address, TLS, macaroon permissions (read-only probes) and network, one line each."""
    from lnplugin.nodes.base import NodeError, NodeInfo, NodePermissionDenied
    from lnplugin.nodes.lnd.node import LndNode, load_macaroon, to_node_info

    address = _lnd_address(settings.lnd_host)
    checks = [address]
    if address.status == "fail":
        return checks
    tls = _lnd_tls(settings.lnd_host, settings.lnd_cert)
    checks.append(tls)
    if tls.status == "fail":
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
                reply = node.probe(rpc)
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
