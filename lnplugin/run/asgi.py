"""The one ASGI application uvicorn serves: Flask on a thread pool, streams on the loop.

Why this shape (docs/streaming.md has the measurements): an open Server-Sent
Events stream must not cost a thread, yet every route, its auth, its errors
and its tests are Flask. So each request runs the Flask WSGI app on a
bounded thread pool (`--threads`), through the small bridge below, and a
stream's route ends its body with a `LiveTail` (see `lnplugin.hub`) once
its first state and history are out. The bridge then serves the rest of
that stream on the event loop: the hub writes each message straight into
the connection, and the stream costs no thread and no task wake-up per
message, only a coroutine waiting for its heartbeat or its end.

The bridge is ours (about 100 lines) rather than a2wsgi: it needs to know
about `LiveTail` anyway, and it sends each plain response in one piece from
one hand-over (the worker thread builds the whole body), which measured
faster than a2wsgi's chunk-by-chunk relay. It speaks only what the ASGI
spec documents: `scope`, `receive` and `send`.

Backpressure without private APIs: an ASGI `send` returns at once unless
the server's transport is paused (the client stopped reading). The writer
runs the `send` coroutine one step; if it finishes, the message is out. If
it suspends, the stream's own task finishes it, and messages arriving
meanwhile wait in a bounded buffer: past `MAX_BACKLOG` unsent bytes, or a
heartbeat's time still paused, the client is cut off rather than allowed to
grow the server's memory. It resumes from Last-Event-ID.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from types import CoroutineType
from typing import Any, TypeVar
from urllib.parse import unquote_to_bytes

import orjson

from lnplugin.api import MAX_BODY_BYTES
from lnplugin.api.errors import error_body
from lnplugin.hub import ASYNC_LOOP, MAX_BACKLOG, LiveTail, Subscription

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
T = TypeVar("T")


class ASGIApp:
    """ASGI 3 application around a WSGI app (Flask), with live SSE tails."""

    def __init__(self, wsgi: Callable[..., Iterable[Any]], threads: int) -> None:
        self.wsgi = wsgi
        self.pool = Workers(threads, "lnplugin-http")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan is off; websockets are not served
            return
        body = await _read_body(receive, MAX_BODY_BYTES)
        if body is None:
            return  # the client left before sending its body
        loop = asyncio.get_running_loop()
        environ = _environ(scope, body, loop)
        try:
            status, headers, iterable, first = await self.pool.run(loop, self._call, environ)
        except Exception:
            log.exception("request failed outside the app's error handlers")
            await _send_error(send, 500, "Internal server error")
            return
        await send(
            {
                "type": "http.response.start",
                "status": int(status.split(" ", 1)[0]),
                "headers": [(_header_name(k), v.encode("latin-1")) for k, v in headers],
            }
        )
        content, tail, done = first
        if done and tail is None:  # the usual case: the whole body in one piece
            await send({"type": "http.response.body", "body": content, "more_body": False})
            return
        try:
            while True:  # a long body (a stream's history): bounded pieces
                if content:
                    await send({"type": "http.response.body", "body": content, "more_body": True})
                if done:
                    break
                content, tail, done = await self.pool.run(loop, _pull, iterable)
            complete = await live(tail, send, receive) if tail is not None else True
            if complete:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await self.pool.run(loop, _close, iterable)

    def _call(self, environ: dict[str, Any]) -> tuple[str, list[Any], _Body, Piece]:
        """On a worker thread: the status, the headers and the body's first piece."""
        started: list[Any] = []
        written: list[bytes] = []

        def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            if exc_info and started:
                raise exc_info[1].with_traceback(exc_info[2])
            started[:] = [status, headers]
            return written.append  # the legacy `write` callable

        body = self.wsgi(environ, start_response)
        iterable = _Body(body)
        first = _pull(iterable, written)
        status, headers = started
        return status, list(headers), iterable, first

    def close(self) -> None:
        self.pool.close()


