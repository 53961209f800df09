"""The running service: settings, store, node, follower and workers, built once.

`lnplugin serve` and the Core Lightning plugin both build a `Service` and
hand it to the Flask app factory, so there is exactly one way to assemble
lnplugin. Every part is a named, typed field (no dict of strings), so a
reader and a type checker both see what the API and the server can reach.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TextIO

from lnplugin.config import ConfigError, Settings
from lnplugin.datadir import (
    LOCK_FILE,
    DataDirError,
    ensure_dir,
    lock_holder,
    private_file,
    warn_if_open,
)
from lnplugin.fiat import FiatRates, guarded_get, parse_provider
from lnplugin.follower import Follower
from lnplugin.hub import EventHub, StreamGate
from lnplugin.listening import accepts_at, holds_open, listening
from lnplugin.lnurl import domain_of
from lnplugin.nodes import make_node
from lnplugin.nodes.base import (
    NetworkMismatch,
    Node,
    NodeCredentialsRejected,
    NodeError,
    NodeInfo,
    NodeMisconfigured,
    NodeNotTrusted,
    NodePermissionDenied,
)
from lnplugin.rss_payment import FetchSettings, RssPaymentWorker
from lnplugin.store import Store, StoreError, captured_records, cursors
from lnplugin.webhooks import DeliveryWorker

if TYPE_CHECKING:
    # Imported where they are made (`_nwc_worker`, `_zap_worker`), only when
    # configured: with nostr-sdk's bindings they are the largest import of a
    # server's start, and most servers run neither.
    from lnplugin.nwc.worker import NwcWorker
    from lnplugin.zapper import ZapWorker

log = logging.getLogger(__name__)


NETWORK_RECHECK_MAX = 5.0  # seconds between tries of a postponed network check
# Seconds `start` waits for the node's first answer to the network check before
# it postpones the check and serves: a node that accepts the connection but
# answers nothing would otherwise hold the start (and SIGTERM, Ctrl-C) for the
# whole deadline of the call.
NETWORK_CHECK_WAIT = 5.0
STOP_SLACK = 5.0  # seconds `stop` allows a `start` beyond its network check's wait


@dataclass
class _FirstCheck:
    """The first network check's outcome (True: settled, False: node
    unreachable, or the refusal), and whether `start` still waits for it."""

    done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    waiting: bool = True
    outcome: bool | Exception | None = None


# A node that answers, but not as the node configured, or not to these
# credentials: no wait mends either, so `start` refuses on them. Later they
# are "unavailable" like a node that is down (the operator may mend it).
_WRONG_NODE_SETTING = (NodeNotTrusted, NodeCredentialsRejected)


class StartupRefused(Exception):
    """lnplugin must not start; the message tells the operator why and what to do."""


class AlreadyServing(StartupRefused):
    pass


def unusable_errors() -> tuple[type[Exception], ...]:
    """What a setting, data dir, store or node credential that cannot work
    raises while lnplugin starts: each is one line for the operator (`Error:`
    on the command line, a `broken` line in lightningd's log), never a traceback."""
    return (ConfigError, DataDirError, StoreError, NodeMisconfigured, StartupRefused)


def _lock_fields(data_dir: Path) -> list[str]:
    """The lock file's words: pid, node kind, then (once listening) URL and
    status key. None of them when nothing has served `data_dir`."""
    try:
        return (Path(data_dir) / LOCK_FILE).read_text().split()
    except OSError:
        return []


def served_kind(data_dir: Path) -> str | None:
    """The node kind the last process to serve `data_dir` ran with, from its
    lock file (which outlives the process); None when nothing has served it."""
    fields = _lock_fields(data_dir)
    return fields[1] if len(fields) > 1 else None


@dataclass(frozen=True)
class Serving:
    """What the data dir's lock file says of the live server: where it
    listens, and the key that shows the operator's `/health`."""

    url: str
    status_key: str | None


def serving(data_dir: Path) -> Serving | None:
    """The server that serves `data_dir` now, from its lock file; None when no
    live process serves it (or one that did not say where).

    Why: `lnplugin status` would otherwise ask whatever answers on the
    default port, which may be another data dir's server. The server is the
    process that holds the lock (`datadir.lock_holder`, the same test that
    keeps commands from migrating a served store), so a lock file a dead
    server left, its pid since reused, names no server."""
    fields = _lock_fields(data_dir)
    try:
        found = Serving(fields[2], fields[3] if len(fields) > 3 else None)
    except IndexError:
        return None
    return found if lock_holder(data_dir) is not None else None


def listening_server(data_dir: Path, host: str, port: int) -> str | None:
    """The address (of `host`'s) at which the process serving `data_dir`
    listens on `port`; None when none serves it, or when it cannot be told
    that what listens there is that process.

    Why: a server that noted no URL in the lock file (an older version, or
    one that has not bound its port yet) leaves `status` only --host/--port,
    where another data dir's server, or any program, may answer. The lock
    file names the holder's pid; that process holding both the data dir's
    lock file and the socket listening there is this data dir's server.
    Told from /proc (`lnplugin.listening`): elsewhere, or for a process in
    another pid namespace or of another user, it cannot be told, and None."""
    pid = lock_holder(data_dir)
    if pid is None or not pid.isdigit() or not holds_open(pid, Path(data_dir) / LOCK_FILE):
        return None
    sockets = listening(pid)
    if not sockets:
        return None
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return None
    for *_, sockaddr in found:
        address = str(sockaddr[0])
        if accepts_at(sockets, {address}, port):
            return address
    return None


def refuse_a_dev_data_dir(settings: Settings) -> None:
    """Raise `StartupRefused` when a real node (lnd, cln) is to serve a data
    dir the embedded dev node served last, unless `reuse_dev_data_dir`.

    Why: the dev node's invoices and "payments" are simulated; served on,
    they would sit beside the real node's in the API, exports and NWC's
    transactions, with nothing to tell them apart. Read before the lock is
    taken (which notes the new kind); once served with a real node, the
    data dir is that node's. A live server is left to `lock_data_dir`'s refusal."""
    data_dir = settings.data_dir
    if settings.node == "dev" or settings.reuse_dev_data_dir or lock_holder(data_dir):
        return
    if served_kind(data_dir) == "dev":
        raise StartupRefused(
            f"{data_dir} was last served by the embedded dev node: its simulated invoices "
            f"and payments would sit beside the {settings.node} node's; serve {settings.node} "
            "with a fresh --data-dir, or pass --reuse-dev-data-dir "
            "(LNPLUGIN_REUSE_DEV_DATA_DIR) to keep them"
        )


def refuse_a_node_data_dir(settings: Settings, store: Store) -> None:
    """Raise `StartupRefused` when the embedded dev node is to serve a data
    dir a real node (lnd, cln) served last, unless `reuse_node_data_dir`.

    Why: `--node` defaults to dev, so a service whose environment file did
    not load (or a `serve` typed without its flags) starts the dev node on
    the operator's store: its simulated invoices and "payments" would join
    the real ones in the API, exports, webhooks and NWC, and it would take
    the follower's cursors over as another node's. The mirror of
    `refuse_a_dev_data_dir`; read before the lock is taken (which notes the
    new kind). A live server is left to `lock_data_dir`'s refusal."""
    data_dir = settings.data_dir
    if settings.node != "dev" or settings.reuse_node_data_dir or lock_holder(data_dir):
        return
    kind = served_kind(data_dir)
    if kind not in ("lnd", "cln"):
        return
    pubkey = cursors.followed_node(store.conn)
    node = f"the {kind} node {pubkey}" if pubkey else f"an {kind} node"
    raise StartupRefused(
        f"{data_dir} was last served by {node} (--node {kind}), and --node is dev (the "
        f"default): its real invoices would get the embedded dev node's simulated ones "
        f"beside them; set --node {kind} (LNPLUGIN_NODE) and its settings (did the "
        "service's environment file load?), give the dev node its own --data-dir, or "
        "pass --reuse-node-data-dir (LNPLUGIN_REUSE_NODE_DATA_DIR) to serve it with the "
        "dev node all the same"
    )


def already_serving(data_dir: Path, pid: str) -> AlreadyServing:
    return AlreadyServing(
        f"another lnplugin (pid {pid}) is already serving {data_dir}; "
        "stop it first, or give this one its own --data-dir"
    )


def lock_data_dir(data_dir: Path, kind: str = "") -> TextIO:
    """Hold `<data_dir>/lnplugin.lock` for as long as this process serves.

    The file holds the pid and the node kind: the pid for the refusal below,
    the kind so `lnplugin dev pay` can refuse a store another node serves;
    once the server listens, also its URL (`Service.announce`), for `status`.

    Two serving processes on one data dir would each run a follower and a
    webhook worker over the same store: every webhook would go out twice. The
    kernel drops an flock when its process dies, so a crash or SIGKILL never
    leaves a stale lock behind. CLI commands (tokens, status) do not take it;
    they only refuse to migrate a store it is held on (`Store`).
    """
    path = data_dir / LOCK_FILE
    private_file(path)
    handle = open(path, "r+")  # noqa: SIM115 - held until stop()
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        pid = (handle.read().split() or ["?"])[0]
        handle.close()
        raise already_serving(data_dir, pid) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()} {kind}\n")
    handle.flush()
    return handle


