"""Generated LND gRPC stubs; regenerate with contrib/regen_lnd_stubs.py."""
