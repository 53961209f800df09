"""The rule for the labels operators give tokens and NWC connections.

Why one rule: a label is shown on one line of `lnplugin token list` and
`lnplugin nwc list`, whose fields are separated by tabs. A tab, a line break
or another control character in a label broke those lines for anyone reading
them (or a script splitting them), and the CLI took labels of any length
while `POST /nwc/connections` took 200 characters at most.
"""

from __future__ import annotations

import re

MAX_LABEL = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def label_problem(label: str) -> str | None:
    """Why `label` cannot be used, or None when it can."""
    if len(label) > MAX_LABEL:
        return f"at most {MAX_LABEL} characters"
    if _CONTROL.search(label):
        return "no tabs, line breaks or other control characters"
    return None
