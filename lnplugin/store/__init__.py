"""SQLite persistence through sqlite-utils: one file, WAL, versioned schema."""

from lnplugin.store.db import Store, StoreError

__all__ = ["Store", "StoreError"]
