"""The revocation mark: 16 bytes in the data dir that change whenever any process revokes a token.

Why: checking an API token is a query per request, and in a busy server every SQLite
statement hands Python's lock (the GIL) to the HTTP server's event loop and back, two context
switches that cost more than the query (docs/benchmarks.md). A server may keep the tokens it
has verified in memory (`tokens.LiveTokens`), but only if a token revoked by another process
(`lnplugin token revoke`) stops working at once, not when the server next happens to look.

So every revocation writes fresh random bytes here after its transaction commits, and the
server maps the file (`mmap`, shared with the page cache every process writes through): one
read of mapped memory per request, no system call, no statement, tells it whether anything
was revoked since it last looked. Random bytes rather than a counter, so that two processes
revoking at once cannot both write the same value the server has already seen.
"""

from __future__ import annotations

import mmap
import os
from contextlib import suppress
from pathlib import Path

from lnplugin.datadir import FILE_MODE
from lnplugin.datadir import TOKEN_REVOCATIONS as REVOCATIONS_FILE

__all__ = ["REVOCATIONS_FILE", "RevocationMark"]

SIZE = 16


class RevocationMark:
    """The mark of the store in `data_dir`: `read` it, or `change` it."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / REVOCATIONS_FILE
        self._map: mmap.mmap | None = None
        self._unmappable = False

    def read(self) -> bytes | None:
        """The mark now, or None when the file cannot be mapped (then nothing may be
        kept in memory on its account)."""
        mapped = self._map
        if mapped is None:
            if self._unmappable:
                return None
            mapped = self._map = self._mapped()
            if mapped is None:
                self._unmappable = True
                return None
        try:
            return mapped[:SIZE]
        except ValueError:  # closed by `close` meanwhile (the store is closing)
            return None

    def _mapped(self) -> mmap.mmap | None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        except OSError:
            return None
        try:
            if os.fstat(fd).st_size < SIZE:
                os.pwrite(fd, os.urandom(SIZE), 0)
            return mmap.mmap(fd, SIZE, prot=mmap.PROT_READ)
        except (OSError, ValueError):
            return None
        finally:
            os.close(fd)

    def change(self) -> None:
        """Write a new mark (after a revocation committed). Raises OSError when the file
        cannot be written: the caller must not report the revocation as in force then."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            os.pwrite(fd, os.urandom(SIZE), 0)
        finally:
            os.close(fd)

    def close(self) -> None:
        if self._map is not None:
            with suppress(BufferError, ValueError):
                self._map.close()
            self._map = None
