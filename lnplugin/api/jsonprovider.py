"""JSON responses written by orjson: the bodies Flask wrote before, for less CPU.

The output is what the standard provider wrote with `compact` and without
`sort_keys`: keys in the order the handler built them, no spaces, a final
newline; only non-ASCII text is now raw UTF-8 instead of `\\u` escapes.

Anything orjson refuses goes through the standard provider unchanged, so it
serializes as before or fails as before. Clients and keysend senders can put
such values in `metadata` and `boostagram` (integers beyond 64 bits, nesting
deeper than 254; lone surrogates from keysend senders, or in metadata stored
before request bodies refused them), and Flask's `default` hook handles dates,
dataclasses and `Decimal`. One difference: orjson writes NaN and Infinity
as `null`, not as the non-JSON tokens `NaN` and `Infinity`.

Request bodies are parsed by the standard `json` module (the inherited
`loads`), which accepts `NaN`, `Infinity` and `-Infinity` and reads a number
like `1e999` as infinity: none of them is JSON, and none could be written
back. It also takes a key given twice in one object and keeps the last
value, where other parsers keep the first or fail (RFC 8259 calls it
unpredictable; I-JSON, RFC 7493, forbids it), so a proxy, a log or a
signature check in front of lnplugin could read another amount than the one
minted. `loads` refuses all of them with `RefusedJSON`, a `ValueError` like
any other malformed body, naming each field that held one.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import orjson
from flask import Response
from flask.json.provider import DefaultJSONProvider

# Dates and dataclasses go to the fallback, which formats them as Flask does.
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
MAX_REPORTED = 10  # fields named in one RefusedJSON


class RefusedJSON(ValueError):
    """A body that holds NaN, Infinity, -Infinity, a number beyond a double, an
    integer too long for Python to read or a key given twice in one object.

    `errors` maps each field's path (keys and list indexes joined by dots, as
    validation errors name fields; `body` for the whole body) to a reason.
    """

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{field} {reason}" for field, reason in errors.items()))
        self.errors = errors


class _Refused:
    """Stands where the parser met a refused value, so its path can be found."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _refused_paths(obj: Any) -> dict[str, str]:
    """Path -> reason for each `_Refused` in `obj`, in document order."""
    errors: dict[str, str] = {}
    stack: list[tuple[tuple[str, ...], Any]] = [((), obj)]
    while stack and len(errors) < MAX_REPORTED:
        path, value = stack.pop()
        if isinstance(value, _Refused):
            errors[".".join(path) or "body"] = value.reason
        elif isinstance(value, dict):
            stack.extend(((*path, str(k)), v) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend(((*path, str(i)), v) for i, v in reversed(list(enumerate(value))))
    return errors


class OrjsonProvider(DefaultJSONProvider):
    sort_keys = False
    compact = True

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        if kwargs:  # options for the json module: let it do the work
            return super().dumps(obj, **kwargs)
        return self._encode(obj, 0).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        refused: list[_Refused] = []

        def constant(token: str) -> _Refused:
            refused.append(_Refused(f"is {token}, which is not valid JSON"))
            return refused[-1]

        def number(token: str) -> float | _Refused:
            value = float(token)
            if math.isfinite(value):
                return value
            refused.append(_Refused(f"is {token}, too large for a number (beyond a double)"))
            return refused[-1]

        def integer(token: str) -> int | _Refused:
            # Past sys.get_int_max_str_digits (4300) int() refuses a string:
            # still JSON, so named like a number beyond a double, not "not JSON".
            try:
                return int(token)
            except ValueError:
                limit = sys.get_int_max_str_digits()
                refused.append(
                    _Refused(
                        f"is an integer of {len(token.lstrip('-'))} digits, too large to read "
                        f"(at most {limit})"
                    )
                )
                return refused[-1]

        def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
            obj = dict(items)
            if len(obj) < len(items):  # a key given twice: mark it where it stands
                seen: set[str] = set()
                for key, _ in items:
                    if key in seen and not isinstance(obj[key], _Refused):
                        refused.append(_Refused("is given more than once; send each key once"))
                        obj[key] = refused[-1]
                    seen.add(key)
            return obj

        kwargs.setdefault("parse_constant", constant)
        kwargs.setdefault("parse_float", number)
        kwargs.setdefault("parse_int", integer)
        kwargs.setdefault("object_pairs_hook", pairs)
        obj = super().loads(s, **kwargs)
        if refused:
            # Each has a path: a refused number that a repeated key dropped is
            # named by that key, marked in its place.
            raise RefusedJSON(_refused_paths(obj))
        return obj

    def response(self, *args: Any, **kwargs: Any) -> Response:
        obj = self._prepare_response_obj(args, kwargs)
        # Flask's own Response, not `self._app.response_class`: the provider types
        # its app as the framework-neutral base whose response takes no body, and
        # lnplugin's app keeps Flask's default response class.
        return Response(self._encode(obj, orjson.OPT_APPEND_NEWLINE), mimetype=self.mimetype)

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
