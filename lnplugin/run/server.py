"""`lnplugin serve`: the service behind waitress, a production WSGI server.

waitress is pure Python, runs wherever lnplugin runs (including inside the
Core Lightning plugin process), and serves each request on a thread pool
while its own event loop handles slow clients.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from waitress.server import create_server

from lnplugin import logs
from lnplugin.api import create_app
from lnplugin.config import Settings, http_url
from lnplugin.hub import WSGI_WRITE
from lnplugin.rawerrors import install as json_errors
from lnplugin.service import Service, StartupRefused
from lnplugin.store import tokens

log = logging.getLogger("lnplugin")

SHUTDOWN_BOUND = 10.0  # seconds from the first SIGTERM/SIGINT to a forced exit


def setup_logging(level: str, fmt: str = "text") -> None:
    logs.setup(level, fmt)


def bootstrap_token(service: Service) -> str | None:
    """Create the first admin token, so a fresh install is usable at once."""
    with service.store.transaction() as tx:
        if tokens.has_admin(tx):
            return None
        _, token = tokens.create(tx, ["admin"], label="bootstrap")
    return token


def expose_write(app: Any) -> Any:
    """WSGI middleware: put the response's `write` callable in the environ.

    Event streams hand it to the hub thread, which then writes live messages
    into the connection itself (see `lnplugin.hub`). In waitress it is
    `Task.write`: chunk framing plus the channel's `write_soon`, which takes
    the channel's output lock, so other threads may call it.
    """

    def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
        def start(status: str, headers: Any, exc_info: Any = None) -> Any:
            write = start_response(status, headers, exc_info)
            environ[WSGI_WRITE] = write
            return write

        return app(environ, start)

    return wrapped


class Shutdown:
    """The SIGTERM/SIGINT handler of `lnplugin serve`: acts on the first signal only.

    A Python signal handler runs on the main thread between two bytecodes,
    also in the middle of an earlier handler or of the shutdown it started.
    Supervisors send bursts (`timeout`, systemd, a second Ctrl-C), and a
    handler that ran the shutdown hooks again re-entered `EventHub.close_all`
    on a lock its own thread already held: the server hung, deaf, forever.
    So only the first signal acts (`acquire(blocking=False)` is one C call,
    so a nested handler cannot slip between test and set); the later ones
    are logged and ignored. The first also starts a watchdog: if shutdown
    (or the interpreter's exit after it) is not over within `bound` seconds,
    the process logs that and exits with status 1 anyway. Nothing is lost
    by that: every write is an SQLite transaction.
    """

    def __init__(self, hooks: list[Callable[[], None]], bound: float = SHUTDOWN_BOUND) -> None:
        self.hooks = hooks
        self.bound = bound
        self._once = threading.Lock()

    def __call__(self, signum: int, frame: Any) -> None:
        if not self._once.acquire(blocking=False):
            log.info("signal %s: already shutting down", signum)
            return
        watchdog = threading.Thread(target=self._watchdog, name="lnplugin-shutdown", daemon=True)
        watchdog.start()
        # waitress waits for busy threads when it stops; end open event
        # streams first so their threads can exit at once.
        for hook in self.hooks:
            try:
                hook()
            except Exception:
                log.exception("shutdown hook failed")
        raise KeyboardInterrupt

    def _watchdog(self) -> None:
        time.sleep(self.bound)
        # Exit even if the log line below cannot be written (a stuck handler lock).
        backstop = threading.Timer(1.0, os._exit, (1,))
        backstop.daemon = True
        backstop.start()
        log.error("shutdown did not finish within %g s; exiting anyway", self.bound)
        os._exit(1)


def make_server(service: Service, settings: Settings) -> Any:
    """Bind the listening socket; `StartupRefused` naming --host/--port when that fails
    (port in use, an address this machine does not have or cannot resolve)."""
    app = expose_write(create_app(service))
    try:
        return _create_server(app, service, settings)
    except (OSError, ValueError) as exc:  # waitress: ValueError for a host it cannot resolve
        reason = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
        raise StartupRefused(
            f"invalid setting host/port (--host / LNPLUGIN_HOST, --port / LNPLUGIN_PORT): "
            f"cannot listen on {http_url(settings.host, settings.port)}: {reason}"
        ) from None


def _create_server(app: Any, service: Service, settings: Settings) -> Any:
    server = create_server(
        app,
        map=service.extensions.get("socket_map"),  # ParkingMap: idle streams skip the loop
        host=settings.host,
        port=settings.port,
        # Event streams hold a thread each for their lifetime; they get threads of
        # their own (admission-controlled by StreamGate), so the API keeps
        # `threads` for itself however many streams are open.
        threads=settings.threads + settings.max_streams,
        ident="lnplugin",
        channel_timeout=120,
        connection_limit=2000,
        clear_untrusted_proxy_headers=True,
        asyncore_use_poll=True,  # select() stops at 1024 descriptors; streams add up
    )
    json_errors(server)  # what waitress refuses itself is answered in the Alby shape too
    return server


def serve(settings: Settings, out: Callable[[str], None] = print) -> int:
    """Run until SIGTERM/SIGINT. A setting, data dir, store or node credential
    that cannot work raises (`StartupRefused`, `StoreError`, ...) before anything
    runs, for the command line to print as one line; the socket is bound before
    the service starts so a busy port stops nothing half-started."""
    setup_logging(settings.log_level, settings.log_format)
    service = Service.build(settings)
    try:
        server = make_server(service, settings)
    except StartupRefused:
        service.node.close()
        service.store.close()
        raise
    try:
        service.start()
    except StartupRefused as exc:
        log.error("%s", exc)
        server.close()
        service.store.close()
        return 2
    if settings.node == "dev":
        log.warning(
            "running on the embedded dev node: not connected to any Lightning network, "
            "payments are simulated (lnplugin dev pay / POST /dev/pay)"
        )
    port = getattr(server, "effective_port", settings.port)
    url = settings.public_url or http_url(settings.host, port)
    out(f"lnplugin {settings.node} node listening on {url}")
    token = bootstrap_token(service)
    if token:
        out("Admin token (shown once, store it now):")
        out(token)
    else:
        out("Admin token: already created; make another with `lnplugin token create --scope admin`")
    sys.stdout.flush()

    stop = Shutdown(service.extensions.get("before_shutdown", []))
    try:
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        server.run()
    except KeyboardInterrupt:
        log.info("shutting down")
    finally:
        server.close()
        service.stop()
    return 0
