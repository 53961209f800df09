"""lnplugin.run.server's startup helpers that need no running server."""

from __future__ import annotations

import gc
import weakref

from lnplugin.run.server import freeze_startup_objects


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_freezing_startup_objects_still_collects_later_garbage() -> None:
    before = _Node()
    try:
        freeze_startup_objects()
        # What existed at startup is out of the collector's sight...
        assert gc.get_freeze_count() > 0
        assert all(obj is not before for obj in gc.get_objects())
        # ...but a cycle made while serving is still found and freed.
        a, b = _Node(), _Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        gc.collect()
        assert gone() is None
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual
