"""Service info (`/info`, authenticated) and a health probe (`/health`, open)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from lnplugin import __version__
from lnplugin.api import context
from lnplugin.api.auth import require

bp = Blueprint("info", __name__)

DEV_NOTICE = "embedded dev node: not connected to any Lightning network; payments are simulated"


@bp.get("/info")
@require()
def info() -> Any:
    svc = context.service()
    node = svc.node_info()
    body: dict[str, Any] = {
        "version": __version__,
        "node": {
            "kind": svc.settings.node,
            "pubkey": node.pubkey if node else None,
            "alias": node.alias if node else None,
            "network": node.network if node else None,
            "version": node.version if node else None,
            "connected_to_network": node.connected_to_network if node else None,
            "reachable": node is not None,
        },
        "network": svc.settings.effective_network,
        "follower": svc.follower.status.as_dict(),
    }
    if svc.nwc is not None:
        body["nwc"] = svc.nwc.status()
    if svc.settings.node == "dev":
        body["notice"] = DEV_NOTICE
    return body


@bp.get("/health")
def health() -> Any:
    """No secrets here, so monitors and `lnplugin status` need no token."""
    svc = context.service()
    status = svc.follower.status.as_dict()
    return {
        "status": "ok",
        "version": __version__,
        "node": svc.settings.node,
        "follower": {
            k: status[k] for k in ("connection", "cursor", "head", "lag", "outgoing", "last_error")
        },
        **({"nwc": svc.nwc.status()} if svc.nwc is not None else {}),
    }