Job = tuple["asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]

# How many workers run jobs at once while their jobs are quick. Python runs
# one thread at a time (the GIL), so a second worker running Python only
# takes turns with the first. A worker on the same job for over `STALL`
# seconds is taken to be waiting on something else (the node, a lock, the
# disk) and no longer counts.
AWAKE = 1
STALL = 0.002


class Workers:
    """The bounded pool of threads the WSGI app runs on, and the hop to it and back.

    Why not `loop.run_in_executor`: that hop wraps a `concurrent.futures.Future`
    (a condition variable, its lock, a done-callback) in an asyncio future
    chained to it, and each step takes locks on both threads. Here a job is
    the asyncio future itself, put on a deque; a worker runs it and hands the
    outcome back with one `loop.call_soon_threadsafe`, which the loop runs to
    settle the future. That is the whole hop; docs/streaming.md has what it
    saved.

    Why so few workers running (`AWAKE`): a job releases the GIL in every
    SQLite and libsecp256k1 call. With eight workers running at once, each
    release handed the GIL to another thread and the releasing one slept
    until it came back: 22 context switches for one authenticated `GET`, and
    a third of its server CPU (docs/streaming.md). So a job that arrives
    while a worker is running a quick one waits for that worker, which takes
    the queued jobs one after another. A worker on one job for over `stall`
    seconds is waiting rather than running Python, and stops counting: a job
    that arrives then gets a worker at once, and a check on the loop (every
    `stall` while jobs wait) wakes a worker for every queued job when all
    the awake ones are waiting, so a burst of calls to a slow node still
    has `size` of them in flight.

    Threads start on demand up to `size`, as ThreadPoolExecutor's do. A
    parked worker waits on a lock of its own, so the pool decides which one
    wakes: the one parked last, whose memory is the most likely still in
    the CPU's caches. They are daemon threads: a request still running at
    exit (bounded by the server's shutdown) does not hold the process.
    """

    def __init__(
        self,
        size: int,
        name: str,
        stall: float = STALL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.size = size
        self.name = name
        self.stall = stall
        self.clock = clock
        self.jobs: deque[Job] = deque()
        self.threads: list[threading.Thread] = []
        self.closed = False
        self._state = threading.Lock()  # guards awake, parked, threads, closed
        self._awake = 0  # workers running a job or about to look for one
        self._parked: list[threading.Lock] = []  # each held until its worker is woken
        # Per worker: when its current job started (`clock`), 0.0 between jobs.
        # Written by the worker alone, read on the loop (a float: no lock).
        self._busy_since: list[float] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None

    def run(
        self, loop: asyncio.AbstractEventLoop, fn: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        """`fn(*args)` on a worker thread; the future settles on `loop`."""
        if self.closed:
            raise RuntimeError("the worker pool is closed")
        future: asyncio.Future[T] = loop.create_future()
        self.jobs.append((future, fn, args))
        if self._running() < AWAKE:
            self._wake(1)
        elif self._timer is None or self._timer_loop is not loop:  # (a loop that closed with it)
            self._timer_loop = loop
            self._timer = loop.call_later(self.stall, self._check, loop)
        return future

    def _running(self) -> int:
        """Awake workers not known to be waiting: all but those on one job for over `stall`."""
        now = self.clock()
        waiting = sum(1 for since in self._busy_since if since and now - since > self.stall)
        return self._awake - waiting

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the loop, every `stall` seconds while jobs wait: when every awake
        worker is waiting, wake one for each queued job."""
        self._timer = None
        if not self.jobs or self.closed:
            return
        if self._running() < AWAKE:
            self._wake(len(self.jobs))
        self._timer = loop.call_later(self.stall, self._check, loop)

    def _wake(self, count: int) -> None:
        """Wake (or start) up to `count` workers, as `size` allows."""
        started: list[threading.Thread] = []
        with self._state:
            if self.closed:
                return
            for _ in range(min(count, self.size - self._awake)):
                self._awake += 1
                if self._parked:
                    self._parked.pop().release()
                    continue
                number = len(self._busy_since)  # never reused, even after a failed start
                self._busy_since.append(0.0)
                thread = threading.Thread(
                    target=self._work, args=(number,), name=f"{self.name}_{number}", daemon=True
                )
                self.threads.append(thread)
                started.append(thread)
        for n, thread in enumerate(started):
            try:
                thread.start()
            except BaseException:  # no thread to be had (a limit of the host): as if never woken
                with self._state:
                    for unstarted in started[n:]:
                        self._awake -= 1
                        self.threads.remove(unstarted)
                raise

    def _work(self, number: int) -> None:
        jobs, busy_since, clock = self.jobs, self._busy_since, self.clock
        park = threading.Lock()
        park.acquire()
        while True:
            try:
                future, fn, args = jobs.popleft()
            except IndexError:
                with self._state:
                    if jobs:  # queued after the look above, before the lock
                        continue
                    self._awake -= 1
                    if self.closed:
                        return
                    self._parked.append(park)
                park.acquire()  # until `_wake` releases it (or `close`)
                if self.closed and not jobs:
                    return
                continue
            busy_since[number] = clock()
            try:
                outcome, error = fn(*args), None
            except BaseException as exc:  # handed to the awaiting task, as an executor does
                outcome, error = None, exc
            busy_since[number] = 0.0
            # RuntimeError: the loop is closed, the server is gone already.
            with contextlib.suppress(RuntimeError):
                future.get_loop().call_soon_threadsafe(_settle, future, outcome, error)
            del future, fn, args, outcome, error

    def close(self) -> None:
        """Cancel the jobs not started and let every worker end after its current one."""
        with self._state:
            self.closed = True
            parked, self._parked = self._parked, []
        while True:
            try:
                future = self.jobs.popleft()[0]
            except IndexError:
                break
            with contextlib.suppress(RuntimeError):
                future.get_loop().call_soon_threadsafe(future.cancel)
        for park in parked:
            park.release()


def _settle(future: asyncio.Future[Any], outcome: Any, error: BaseException | None) -> None:
    """On the loop: a worker's outcome into its future (unless its task gave up waiting)."""
    if future.cancelled():
        return
    if isinstance(error, StopIteration):  # a future cannot hold one (asyncio refuses it)
        error = RuntimeError(f"StopIteration raised on a worker thread: {error!r}")
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(outcome)


PIECE = 64 * 1024  # a long body goes out in pieces of about this size
Piece = tuple[bytes, LiveTail | None, bool]  # bytes, the live tail if reached, body over


class _Body:
    """A WSGI body: its iterator, and its close() (called once, whatever happens)."""

    def __init__(self, body: Iterable[Any]) -> None:
        self.body = body
        self.it = iter(body)
        self.closed = False


def _pull(body: _Body, written: list[bytes] | None = None) -> Piece:
    """On a worker thread: the body up to its end, a `LiveTail`, or `PIECE` bytes."""
    chunks = written if written is not None else []
    size = sum(len(c) for c in chunks)
    try:
        for item in body.it:
            if isinstance(item, LiveTail):
                return b"".join(chunks), item, True
            if item:
                chunks.append(item)
                size += len(item)
                if size >= PIECE:
                    return b"".join(chunks), None, False
    except BaseException:
        _close(body)
        raise
    _close(body)
    return b"".join(chunks), None, True


def _close(body: _Body) -> None:
    if body.closed:
        return
    body.closed = True
    close = getattr(body.body, "close", None)  # WSGI: call close() if the body has one
    if close is not None:
        close()


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, at most `limit` + 1 bytes of it: one byte over is
    enough for Flask to answer 413 in the Alby shape. None: the client left."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size > limit or not message.get("more_body", False):
            return b"".join(chunks)[: limit + 1]


def _environ(scope: Scope, body: bytes, loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client") or ("", 0)
    raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": "",
        # WSGI: the percent-decoded path's bytes, as latin-1 (PEP 3333).
        "PATH_INFO": unquote_to_bytes(raw_path).decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "REMOTE_ADDR": str(client[0]),
        "REMOTE_PORT": str(client[1]),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        ASYNC_LOOP: loop,
    }
    has_length = False
    for raw_name, raw_value in scope["headers"]:
        try:
            key = _ENV_KEYS[raw_name]  # None (a dropped name) is cached too
        except KeyError:
            key = _env_key(raw_name)
        if key is None:
            continue
        value = raw_value.decode("latin-1")
        if key in environ:
            if key in _UNJOINED:
                environ[key] = value
            else:
                environ[key] = f"{environ[key]},{value}"
        else:
            environ[key] = value
        if key == "CONTENT_LENGTH":
            has_length = True
    if not has_length:
        # Chunked (or no body): the whole body is read already, so the app
        # gets it as a proxy that de-chunks would pass it on, with its length
        # and no Transfer-Encoding. A body over MAX_BODY_BYTES then gets the
        # same 413 as one that declared its length (werkzeug does not limit
        # a chunked stream), not a JSON error on the bytes that fit.
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        environ["CONTENT_LENGTH"] = str(len(body))
    return environ


# Header names (as uvicorn gives them) -> WSGI environ keys, and response
# header names -> bytes: both are a small set repeated on every request, so
# each is worked out once. Bounded, as clients choose the names.
NAME_TABLE = 512
_ENV_KEYS: dict[bytes, str | None] = {}
_UNJOINED = ("CONTENT_TYPE", "CONTENT_LENGTH")  # the last one counts, as before
_NAMES: dict[str, bytes] = {}


def _env_key(raw_name: bytes) -> str | None:
    name = raw_name.decode("latin-1")
    key: str | None
    if "_" in name:
        # `X_Api_Key` would become the same variable as `X-Api-Key`; a
        # proxy that filters one lets the other through. Drop them.
        key = None
    else:
        key = name.upper().replace("-", "_")
        if key not in _UNJOINED:
            key = "HTTP_" + key
    if len(_ENV_KEYS) < NAME_TABLE:
        _ENV_KEYS[raw_name] = key
    return key


def _header_name(name: str) -> bytes:
    known = _NAMES.get(name)
    if known is None:
        known = name.lower().encode("latin-1")
        if len(_NAMES) < NAME_TABLE:
            _NAMES[name] = known
    return known


async def _send_error(send: Send, code: int, message: str) -> None:
    body = orjson.dumps(error_body(code, message))
    await send(
        {
            "type": "http.response.start",
            "status": code,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


class Writer:
    """Writes a live stream's messages from the loop without waiting on the client.

    `write` is called on the loop thread (by the hub's batch callback, or by
    the stream's heartbeat). See the module docstring for the stepping.
    """

    def __init__(self, send: Send, wake: asyncio.Event) -> None:
        self.send = send
        self.wake = wake
        self.blocked: tuple[Coroutine[Any, Any, None], Any] | None = None
        self.pending: deque[bytes] = deque()
        self.pending_bytes = 0

    def write(self, data: bytes) -> None:
        if self.blocked is not None:
            self.pending.append(data)
            self.pending_bytes += len(data)
            return
        self._step(self._send(data))
        if self.blocked is not None:
            self.wake.set()  # the stream's task finishes this write

    def stalled(self, limit: int) -> bool:
        """A write is waiting for the client, with more than `limit` bytes queued behind it
        (`limit` 0: any write still waiting)."""
        return self.blocked is not None and self.pending_bytes >= limit

    def _send(self, data: bytes) -> Coroutine[Any, Any, None]:
        sent = self.send({"type": "http.response.body", "body": data, "more_body": True})
        # ASGI promises an awaitable; uvicorn's is a coroutine (steppable as
        # is). Its exact type first: `isinstance` against the ABC costs a
        # microsecond, per stream per message.
        if type(sent) is CoroutineType or isinstance(sent, Coroutine):
            return sent
        return _awaiting(sent)

    def _step(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            waiting_on = coro.send(None)
        except StopIteration:
            self.blocked = None
            return
        except BaseException:
            self.blocked = None
            raise
        self.blocked = (coro, waiting_on)

    async def drain(self, ended: Callable[[], bool], timeout: float) -> bool:
        """Finish the paused write and what queued behind it. False when the
        client is still not reading after `timeout`, or the stream must end."""
        while self.blocked is not None:
            coro, waiting_on = self.blocked
            if waiting_on is None:  # a bare yield: "let the loop run once"
                await asyncio.sleep(0)
            else:
                waiter = asyncio.ensure_future(self.wake.wait())
                done, _ = await asyncio.wait(
                    {waiting_on, waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                waiter.cancel()
                self.wake.clear()
                if waiting_on not in done:
                    if ended() or not done:
                        return False
                    continue
            self._step(coro)
            if self.blocked is None and self.pending:
                data = b"".join(self.pending)
                self.pending.clear()
                self.pending_bytes = 0
                self._step(self._send(data))
        return True

    def abandon(self) -> None:
        """Drop a write the client never took (the connection is being cut)."""
        if self.blocked is not None:
            self.blocked[0].close()
            self.blocked = None
        self.pending.clear()


async def _awaiting(awaitable: Awaitable[None]) -> None:
    await awaitable


async def live(tail: LiveTail, send: Send, receive: Receive) -> bool:
    """Serve a stream's live part until it ends. True when the response may
    be completed normally; False when the client is gone or was cut off."""
    sub: Subscription = tail.sub
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()

    def on_end() -> None:  # from any thread, under the subscription's lock
        # RuntimeError: the loop is closed, the server is gone already.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(wake.set)

    sub.on_end = on_end
    writer = Writer(send, wake)
    watcher = loop.create_task(_watch_disconnect(receive, sub))
    try:
        sub.go_direct(writer.write, tail.after, writer.stalled, MAX_BACKLOG)
        while not sub.ended or writer.blocked is not None:
            if writer.blocked is not None:
                # A final event still queued behind a paused write is worth the wait.
                if not await writer.drain(lambda: sub.ended and not sub.finished, tail.heartbeat):
                    break
                continue
            try:
                async with asyncio.timeout(tail.heartbeat):
                    await wake.wait()
            except TimeoutError:
                if not sub.heartbeat():
                    break
            wake.clear()
    finally:
        watcher.cancel()
        sub.on_end = None
    if writer.blocked is not None:
        writer.abandon()
        return False
    return not sub.broken


async def _watch_disconnect(receive: Receive, sub: Subscription) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    sub.gone()