class Worker(Protocol):
    """A background part started after the follower and stopped before it."""

    def start(self) -> None: ...

    def stop(self, timeout: float = ...) -> None: ...


def _nwc_worker(settings: Settings, store: Store, node: Node, follower: Follower) -> NwcWorker:
    from lnplugin.nwc.worker import NwcWorker, RateLimiter

    return NwcWorker(
        store,
        node,
        settings.nwc_relay,
        settings.effective_network,
        limiter=RateLimiter.from_rate(settings.nwc_rate_limit),
        follower=follower,
        address_domain=domain_of(settings.public_url) if settings.public_url else None,
    )


def _zap_worker(settings: Settings, store: Store) -> ZapWorker:
    from lnplugin.zapper import ZapWorker

    return ZapWorker(store, settings.zap_relay_allow)


@dataclass
class Service:
    settings: Settings
    store: Store
    node: Node
    follower: Follower
    webhooks: DeliveryWorker  # fan-out of outbox events into signed webhook deliveries
    event_hub: EventHub  # fan-out of outbox events to open SSE streams
    stream_gate: StreamGate  # admission of SSE streams (--max-streams)
    rss_payments: RssPaymentWorker  # fetches of rss::payment boost records, from the outbox
    nwc: NwcWorker | None = None  # Nostr Wallet Connect; None without --nwc-relay
    zaps: ZapWorker | None = None  # NIP-57 zap receipts; None without --zaps
    fiat: FiatRates = field(default_factory=lambda: FiatRates(()))  # --fiat-provider rates
    started_at: float = field(default_factory=time.time)
    _info: NodeInfo | None = None
    _info_at: float = 0.0
    _info_lock: threading.Lock = field(default_factory=threading.Lock)
    _aliases: dict[str, str | None] = field(default_factory=dict)
    _lock: TextIO | None = None
    # Lets `lnplugin status` see the operator's /health (api/info.py): written
    # to the data dir's lock file (0600) by `announce`, so only the user that
    # can read the data dir has it.
    status_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    # Set when a network check postponed at start (the node was down) finds
    # the node on another network: the runner (`lnplugin serve`, the CLN
    # plugin) is told through `on_refused` and stops, as it would have at start.
    refused: str | None = None
    on_refused: Callable[[str], None] | None = None
    _stopped: threading.Event = field(default_factory=threading.Event)
    # Held by `start` throughout, taken by `stop`: a runner may stop the
    # service from another thread while it is still starting (the CLN plugin
    # gets `shutdown` on lightningd's thread while its serving thread runs
    # `start`). Stopping workers that were being started raised ("cannot join
    # thread before it is started"), and workers started after `stop` ran on
    # a closed store.
    _lifecycle: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def build(cls, settings: Settings, node: Node | None = None) -> Service:
        """Raises `DataDirError`, `StoreError` or `NodeMisconfigured` (one line
        each) for a data dir, store or node setting that cannot work."""
        ensure_dir(settings.data_dir)
        warn_if_open(settings.data_dir)
        store = Store(settings.db_path, busy_timeout=settings.busy_timeout)
        try:
            # Before the dev node is made: it would write its key and ledger there.
            refuse_a_node_data_dir(settings, store)
            node = node or make_node(settings)
        except BaseException:
            store.close()
            raise
        follower = Follower(node, store, hold_cancel_margin=settings.hold_cancel_margin)
        return cls(
            settings=settings,
            store=store,
            node=node,
            follower=follower,
            webhooks=DeliveryWorker(
                store,
                allow=settings.webhook_allow,
                schedule=settings.webhook_retry_schedule,
                public_url=settings.public_url,
            ),
            event_hub=EventHub(store, settings.public_url),
            stream_gate=StreamGate(settings.max_streams),
            rss_payments=RssPaymentWorker(
                store,
                FetchSettings(
                    domains=settings.rss_payment_domain,
                    allow=settings.webhook_allow,
                    schedule=settings.rss_payment_retry_schedule,
                    timeout=settings.rss_payment_timeout,
                    max_bytes=settings.rss_payment_max_bytes,
                ),
            ),
            nwc=_nwc_worker(settings, store, node, follower) if settings.nwc_relay else None,
            zaps=_zap_worker(settings, store) if settings.zaps else None,
            fiat=FiatRates(
                [parse_provider(p) for p in settings.fiat_provider],
                cache_ttl=settings.fiat_cache_ttl,
                max_age=settings.fiat_max_age,
                fetch=guarded_get(settings.fiat_allow),
            ),
        )

    @property
    def workers(self) -> list[Worker]:
        """Started in this order after the follower, stopped in reverse before it."""
        parts: list[Worker] = [self.webhooks, self.event_hub, self.rss_payments]
        if self.nwc is not None:
            parts.append(self.nwc)
        if self.zaps is not None:
            parts.append(self.zaps)
        return parts

    def before_shutdown(self) -> None:
        """End open event streams now, so the server's drain does not wait for them."""
        self.event_hub.close_all()

    def node_info(self, max_age: float = 30.0) -> NodeInfo | None:
        """The node's info, cached; None while the node cannot tell us."""
        with self._info_lock:
            fresh = time.time() - self._info_at < max_age
            # Cached only while the follower is connected: when it is not, the
            # node may be gone, and is asked again.
            if self._info is not None and fresh and self.follower.status.connection == "connected":
                return self._info
            try:
                self._info = self.node.get_info()
                self._info_at = time.time()
            except NodeError as exc:
                # Not the last answer: that would show a node that is down as
                # reachable, with the state it had before.
                self._info = None
                self.follower.node_errors["get_info"] += 1
                log.debug("get_info failed: %s", exc)
            return self._info

    def check_network(self) -> None:
        """Refuse to run against a node on another network than configured.

        Raises `StartupRefused` with the node's `NetworkMismatch` message, or
        its `NodeNotTrusted` or `NodeCredentialsRejected` one (a node that
        answers but not as the node configured, or that refuses lnplugin's
        credentials outright: no wait mends that), when the node answers within
        `NETWORK_CHECK_WAIT`; otherwise the check goes on in the background."""
        first = _FirstCheck()
        threading.Thread(
            target=self._first_network_check,
            args=(first,),
            name="lnplugin-network-check",
            daemon=True,
        ).start()
        first.done.wait(NETWORK_CHECK_WAIT)
        with first.lock:
            first.waiting = False
            outcome = first.outcome
        if isinstance(outcome, Exception):
            raise StartupRefused(str(outcome)) from None
        if outcome is not True:
            log.warning("network check postponed until the node answers")

    def _first_network_check(self, first: _FirstCheck) -> None:
        """The first try; then, unless it settled, the postponed tries. An
        answer `start` no longer waited for is acted on as a later one is."""
        outcome: bool | Exception
        try:
            outcome = self._try_network_check()
        except (NetworkMismatch, *_WRONG_NODE_SETTING) as exc:
            outcome = exc
        with first.lock:
            waited = first.waiting
            if waited:
                first.outcome = outcome
                first.done.set()
        if waited and outcome is not False:
            return  # settled, or refused: `start` acts on it
        if not waited and isinstance(outcome, NetworkMismatch):
            self._refuse(outcome)
            return
        if outcome is not True:
            self._check_network_later()

    def _refuse(self, exc: NetworkMismatch) -> None:
        self.refused = str(exc)
        log.error("%s", exc)
        if self.on_refused is not None:
            self.on_refused(self.refused)

    def _try_network_check(self) -> bool:
        """One try: True once settled (passed, or not possible with these
        credentials: a valid macaroon without info:read), False while the node
        is unreachable. Raises `NetworkMismatch`, `NodeNotTrusted` and
        `NodeCredentialsRejected`."""
        try:
            info = self.node.check_network(self.settings.effective_network)
        except (NetworkMismatch, *_WRONG_NODE_SETTING):
            raise
        except NodePermissionDenied as exc:
            log.warning("network check skipped (the credentials lack the permission): %s", exc)
            return True
        except NodeError as exc:
            log.debug("network check: node unreachable: %s", exc)
            return False
        self._info, self._info_at = info, time.time()
        return True

    def _check_network_later(self) -> None:
        """The check `start` could not make, made once the node answers.

        Why: a node down at start could come up on another network, and
        lnplugin would mint its invoices there. Asked every few seconds (the
        node is down, so nothing can be minted meanwhile); on a mismatch the
        runner stops, with the same one-line reason as at start."""
        delay = 1.0
        while not self._stopped.wait(delay):
            try:
                if self._try_network_check():
                    return
            except _WRONG_NODE_SETTING:
                pass  # the follower reports it, and may yet connect (lnd given its old cert back)
            except NetworkMismatch as exc:
                self._refuse(exc)
                return
            delay = min(delay * 2, NETWORK_RECHECK_MAX)

    def alias_of(self, pubkey: str) -> str | None:
        if pubkey not in self._aliases:
            if len(self._aliases) > 10_000:
                self._aliases.clear()
            try:
                self._aliases[pubkey] = self.node.node_alias(pubkey)
            except NodeError:
                return None
        return self._aliases[pubkey]

    def claim_data_dir(self) -> None:
        """Take the data dir's lock now rather than at `start` (idempotent);
        raises `AlreadyServing`. The CLN plugin claims it during `init`, so a
        refusal disables the plugin with the reason instead of failing later.

        Holding the lock, it replays the records journal (captures the CLN
        hook kept on disk while the store was busy, which a killed process
        had not stored yet): only the process that serves the data dir may
        touch it, and this is before the follower can store a settlement."""
        if self._lock is None:
            refuse_a_dev_data_dir(self.settings)
            self._lock = lock_data_dir(self.settings.data_dir, self.settings.node)
            captured_records.replay_journal(self.store)

    def announce(self, url: str) -> None:
        """Write where this process listens, and its status key, into the data
        dir's lock file (read by `serving`). Best effort: `status` falls back
        to --port and the open answer."""
        if self._lock is None:
            return
        try:
            self._lock.seek(0)
            self._lock.truncate()
            self._lock.write(f"{os.getpid()} {self.settings.node} {url} {self.status_key}\n")
            self._lock.flush()
        except OSError as exc:
            log.warning("cannot note the listening URL in the data dir's lock file: %s", exc)

    def start(self) -> None:
        """Raises `StartupRefused` (nothing started, lock released) when lnplugin
        must not run. Does nothing once `stop` has begun."""
        with self._lifecycle:
            if self._stopped.is_set():
                return
            self.claim_data_dir()
            try:
                self.check_network()
            except StartupRefused:
                self._release_lock()
                raise
            self.follower.start()
            for worker in self.workers:
                worker.start()

    def stop(self) -> None:
        """Stop what `start` started; waits for a `start` in progress on
        another thread (it is bounded: the network check waits at most
        `NETWORK_CHECK_WAIT`) to finish first."""
        self._stopped.set()
        acquired = self._lifecycle.acquire(timeout=NETWORK_CHECK_WAIT + STOP_SLACK)
        if not acquired:
            log.warning("stopping while the start has not finished")
        try:
            for worker in reversed(self.workers):
                worker.stop()
            self.follower.stop()
            self.fiat.close()
            self.store.close()
            self._release_lock()
        finally:
            # Only if taken here: a plain Lock released by another thread
            # would be the start's, still holding it.
            if acquired:
                self._lifecycle.release()

    def _release_lock(self) -> None:
        """Give the data dir up. The records journal first: once another
        process may serve the data dir, this one must not write it (a CLN
        hook still running here keeps its captures in memory instead)."""
        if self.store.journal is not None:
            self.store.journal.close()
        if self._lock is not None:
            self._lock.close()  # closing the descriptor drops the flock
            self._lock = None
