"""Node adapters behind one interface (`lnplugin.nodes.base.Node`).

One package per node kind (`dev`, `lnd`, `cln`), each holding its adapter and
what else only that node needs (its doctor checks; for CLN the onion TLV
parser and the plugin's hook). The two functions here are the only places
that pick a package by kind. Both import lazily, so each adapter's
dependencies (grpc, pyln-client) load only when that node is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lnplugin.nodes.base import Feature, Node

if TYPE_CHECKING:
    from lnplugin.config import Settings
    from lnplugin.nodes.checks import Check


def make_node(settings: Settings) -> Node:
    """The node the settings select."""
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


def doctor_checks(settings: Settings) -> list[Check] | None:
    """`lnplugin doctor`'s checks for the selected node; None when it has none."""
    if settings.node == "dev":
        from lnplugin.nodes.dev import doctor as dev_doctor

        return dev_doctor.checks(settings)
    if settings.node == "lnd":
        from lnplugin.nodes.lnd import doctor as lnd_doctor

        return lnd_doctor.checks(settings)
    if settings.node == "cln":
        from lnplugin.nodes.cln import doctor as cln_doctor

        return cln_doctor.checks(settings)
    return None


__all__ = ["Feature", "Node", "doctor_checks", "make_node"]
