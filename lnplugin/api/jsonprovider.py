"""JSON responses written by orjson: the bodies Flask wrote before, for less CPU.

The output is what the standard provider wrote with `compact` and without
`sort_keys`: keys in the order the handler built them, no spaces, a final
newline; only non-ASCII text is now raw UTF-8 instead of `\\u` escapes.

Anything orjson refuses goes through the standard provider unchanged, so it
serializes as before or fails as before. Clients and keysend senders can put
such values in `metadata` and `boostagram` (integers beyond 64 bits, nesting
deeper than 254, lone surrogates), and Flask's `default` hook handles dates,
dataclasses and `Decimal`. Request bodies are still parsed by the standard
`json` module (the inherited `loads`), so a malformed body fails as before.
One difference: orjson writes NaN and Infinity as `null`, not as the
non-JSON tokens `NaN` and `Infinity`.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response
from flask.json.provider import DefaultJSONProvider

# Dates and dataclasses go to the fallback, which formats them as Flask does.
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


class OrjsonProvider(DefaultJSONProvider):
    sort_keys = False
    compact = True

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        if kwargs:  # options for the json module: let it do the work
            return super().dumps(obj, **kwargs)
        return self._encode(obj, 0).decode()

    def response(self, *args: Any, **kwargs: Any) -> Response:
        obj = self._prepare_response_obj(args, kwargs)
        return self._app.response_class(
            self._encode(obj, orjson.OPT_APPEND_NEWLINE), mimetype=self.mimetype
        )

    def _encode(self, obj: Any, option: int) -> bytes:
        if self.sort_keys:
            option |= orjson.OPT_SORT_KEYS
        indent = self.compact is False or (self.compact is None and self._app.debug)
        if indent:
            option |= orjson.OPT_INDENT_2
        try:
            return orjson.dumps(obj, option=_OPTIONS | option)
        except orjson.JSONEncodeError:
            layout: dict[str, Any] = {"indent": 2} if indent else {"separators": (",", ":")}
            text = super().dumps(obj, ensure_ascii=True, **layout)
            return (text + "\n" if option & orjson.OPT_APPEND_NEWLINE else text).encode()
