"""LND over gRPC: `LndNode` talks to lnd with TLS and a macaroon; `doctor` checks the setup."""

import os

# Before gRPC's C core starts (it reads this once, when grpc is imported):
# otherwise it writes an INFO line to stderr for every failed TLS handshake,
# retry after retry, while the reason reaches lnplugin's log once
# (`node.translate`). An operator's own GRPC_VERBOSITY wins.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from lnplugin.nodes.lnd.node import LndNode

__all__ = ["LndNode"]
