"""`lnplugin doctor` for Core Lightning: socket, version, network, even TLV types.

One check per cause of "lnplugin does not see my payments / boostagrams",
each with its fix; `lnplugin.doctor` prints them and sets the exit code.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING, Any

from lnplugin.nodes.checks import Check

if TYPE_CHECKING:
    from lnplugin.config import Settings

# Even TLV types Podcasting 2.0 / chat senders use (docs/protocols.md#boostagram-tlv-records).
# lightningd strips even types it was not told to accept, so their data never arrives.
EVEN_TLV_TYPES: dict[int, str] = {
    34349334: "chat message",
    133773310: "Sphinx podcast metadata",
    818818: "Hive account",
    112111100: "LNPay wallet id",
    906608: "Fountain",
}


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
    reply = rpc("listconfigs")
    if "configs" in reply:
        return dict(reply["configs"])
    # Before v23.08: a flat object of option -> value.
    return {k: {"value_str": v} if not isinstance(v, dict) else v for k, v in reply.items()}


def checks(settings: Settings) -> list[Check]:
    """Socket, version, network, and the even TLV types plugin mode needs accepted."""
    from lnplugin.nodes.cln.node import ClnNode

    socket_check = _cln_socket(settings.cln_socket)
    if socket_check.status == "fail":
        return [socket_check]
    checks = [socket_check]
    # The node's own calls: bounded in time, so a node that accepts but never
    # answers is a failed check, not a doctor that hangs.
    node = ClnNode(str(settings.cln_socket), rpc_timeout=DOCTOR_TIMEOUT)
    try:
        return checks + _answers(node, settings)
    finally:
        node.close()


DOCTOR_TIMEOUT = 10.0  # seconds doctor waits for each answer


def _answers(node: Any, settings: Settings) -> list[Check]:
    """The checks that need lightningd to answer."""
    from pyln.client import RpcError

    from lnplugin.nodes.base import NodeError
    from lnplugin.nodes.cln.node import version_tuple

    checks: list[Check] = []
    rpc = node.rpc
    try:
        info = rpc("getinfo")
    except (NodeError, RpcError) as exc:
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
    except (NodeError, RpcError) as exc:
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
