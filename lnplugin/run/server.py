"""`lnplugin serve`: the service behind uvicorn, one asyncio HTTP server.

uvicorn (uvloop + httptools) parses HTTP and holds every connection on one
event loop; the Flask app runs on a bounded thread pool behind it, and open
event streams live on the loop (`lnplugin.run.asgi`, docs/streaming.md).
The server runs on a thread of its own, started through uvicorn's
documented `Server.serve(sockets=...)` on sockets bound here, so the main
thread keeps lnplugin's own signal handling and the Core Lightning plugin
can run the same server beside pyln's loop.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import json
import logging
import os
import shlex
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from lnplugin import logs
from lnplugin.api import create_app
from lnplugin.api.errors import error_body
from lnplugin.config import Settings, env_typos, http_url
from lnplugin.datadir import lock_holder
from lnplugin.run.asgi import ASGIApp
from lnplugin.service import Service, StartupRefused, already_serving
from lnplugin.store import tokens

log = logging.getLogger("lnplugin")

SHUTDOWN_BOUND = 10.0  # seconds from the first SIGTERM/SIGINT to a forced exit
# Seconds a request has to arrive whole (head and body), and an answer may wait,
# unsent, for a client that reads nothing: `--client-timeout`'s default.
CLIENT_TIMEOUT = 20.0
# A request's head (request line and headers), as the body is capped (64 KiB):
# uvicorn's httptools protocol keeps every header of a request in memory with
# no limit of its own.
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100  # as http.client, gunicorn


def setup_logging(level: str, fmt: str = "text") -> None:
    logs.setup(level, fmt)
    # uvicorn's "returned without completing response" is how a stream cut
    # off for not reading ends (lnplugin.run.asgi); it is expected, not an error.
    logging.getLogger("uvicorn.error").addFilter(_NotIncomplete())


class _NotIncomplete(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("ASGI callable returned without completing")


M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)
MALLOC_ARENAS = 2


def cap_malloc_arenas() -> bool:
    """Limit glibc to `MALLOC_ARENAS` malloc arenas, unless MALLOC_ARENA_MAX is set.

    Why: glibc gives each thread that allocates an arena of its own (up to 8
    per core), each reserving 64 MB regions it rarely returns; with a thread
    pool that made most of the server's RSS under load (docs/streaming.md
    has the figures). Called before any thread starts. True if applied."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False  # the operator's own setting, applied by glibc at exec
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(M_ARENA_MAX, MALLOC_ARENAS))
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return False


def freeze_startup_objects() -> None:
    """Move everything built at startup out of the garbage collector's sight.

    Why: the app, its URL map, schemas, the OpenAPI document and the imported
    libraries are some 100,000 objects that live as long as the process. A
    full collection walks all of them (30 ms measured), and it runs on
    whichever thread allocates at that moment: often the event loop, in the
    middle of writing a settlement to 1,000 streams. `gc.freeze()` (the
    documented way, Python 3.7+) leaves them out of every later collection;
    garbage made while serving is still collected as before."""
    gc.collect()
    gc.freeze()


def bootstrap_wanted(setting: bool | None, environ: Mapping[str, str]) -> bool:
    """Whether `serve` may make and print the first admin token.

    Printing it makes a fresh install usable at once from a terminal. Under
    systemd standard output is the journal (systemd sets JOURNAL_STREAM for
    that), and a secret printed there stays readable in the logs, so by
    default no token is made there; the docs create one first. The container
    image turns it off the same way (LNPLUGIN_BOOTSTRAP_TOKEN=false).
    """
    if setting is not None:
        return setting
    return not environ.get("JOURNAL_STREAM")


def has_admin_token(service: Service) -> bool:
    with service.store.snapshot() as conn:
        return tokens.has_admin(conn)


def bootstrap_token(service: Service) -> str | None:
    """Create the first admin token, so a fresh install is usable at once."""
    with service.store.transaction() as tx:
        if tokens.has_admin(tx):
            return None
        _, token = tokens.create(tx, ["admin"], label="bootstrap")
    return token


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
        # uvicorn waits for open responses when it stops; end open event
        # streams first so it can stop at once.
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


class DeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a deadline for each request to arrive.

    uvicorn times a connection out only while it idles between requests: one
    that sends nothing, or a request line and never the rest, stays open for
    good. Every open connection counts against `limit_concurrency`, past
    which uvicorn answers everyone 503, so a single client holding a few
    thousand silent sockets shut out payers, apps and monitors. A connection
    now gets `timeout` seconds (`--client-timeout`) from its opening, and each later
    request from its first byte, to deliver the request's head and body (at
    most 64 KiB); otherwise it is closed. Streams are untouched: their
    request is complete before the answer starts.

    The head is capped too: a request line over `MAX_HEAD_BYTES` is
    answered 400, headers over `MAX_HEAD_BYTES` or `MAX_HEADERS` 431 (both
    in the API's error shape), and the connection closed, rather than the
    whole head being kept in memory for as long as the client sends.

    The other direction too: an answer the client stops reading (a stream's
    resumed history, an export) waits in uvicorn's `send` until the client
    drains it, which a client that vanished or just stopped never does; it
    held its connection, its `--max-streams` slot and a store connection
    for good. When the transport stays paused (the socket buffers full)
    for `timeout` seconds too, the connection is aborted (`close` would
    wait to flush what the client will not take); the stream resumes from
    Last-Event-ID if the client comes back."""

    timeout = CLIENT_TIMEOUT  # set per server by `with_timeout`
    _deadline: asyncio.TimerHandle | None = None
    _stall: asyncio.TimerHandle | None = None
    _url_bytes = 0
    _header_bytes = 0
    _header_count = 0
    _refusal: tuple[bytes, str] | None = None

    # The ignore: uvicorn narrows asyncio's `BaseTransport` to `Transport` here
    # (ignored in uvicorn too); this override keeps uvicorn's signature.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._url_bytes = self._header_bytes = self._header_count = 0
        if self._deadline is None:
            self._arm()

    def on_url(self, url: bytes) -> None:
        self._url_bytes += len(url)
        if self._url_bytes > MAX_HEAD_BYTES:
            self._refuse(b"400 Bad Request", f"Request line over {MAX_HEAD_BYTES} bytes")
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        self._header_count += 1
        if self._header_bytes > MAX_HEAD_BYTES or self._header_count > MAX_HEADERS:
            self._refuse(
                b"431 Request Header Fields Too Large",
                f"Request headers over {MAX_HEAD_BYTES} bytes or {MAX_HEADERS} headers",
            )
        super().on_header(name, value)

    def _refuse(self, status: bytes, message: str) -> None:
        # Raised inside the parser's callback: uvicorn's data_received catches
        # it as a parser error and calls send_400_response, which sends this.
        self._refusal = (status, message)
        raise ValueError(message)

    def send_400_response(self, msg: str) -> None:
        if self._refusal is None:
            super().send_400_response(msg)
            return
        self._disarm()
        if self.transport.is_closing():
            return
        status, message = self._refusal
        code = int(status.split()[0])
        body = json.dumps(error_body(code, message)).encode()
        self.transport.write(
            b"HTTP/1.1 " + status + b"\r\n"
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + body
        )
        self.transport.close()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._unstall()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stall is None:
            self._stall = self.loop.call_later(self.timeout, self._stalled)

    def resume_writing(self) -> None:
        self._unstall()
        super().resume_writing()

    def _unstall(self) -> None:
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None

    def _stalled(self) -> None:
        self._stall = None
        self.transport.abort()

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.timeout, self._late)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _late(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def with_timeout(timeout: float) -> type[DeadlineProtocol]:
    """The protocol with this `--client-timeout`: uvicorn makes one protocol
    object per connection from the class it is given, with no setting of ours."""
    return type("DeadlineProtocol", (DeadlineProtocol,), {"timeout": timeout})


class HTTPServer:
    """uvicorn on sockets bound here; `run` blocks (on any thread), `close` stops it.

    Binding first, ourselves, is what lets a busy port be a `StartupRefused`
    before anything starts (uvicorn would log and exit the process)."""

    def __init__(
        self,
        app: ASGIApp,
        sockets: list[socket.socket],
        connection_limit: int = 2000,
        client_timeout: float = CLIENT_TIMEOUT,
    ) -> None:
        self.app = app
        self.sockets = sockets
        self.effective_port = sockets[0].getsockname()[1]
        config = uvicorn.Config(
            app,
            interface="asgi3",
            loop="uvloop",
            http=with_timeout(client_timeout),
            ws="none",
            lifespan="off",
            log_config=None,  # lnplugin's own logging setup stays
            access_log=False,
            proxy_headers=False,  # trust no X-Forwarded-* header
            server_header=False,
            timeout_keep_alive=120,
            timeout_graceful_shutdown=int(SHUTDOWN_BOUND // 2),
            backlog=2048,
            # Connections (open streams included) plus requests in progress;
            # beyond it uvicorn answers 503 instead of taking more.
            limit_concurrency=connection_limit,
        )
        self.server = uvicorn.Server(config)
        self._done = threading.Event()
        self._started = False

    def run(self) -> None:
        self._started = True
        try:
            # In a non-main thread uvicorn installs no signal handlers.
            self.server.run(sockets=self.sockets)
        finally:
            self._done.set()

    def request_exit(self) -> None:
        self.server.should_exit = True

    def close(self, timeout: float = SHUTDOWN_BOUND) -> None:
        """Stop serving and wait (bounded) for `run` to return; idempotent."""
        self.request_exit()
        if self._started:
            self._done.wait(timeout)
        close_all(self.sockets)
        self.app.close()


def make_server(
    service: Service, settings: Settings, sockets: list[socket.socket] | None = None
) -> HTTPServer:
    """The server on `sockets` (or on sockets bound now: see `listen`)."""
    if sockets is None:
        sockets = listen(settings)
    try:
        app = ASGIApp(create_app(service), settings.threads)
    except BaseException:
        close_all(sockets)
        raise
    return HTTPServer(
        app,
        sockets,
        connection_limit=settings.max_streams + 2000,
        client_timeout=settings.client_timeout,
    )


def listen(settings: Settings) -> list[socket.socket]:
    """Bind the listening socket; `StartupRefused` naming --host/--port when that fails
    (port in use, an address this machine does not have or cannot resolve).
    Bound before the app is built, so a refusal is the only line printed."""
    try:
        return bind(settings.host, settings.port)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise StartupRefused(
            f"invalid setting host/port (--host / LNPLUGIN_HOST, --port / LNPLUGIN_PORT): "
            f"cannot listen on {http_url(settings.host, settings.port)}: {reason}"
        ) from None


def close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


def bind(host: str, port: int) -> list[socket.socket]:
    """Listening sockets for every address `host` resolves to (IPv4 and IPv6
    for `localhost`), all on one port (the first one's, when `port` is 0)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, type_, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, type_, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock.bind(address)
            sock.listen(2048)
            sock.setblocking(False)
    except OSError:
        close_all(sockets)
        raise
    return sockets


def serve(settings: Settings, out: Callable[[str], None] = print) -> int:
    """Run until SIGTERM/SIGINT. A setting, data dir, store or node credential
    that cannot work raises (`StartupRefused`, `StoreError`, ...) before anything
    runs, for the command line to print as one line; the socket is bound before
    the service starts so a busy port stops nothing half-started."""
    cap_malloc_arenas()  # before any thread exists
    # The threads started from here on inherit a mask without SIGTERM/SIGINT,
    # so the kernel delivers them to the main thread, whose wait they
    # interrupt; delivered to another thread, Python would run the handler
    # only once the main thread woke on its own.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        return _serve(settings, out)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def _serve(settings: Settings, out: Callable[[str], None]) -> int:
    setup_logging(settings.log_level, settings.log_format)
    for line in env_typos():
        log.warning(line)
    # In this order, so that a refusal (a busy port, then a node on another
    # network or with another certificate) is the only line printed and
    # stops nothing half-started: the port (before the data dir and its
    # store are created, so a busy port leaves nothing behind), the node
    # check, then the app, whose building logs what it serves. A busy port
    # held by another lnplugin on this data dir (the same command run twice)
    # is named as that: told of a busy port, the operator would change
    # --port, only to be refused for the data dir next.
    try:
        sockets = listen(settings)
    except StartupRefused:
        holder = lock_holder(settings.data_dir)
        if holder is not None:
            raise already_serving(settings.data_dir, holder) from None
        raise
    try:
        service = Service.build(settings)
    except BaseException:
        close_all(sockets)
        raise
    try:
        service.start()
    except StartupRefused:  # the command line prints it as its one line, status 2
        close_all(sockets)
        service.node.close()
        service.store.close()
        raise
    try:
        server = make_server(service, settings, sockets)
    except BaseException:
        service.stop()
        raise
    # A network check postponed at start that fails later stops the server;
    # the reason is raised below, for the command line's one line and status 2.
    service.on_refused = lambda reason: server.request_exit()
    if service.refused is not None:  # it failed before the line above
        server.close()
        service.stop()
        raise StartupRefused(service.refused)
    if settings.node == "dev":
        log.warning(
            "running on the embedded dev node: not connected to any Lightning network, "
            "payments are simulated (lnplugin dev pay / POST /dev/pay)"
        )
    listening = http_url(settings.host, server.effective_port)
    service.announce(listening)
    out(f"lnplugin {settings.node} node listening on {listening}")
    if settings.public_url and settings.public_url != listening:
        out(f"Payers reach it at {settings.public_url}")
    wanted = bootstrap_wanted(settings.bootstrap_token, os.environ)
    token = bootstrap_token(service) if wanted else None
    if token:
        out("Admin token (shown once, store it now):")
        out(token)
    else:
        # The data dir named: run as printed, with another default (another
        # user's home, a service's /var/lib/lnplugin) it would make a token
        # in a store this server never reads.
        data_dir = shlex.quote(str(settings.data_dir))
        make = f"`lnplugin token create --scope admin --data-dir {data_dir}`"
        if has_admin_token(service):
            out(f"Admin token: already created; make another with {make}")
        else:
            out(f"No admin token yet (none is printed here): make one on a terminal with {make}")
    sys.stdout.flush()

    freeze_startup_objects()
    stop = Shutdown([service.before_shutdown, server.request_exit])
    runner = threading.Thread(target=server.run, name="lnplugin-server")
    try:
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        runner.start()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        while runner.is_alive():
            runner.join(1.0)  # a signal's KeyboardInterrupt ends the wait
        if service.refused is None:
            log.error("the HTTP server stopped on its own")
        code = 1
    except KeyboardInterrupt:
        log.info("shutting down")
        code = 0
    finally:
        server.close()
        service.stop()
    if service.refused is not None:
        raise StartupRefused(service.refused)
    return code
