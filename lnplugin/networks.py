"""The Bitcoin networks lnplugin knows, and each one's BOLT11 currency prefix.

A module of its own because both the settings (which validate `--network`)
and the node adapters (which mint and check invoices) need it, and neither
should have to import the other for it.
"""

from __future__ import annotations

# BOLT11 currency prefix per network (testnet4 shares testnet's `tb`).
CURRENCY_BY_NETWORK = {
    "bitcoin": "bc",
    "testnet": "tb",
    "testnet4": "tb",
    "signet": "tbs",
    "regtest": "bcrt",
}
NETWORKS = tuple(CURRENCY_BY_NETWORK)
