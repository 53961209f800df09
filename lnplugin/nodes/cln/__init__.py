"""Core Lightning: the JSON-RPC adapter (`node`), its doctor checks (`doctor`),
the onion TLV parser (`tlv`) and the plugin's node-side hook logic (`plugin`)."""

from lnplugin.nodes.cln.node import ClnNode, version_tuple

__all__ = ["ClnNode", "version_tuple"]
