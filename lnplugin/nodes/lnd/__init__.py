"""LND over gRPC: `LndNode` talks to lnd with TLS and a macaroon."""
