"""`lnplugin doctor` for LND: cert and macaroon files, address, TLS, permissions, network.

One check per cause of "lnplugin cannot reach / follow my node", each with
its fix; `lnplugin.doctor` prints them and sets the exit code. The cert and
macaroon files are checked first and on their own, so a node that is down
still gets its credentials checked: the macaroon's permissions are read from
the file (`lnplugin.nodes.lnd.macaroon`), which is how doctor warns about a
macaroon that can spend. With the node up, permissions are also probed with
read-only calls (`LndNode.probe`), so doctor changes nothing.
"""

from __future__ import annotations

import datetime as _dt
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from lnplugin.nodes.checks import Check, Status
from lnplugin.nodes.lnd.macaroon import LND_BAKE, LND_BAKE_METHODS, RPC_PERMISSIONS, permits

if TYPE_CHECKING:
    from lnplugin.config import Settings

# What stops working without each method lnplugin calls, for a macaroon that
# grants methods one by one (`uri:`). lnplugin cannot work without the first four.
_METHOD_LOSS: dict[str, str] = {
    "/lnrpc.Lightning/AddInvoice": "cannot create invoices",
    "/lnrpc.Lightning/LookupInvoice": "cannot look invoices up (sweeps, hold invoices, cancel)",
    "/lnrpc.Lightning/ListInvoices": "cannot sweep for missed settlements",
    "/lnrpc.Lightning/SubscribeInvoices": "cannot follow settlements",
    # Hold invoices need all three (`lnd.node.HOLD_RPCS`): without one, none
    # is made, over HTTP or NWC, and NWC does not offer them.
    "/invoicesrpc.Invoices/AddHoldInvoice": "no hold invoices (POST /invoices with payment_hash, "
    "NWC make_hold_invoice)",
    "/invoicesrpc.Invoices/SettleInvoice": "no hold invoices: they could not be settled",
    "/invoicesrpc.Invoices/CancelInvoice": "no hold invoices, and invoices cannot be canceled",
    "/invoicesrpc.Invoices/SubscribeSingleInvoice": "a paid hold invoice is seen ACCEPTED only "
    "by the next sweep (up to a minute)",
    "/lnrpc.Lightning/ListPayments": "no outgoing history in /invoices/outgoing",
    "/lnrpc.Lightning/GetInfo": "no network check at startup",
    "/invoicesrpc.Invoices/LookupInvoiceV2": "doctor cannot probe it (read-only)",
}
_REQUIRED_METHODS = frozenset(
    {
        "/lnrpc.Lightning/AddInvoice",
        "/lnrpc.Lightning/LookupInvoice",
        "/lnrpc.Lightning/ListInvoices",
        "/lnrpc.Lightning/SubscribeInvoices",
    }
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
_NEEDED_OR_OPTIONAL = set(RPC_PERMISSIONS.values()) | {f"uri:{m}" for m in RPC_PERMISSIONS}


def _method_path(rpc: str) -> str:
    return next(m for m in RPC_PERMISSIONS if m.endswith(f"/{rpc}"))


def _per_method(perms: frozenset[str]) -> bool:
    """A macaroon that grants methods one by one (lnd's `uri:` permissions):
    judged method by method, since no entity:action tells what it allows."""
    return any(p.startswith("uri:") for p in perms)


def _missing_methods(perms: frozenset[str]) -> tuple[list[str], list[str]]:
    """The methods lnplugin calls that `perms` does not grant, as
    "Method (what stops working)": (required ones, optional ones)."""
    required: list[str] = []
    optional: list[str] = []
    for method, loss in _METHOD_LOSS.items():
        if not permits(perms, method):
            where = required if method in _REQUIRED_METHODS else optional
            where.append(f"{method.rsplit('/', 1)[1]} ({loss})")
    return required, optional


def _split_host(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    return host.strip("[]") or "localhost", int(port or 10009)


def _lnd_address(target: str) -> Check:
    """Connect to every address the host resolves to (localhost is often ::1 and
    127.0.0.1) and report them all when none answers, not just the first."""
    import socket

    try:
        host, port = _split_host(target)
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except ValueError:
        return Check("address", "fail", f"{target!r} is not HOST:PORT (--lnd-host)")
    except OSError as exc:
        return Check("address", "fail", f"cannot resolve {target}: {exc.strerror or exc}")
    errors: list[str] = []
    for family, kind, proto, _, addr in dict.fromkeys(infos):
        # getaddrinfo gives (host, port, ...) for the IP families asked for here
        shown = f"{addr[0]!s} port {addr[1]!s}"
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(5)
                sock.connect(addr)
        except OSError as exc:
            errors.append(f"{shown}: {exc.strerror or exc}")
            continue
        return Check("address", "ok", f"{target} accepts connections ({addr[0]!s})")
    return Check(
        "address",
        "fail",
        f"cannot connect to {target} ({'; '.join(errors)}): is lnd running, and does its "
        "rpclisten include this address?",
    )


def _cert_file(cert_path: os.PathLike[str] | str | None) -> Check:
    """The tls.cert file alone: readable, a certificate, not expired (no node needed)."""
    import ssl

    if cert_path is None:
        # As `serve` does: lnd's certificate must then be one a CA this
        # system trusts has signed (the TLS check below tries it).
        return Check(
            "cert file",
            "ok",
            "none given (--lnd-cert / LNPLUGIN_LND_CERT): lnd's certificate must be signed by "
            "a CA this system trusts",
        )
    path = Path(cert_path).expanduser()
    try:
        pem = path.read_text("ascii")
        ssl.PEM_cert_to_DER_cert(pem.strip())
    except FileNotFoundError:
        return Check("cert file", "fail", f"{path} does not exist (--lnd-cert)")
    except OSError as exc:
        return Check(
            "cert file", "fail", f"cannot read {path} as uid {os.getuid()}: {exc.strerror}"
        )
    except (ValueError, UnicodeDecodeError):
        return Check("cert file", "fail", f"{path} is not a PEM certificate (lnd's tls.cert)")
    expires = _not_after(path)
    if expires is None:
        return Check("cert file", "ok", f"{path} is a PEM certificate")
    now = _dt.datetime.now(_dt.UTC)
    if expires < now:
        return Check(
            "cert file",
            "fail",
            # lnd's TLS manager replaces an expired certificate at start,
            # whatever its settings (tlsautorefresh is about changed IPs and
            # domains, not expiry).
            f"{path} expired {expires:%Y-%m-%d}: lnd makes a new tls.cert when it restarts; "
            "restart it and copy the new one",
        )
    if expires - now < _dt.timedelta(days=30):
        return Check("cert file", "warn", f"{path} expires {expires:%Y-%m-%d}: renew it soon")
    return Check("cert file", "ok", f"{path} (expires {expires:%Y-%m-%d})")


def _not_after(path: Path) -> _dt.datetime | None:
    """The certificate's expiry, through the standard library's own decoder
    (doctor must run without the test extras' `cryptography`); None if this
    Python does not offer it."""
    import ssl

    decode = getattr(getattr(ssl, "_ssl", None), "_test_decode_cert", None)
    if decode is None:
        return None
    try:
        not_after = decode(str(path)).get("notAfter")
        return _dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), _dt.UTC)
    except (ssl.SSLError, ValueError, TypeError, OSError):
        return None


