"""What a node package's doctor checks return: one line per check.

Here, beside the node packages, so they can build checks without importing
`lnplugin.doctor` (which imports them to run the checks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    detail: str

    def line(self) -> str:
        return f"{self.status.upper():<4} {self.name}: {self.detail}"
