"""Compact JSON text, by orjson where it can, for what lnplugin writes often
(outbox payloads, NWC events).

orjson is several times faster than `json.dumps` with non-default
separators, but refuses what a payer or an app can put in a boostagram or
in metadata (integers beyond 64 bits, lone surrogates). Those values go
through `json`, which writes them as before, so hostile input cannot stall
the follower or the NWC notifier. `json` escapes everything beyond ASCII
there: a lone surrogate cannot be encoded as UTF-8, and the text is
written to SQLite or encrypted as UTF-8 next.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":"))
