"""LND over gRPC: `LndNode` talks to lnd with TLS and a macaroon; `doctor` checks the setup."""

from lnplugin.nodes.lnd.node import LndNode

__all__ = ["LndNode"]
