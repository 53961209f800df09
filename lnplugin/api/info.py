"""Service info (`/info`, authenticated) and a health probe (`/health`, open)."""

from __future__ import annotations

import hmac
import sqlite3
from typing import Any

from flask import Blueprint, request

from lnplugin import __version__
from lnplugin.api import context
from lnplugin.api.auth import current_token, presents_token, require
from lnplugin.api.errors import APIError
from lnplugin.store.db import is_lock_contention

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
            # Credentials without info:read (LND's invoice.macaroon) get no
            # info, yet the follower may be talking to the node all along.
            "reachable": node is not None or svc.follower.status.connection == "connected",
        },
        "network": svc.settings.effective_network,
        "follower": svc.follower.status.as_dict(),
    }
    if svc.nwc is not None:
        body["nwc"] = svc.nwc.status()
    if svc.zaps is not None:
        body["zaps"] = svc.zaps.status()
    if svc.settings.node == "dev":
        body["notice"] = DEV_NOTICE
    return body


STATUS_KEY_HEADER = "X-Lnplugin-Status-Key"
OPERATOR_FIELDS = ("connection", "cursor", "head", "lag", "outgoing", "last_error")


@bp.get("/health")
def health() -> Any:
    """Open, for monitors: whether it runs and whether it follows the node.

    The rest (the follower's position, which counts settlements; its last
    error; the NWC relays; the zap receipt backlog) is for the operator, not
    for anyone who can reach the port: shown with a valid token of any scope, or with the status key
    `lnplugin status` reads from the data dir's lock file."""
    svc = context.service()
    status = svc.follower.status.as_dict()
    shown = OPERATOR_FIELDS if _operator() else ("connection",)
    body: dict[str, Any] = {
        "status": "ok",
        "version": __version__,
        "node": svc.settings.node,
        "follower": {k: status[k] for k in shown},
    }
    if shown is OPERATOR_FIELDS and svc.nwc is not None:
        body["nwc"] = svc.nwc.status()
    if shown is OPERATOR_FIELDS and svc.zaps is not None:
        body["zaps"] = svc.zaps.status()
    return body


def _operator() -> bool:
    """The request carries the status key, or a token that is valid now."""
    key = request.headers.get(STATUS_KEY_HEADER)
    if key is not None:
        return hmac.compare_digest(key.encode(), context.service().status_key.encode())
    if not presents_token():
        return False
    try:
        current_token()
    except APIError:  # invalid, revoked, over its limit: the open answer, not an error
        return False
    except sqlite3.OperationalError as exc:
        # A signing token's nonce could not be recorded while another process
        # holds the store: unchecked, so the open answer, not a 503 a monitor
        # would take for the service being down.
        if not is_lock_contention(exc):
            raise
        return False
    return True
