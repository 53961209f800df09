"""waitress's own error responses in the Alby JSON error shape.

Some requests never reach the app: waitress refuses them while parsing (a
request line with raw non-ASCII bytes is "Bad URI", a malformed header, an
oversized header block, a bad chunk) and answers with a plain-text page
from `waitress.task.ErrorTask`. Clients parse every lnplugin error as JSON,
so this module writes those answers as `{code, error, message}` too.

waitress documents no hook for these responses. It does keep the classes it
uses in attributes: a server makes each connection with its
`channel_class`, and a channel answers a refused request with its
`error_task_class`, whose `execute` turns the parser's error into a status,
headers and body. `install` sets `channel_class` on the servers
`make_server` created (their instances only, before the loop accepts any
connection; nothing global is patched), to a channel whose error task is
`JSONErrorTask`. That task writes exactly what waitress's `ErrorTask` writes
(same status, closes the connection, same Content-Length rule), only the
body and its Content-Type differ. If a waitress release renamed these
attributes, `install` raises at startup instead of silently answering in
plain text, and tests/test_api_fuzz.py checks the answer over a socket.
"""

from __future__ import annotations

from typing import Any

import orjson
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer
from waitress.task import ErrorTask

from lnplugin.api.errors import error_body


class JSONErrorTask(ErrorTask):
    """waitress's `ErrorTask`, answering in the Alby error shape."""

    def execute(self) -> None:
        error = self.request.error
        message = f"{error.reason}: {error.body}" if error.body else error.reason
        body = orjson.dumps(error_body(error.code, message), option=orjson.OPT_APPEND_NEWLINE)
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class JSONErrorChannel(HTTPChannel):
    error_task_class = JSONErrorTask


def install(server: Any) -> None:
    """Make `server` (what `waitress.create_server` returned: one server, or
    a `MultiSocketServer` whose map holds one per address) answer its own
    errors in JSON."""
    servers = (
        [server]
        if isinstance(server, BaseWSGIServer)
        else [s for s in server.map.values() if isinstance(s, BaseWSGIServer)]
    )
    if not servers:
        raise RuntimeError(f"no waitress server to install JSON errors on in {server!r}")
    for each in servers:
        if each.channel_class is not HTTPChannel or not hasattr(HTTPChannel, "error_task_class"):
            raise RuntimeError("waitress's channel_class/error_task_class changed; see rawerrors")
        each.channel_class = JSONErrorChannel
