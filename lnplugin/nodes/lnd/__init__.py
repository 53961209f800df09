"""LND over gRPC: `LndNode` talks to lnd with TLS and a macaroon."""

from lnplugin.nodes.lnd.node import LndNode, NetworkMismatch

__all__ = ["LndNode", "NetworkMismatch"]
