"""Log formats: `text` for a terminal, `json` (one object per line) for a
log pipeline that indexes fields (Loki, Elasticsearch, journald exporters).

Extra fields passed as `extra={"http": {...}}` (the access log) or
`extra={"backfill": {...}}` (follower progress) become keys of the JSON
object, so a pipeline can filter on `status` without parsing the message.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

STRUCTURED_KEYS = ("http", "backfill")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in STRUCTURED_KEYS:
            value = getattr(record, key, None)
            if isinstance(value, dict):
                out.update(value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, separators=(",", ":"), default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# What would end a text log line early or rewrite it on a terminal: C0
# controls but tab, DEL, and what line-oriented readers also split on (NEL,
# LINE/PARAGRAPH SEPARATOR).
_LINE_BREAKERS = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return {"\n": "\\n", "\r": "\\r"}.get(char) or char.encode("unicode_escape").decode()


class TextFormatter(logging.Formatter):
    """One line per message: text from outside (a webhook receiver's status
    line, a relay's reason, a provider's error) is logged escaped, so it
    cannot start a line that looks like lnplugin's own. A traceback, added
    after the message, keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = _LINE_BREAKERS.sub(_escape, record.message)
        return super().formatMessage(record)


# Libraries whose debug lines are wire traffic: request lines with a relay's
# or a webhook receiver's query (tokens included) and Authorization headers.
# lnplugin's own debug lines never carry secrets; these would, so they stay at
# INFO and above whatever --log-level says.
WIRE_LOGGERS = ("websockets", "urllib3")


def setup(level: str, fmt: str = "text") -> None:
    """Configure the root logger once for `lnplugin serve` (replacing earlier handlers)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    for name in WIRE_LOGGERS:
        logging.getLogger(name).setLevel(max(root.level, logging.INFO))