def _macaroon_file(value: str | None) -> Check:
    """The macaroon alone: readable, not open to every user, and what it grants.

    Warns when it can spend (an `admin.macaroon`): lnplugin never spends, so a
    leaked lnplugin host should not be able to either.
    """
    from lnplugin.nodes.lnd.macaroon import MacaroonFormatError, decode

    if not value:
        return Check(
            "macaroon file", "fail", "no --lnd-macaroon / LNPLUGIN_LND_MACAROON; " + LND_BAKE
        )
    from lnplugin.nodes.lnd.node import is_file

    path = Path(value).expanduser()
    where = str(path)
    try:
        if is_file(value):
            raw = path.read_bytes()
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o004:
                return Check(
                    "macaroon file",
                    "warn",
                    f"{path} (mode {mode:04o}) is readable by every user; it is a bearer "
                    "credential: chmod 0600 or 0640",
                )
        else:
            raw = bytes.fromhex(value.strip())
            where = "the hex macaroon"
    except OSError as exc:
        return Check(
            "macaroon file", "fail", f"cannot read {path} as uid {os.getuid()}: {exc.strerror}"
        )
    except ValueError:
        return Check("macaroon file", "fail", f"{value[:40]!r} is neither a readable file nor hex")
    try:
        macaroon = decode(raw)
    except MacaroonFormatError as exc:
        return Check(
            "macaroon file",
            "warn",
            f"cannot read the permissions in {where} ({exc}); is it a macaroon lnd baked?",
        )
    perms = macaroon.permissions
    spending = macaroon.spending()
    if spending:
        return Check(
            "macaroon file",
            "warn",
            f"{where} can spend the node's funds: {'; '.join(spending)}. lnplugin never "
            f"spends; give it one that cannot: {LND_BAKE}",
        )
    extra = sorted(perms - _NEEDED_OR_OPTIONAL)
    detail = f"{where} grants {' '.join(sorted(perms))}; cannot spend"
    if extra:
        detail += f" (more than lnplugin needs: {' '.join(extra)})"
    if macaroon.caveats:
        detail += f"; caveats: {', '.join(macaroon.caveats)}"
    if _per_method(perms):
        required, optional = _missing_methods(perms)
        if required:
            return Check(
                "macaroon file",
                "fail",
                f"{where} lacks {'; '.join(required + optional)}: lnplugin cannot work without "
                f"the first {len(required)}; {LND_BAKE_METHODS}",
            )
        if optional:
            return Check(
                "macaroon file",
                "warn",
                f"{detail}; but lacks {'; '.join(optional)}; {LND_BAKE_METHODS}",
            )
        return Check("macaroon file", "ok", detail)
    lacking = sorted(_REQUIRED - perms)
    if lacking:
        return Check(
            "macaroon file",
            "fail",
            f"{where} lacks {' '.join(lacking)} (lnplugin needs both); {LND_BAKE}",
        )
    return Check("macaroon file", "ok", detail)


