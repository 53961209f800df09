"""Log formats: `text` for a terminal, `json` (one object per line) for a
log pipeline that indexes fields (Loki, Elasticsearch, journald exporters).

Extra fields passed as `extra={"http": {...}}` (the access log) or
`extra={"backfill": {...}}` (follower progress) become keys of the JSON
object, so a pipeline can filter on `status` without parsing the message.
"""

from __future__ import annotations

import json
import logging
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

# Libraries whose debug lines are wire traffic: request lines with a relay's
# or a webhook receiver's query (tokens included) and Authorization headers.
# lnplugin's own debug lines never carry secrets; these would, so they stay at
# INFO and above whatever --log-level says.
WIRE_LOGGERS = ("websockets", "urllib3")


def setup(level: str, fmt: str = "text") -> None:
    """Configure the root logger once for `lnplugin serve` (replacing earlier handlers)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    for name in WIRE_LOGGERS:
        logging.getLogger(name).setLevel(max(root.level, logging.INFO))
