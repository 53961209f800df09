"""The embedded dev node: `DevNode`, a node with simulated payments and no network."""

from lnplugin.nodes.dev.node import KEY_FILE, DevNode

__all__ = ["KEY_FILE", "DevNode"]