def _permissions(hex_macaroon: str) -> frozenset[str]:
    """What the macaroon grants, as its file says; empty when it cannot be read
    (the macaroon file check has said so already)."""
    from lnplugin.nodes.lnd.macaroon import MacaroonFormatError, decode

    try:
        return decode(bytes.fromhex(hex_macaroon)).permissions
    except (MacaroonFormatError, ValueError):
        return frozenset()


def _lnd_tls(target: str, cert_path: os.PathLike[str] | str | None) -> Check:
    """Load tls.cert and verify a handshake with it, hostname included, as gRPC does
    (without one, with the system's CAs, as `serve` then does).

    Standard library only: doctor must run where lnplugin runs, without extras.
    """
    import socket
    import ssl

    trusted = f"{cert_path}" if cert_path is not None else "the system's CAs"
    try:
        if cert_path is None:
            context = ssl.create_default_context()
        else:
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
        if cert_path is None:
            return Check(
                "TLS",
                "fail",
                f"{target}'s certificate is not one the system's CAs vouch for "
                f"({exc.verify_message}): give lnd's tls.cert with --lnd-cert",
            )
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
        return Check("TLS", "ok", f"handshake ok with {trusted}")
    expires = _dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), _dt.UTC)
    if expires - _dt.datetime.now(_dt.UTC) < _dt.timedelta(days=30):
        return Check(
            "TLS", "warn", f"handshake ok, but tls.cert expires {expires:%Y-%m-%d}: renew it"
        )
    return Check("TLS", "ok", f"handshake ok with {trusted} (expires {expires:%Y-%m-%d})")


def checks(settings: Settings) -> list[Check]:
    """Cert and macaroon files (always), then address, TLS, macaroon permissions
    (read-only probes) and network while the node answers; one line each."""
    from lnplugin.nodes.base import (
        NodeCredentialsRejected,
        NodeError,
        NodeInfo,
        NodePermissionDenied,
    )
    from lnplugin.nodes.lnd.node import LndNode, load_macaroon, to_node_info

    cert = _cert_file(settings.lnd_cert)
    macaroon = _macaroon_file(settings.lnd_macaroon)
    address = _lnd_address(settings.lnd_host)
    checks = [cert, macaroon, address]
    if address.status == "fail" or cert.status == "fail":
        return checks
    tls = _lnd_tls(settings.lnd_host, settings.lnd_cert)
    checks.append(tls)
    if tls.status == "fail" or macaroon.status == "fail":
        return checks
    try:
        hex_macaroon = load_macaroon(settings.lnd_macaroon)
        if hex_macaroon is None:
            checks.append(
                Check("macaroon", "fail", "no --lnd-macaroon / LNPLUGIN_LND_MACAROON; " + LND_BAKE)
            )
            return checks
    except NodeError as exc:
        checks.append(Check("macaroon", "fail", str(exc)))
        return checks
    # A per-method macaroon is probed method by method: a refused
    # LookupInvoiceV2 then says nothing about AddInvoice, as it does of
    # invoices:write.
    per_method = _per_method(_permissions(hex_macaroon))
    bake = LND_BAKE_METHODS if per_method else LND_BAKE
    node = LndNode.from_settings(settings)
    try:
        granted: dict[str, None] = {}  # ordered like _LND_PROBES
        missing: dict[str, str] = {}
        fatal = False
        info: NodeInfo | None = None
        for permission, rpc, loss in _LND_PROBES:
            try:
                reply = node.probe(rpc)
            except NodeCredentialsRejected as exc:
                checks.append(Check("macaroon", "fail", str(exc)))
                return checks
            except NodePermissionDenied:
                if per_method:
                    method = _method_path(rpc)
                    missing[rpc] = f"{rpc} ({_METHOD_LOSS[method]})"
                    fatal |= method in _REQUIRED_METHODS
                else:
                    missing.setdefault(permission, f"{permission} ({rpc}: {loss})")
                    fatal |= permission in _REQUIRED
                continue
            except NodeError as exc:
                checks.append(Check("permissions", "fail", f"{rpc} failed: {exc}"))
                return checks
            granted[rpc if per_method else permission] = None
            if rpc == "GetInfo":
                info = to_node_info(reply)
        if not missing:
            checks.append(
                Check(
                    "permissions",
                    "ok",
                    "granted "
                    + " ".join(granted)
                    + (" (all probed)" if per_method else " (all needed)"),
                )
            )
        else:
            status: Status = "fail" if fatal else "warn"
            checks.append(
                Check(
                    "permissions",
                    status,
                    "missing " + "; ".join(missing.values()) + f"; bake one with: {bake}",
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
        checks.append(Check("least privilege", "ok", bake))
        return checks
    finally:
        node.close()
