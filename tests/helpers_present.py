"""`present(x)`: a value a look-up may answer None for, which the test expects.

It fails at the look-up, naming what was missing, rather than as an
AttributeError further on; and it tells the type checker the value is there.
"""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def present(value: T | None, what: str = "the looked-up value") -> T:
    assert value is not None, f"{what} is missing"
    return value
