"""Node adapters behind one interface (`lnplugin.nodes.base.Node`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lnplugin.nodes.base import Node

if TYPE_CHECKING:
    from lnplugin.config import Settings


def make_node(settings: Settings) -> Node:
    """The node the settings select. Imports lazily so each adapter's
    dependencies (grpc, pyln-client) load only when that node is used."""
    if settings.node == "dev":
        from lnplugin.nodes.dev import DevNode

        return DevNode(settings.data_dir, settings.effective_network)
    if settings.node == "lnd":
        from lnplugin.nodes.lnd import LndNode

        return LndNode.from_settings(settings)
    if settings.node == "cln":
        from lnplugin.nodes.cln import ClnNode

        return ClnNode.from_settings(settings)
    raise ValueError(f"unknown node kind {settings.node!r}")


__all__ = ["Node", "make_node"]
