"""`lnplugin doctor`: check the node connection and its configuration.

An operator's first question is "why does lnplugin not see my payments / my
boostagrams?". Each check answers one cause in one line, with the fix, so
the output can be pasted into an issue as is. The checks themselves belong
to each node package (`lnplugin.nodes.<kind>.doctor`), which knows its node;
this module only asks `lnplugin.nodes.doctor_checks` for them and turns the
result into an exit code.
"""

from __future__ import annotations

from lnplugin.config import Settings
from lnplugin.nodes import doctor_checks
from lnplugin.nodes.checks import Check, Status

__all__ = ["Check", "Status", "exit_code", "run"]


def exit_code(checks: list[Check]) -> int:
    """1 when any check failed (warnings alone still exit 0)."""
    return 1 if any(c.status == "fail" for c in checks) else 0


def run(settings: Settings) -> list[Check]:
    """The checks for the node kind the settings select."""
    checks = doctor_checks(settings)
    if checks is None:
        return [Check("node", "warn", f"no doctor checks for --node {settings.node} yet")]
    return checks
