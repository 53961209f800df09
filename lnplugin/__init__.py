"""lnplugin: an Alby-Wallet-API-compatible invoice service for Lightning nodes."""

__version__ = "0.1.0"
