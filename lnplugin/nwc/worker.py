"""The NWC worker: answers NIP-47 requests from the relays and sends
`payment_received` and `hold_invoice_accepted` notifications from the outbox.

Requests from every relay go through one queue and one thread, so a request
delivered by two relays is claimed once in the store (`store/nwc.py`) and
the second copy is answered with the stored response; `make_invoice` thus
mints at most once per request event. Notifications hang off the outbox like
webhooks: fanned out with their cursor in one transaction, deleted only once
a relay acknowledged them, so each is sent at least once across restarts and
relay outages. What each method does is `methods.py`; the wallet keys are
`keyring.py`.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import time
from collections.abc import Sequence
from typing import Any

import limits
import nostr_sdk as ns

from lnplugin.follower import Follower
from lnplugin.nodes.base import Node
from lnplugin.nwc import protocol as p
from lnplugin.nwc.keyring import Keyring
from lnplugin.nwc.methods import Methods
from lnplugin.nwc.relay import Relay
from lnplugin.store import Store, cursors, events, invoices
from lnplugin.store import nwc as db

log = logging.getLogger(__name__)

RATE_BURST, RATE_PER_SECOND = 30, 1.0  # per connection
REQUEST_MEMORY = 7 * 86400  # answered requests are kept this long
# How far a request's `created_at` may be from our clock. A request dated
# further back than REQUEST_MEMORY less this, or further ahead than this,
# is dropped: its answer may already be forgotten (or would be before the
# request is), so a replay could not be told from a new request and would
# mint again.
CLOCK_SKEW = 3600
# Seconds before the last answered request (or now, when none was) a
# (re)subscription starts. Relays apply `since` to live events too (NIP-01),
# so this is also how far behind an app's clock may be and still be heard:
# it was two minutes, and an app whose clock was ten minutes slow was not
# heard after any new subscription. Now the hour a request may be dated
# ahead. The cost: a relay that keeps requests replays up to that hour more
# on a reconnect, answered from the store (`nwc_requests`), never run twice.
RESUBSCRIBE_MARGIN = CLOCK_SKEW
QUEUE_MAX = 10_000
SEND_CHUNK = 16  # notification events built before they are sent (see `_send`)
STRANGERS = -1  # the rate-limit bucket of every key without a connection
STARTUP_WAIT = 5.0  # seconds `start` waits for a first relay connection
# How often the notification thread looks for connections made by another
# process (`lnplugin nwc connect`) that took no spare key, to listen on theirs.
KEY_POLL = 1.0


class RateLimiter:
    """A token bucket per connection: `RATE_BURST` at once, then `RATE_PER_SECOND`."""

    def __init__(self, burst: int = RATE_BURST, per_second: float = RATE_PER_SECOND) -> None:
        self.burst, self.per_second = burst, per_second
        self._buckets: dict[int, tuple[float, float]] = {}
        # Seconds an emptied bucket takes to fill again; every so often the
        # full ones are forgotten (`_sweep`).
        self._refill = burst / per_second if per_second > 0 else math.inf
        self._next_sweep = -math.inf

    @property
    def kept(self) -> int:
        """Buckets kept (not `__len__`: an empty limiter would be falsy)."""
        return len(self._buckets)

    @classmethod
    def from_rate(cls, rate: str) -> RateLimiter:
        """From `--nwc-rate-limit` ("30 per 30 seconds"): a burst of the count,
        refilled evenly over the period."""
        (item,) = limits.parse_many(rate)
        return cls(item.amount, item.amount / item.get_expiry())

    def allow(self, key: int, now: float) -> bool:
        if now >= self._next_sweep:
            self._sweep(now)
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.per_second)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1, now)
        return True

    def _sweep(self, now: float) -> None:
        """Forget the buckets that are full again. A key with no bucket gets a
        full one, so forgetting them changes no answer; keeping them kept one
        per connection that ever asked, revoked ones included, for the life
        of the process. Once per refill time, so each sweep is paid for by
        that many seconds of requests."""
        burst, rate = float(self.burst), self.per_second
        self._buckets = {
            key: (tokens, at)
            for key, (tokens, at) in self._buckets.items()
            if tokens + (now - at) * rate < burst
        }
        self._next_sweep = now + self._refill


class NwcWorker:
    def __init__(
        self,
        store: Store,
        node: Node,
        relays: Sequence[str],
        network: str,
        limiter: RateLimiter | None = None,
        follower: Follower | None = None,
        address_domain: str | None = None,
    ) -> None:
        self.store = store
        self.node = node
        self.network = network
        # Settle and cancel store their result through the service's follower
        # (under its apply lock); a worker built alone gets one of its own.
        self.follower = follower or Follower(node, store)
        self.methods = Methods(store, node, self.follower, network, address_domain)
        self.address_domain = address_domain
        self.hold = self.methods.hold
        self.limiter = limiter or RateLimiter()
        self.relays = [
            Relay(url, self._enqueue, self._filter, self._connected, self._auth_keys)
            for url in relays
        ]
        # The wallet keys answered on (lnplugin/nwc/keyring.py).
        self.wallet = Keyring(store, self._announce)
        self.dropped = 0
        self._queue: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue(QUEUE_MAX)
        self._stop = threading.Event()
        # Set to end the notification thread's wait before its time: on stop,
        # and when a relay (re)connects with notifications still unsent.
        self._notify_now = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pruned_at = float("-inf")
        # Per wallet key, the date and content of its last info event: one
        # with other content must be dated later to replace it (`_info`).
        self._infos: dict[str, tuple[int, str]] = {}
        self._infos_lock = threading.Lock()

    @property
    def keys(self) -> ns.Keys | None:
        """The shared wallet key, once loaded."""
        return self.wallet.shared

    @property
    def pubkey(self) -> str:
        assert self.wallet.shared is not None
        return self.wallet.shared.public_key().to_hex()

    def load_keys(self) -> ns.Keys:
        return self.wallet.load()

    # -- lifecycle (Service.workers) ------------------------------------------------

    def start(self) -> None:
        self.load_keys()
        # Notifications follow settlements and accepted holds (`db.NOTIFY`);
        # an invoice created, by an app's make_invoice say, does not wake the
        # thread. A commit that appends no event (a connection made) does.
        self.store.on_commit(self._notify_now, db.NOTIFY)
        for target, name in ((self._serve, "requests"), (self._notify, "notifications")):
            thread = threading.Thread(target=target, name=f"lnplugin-nwc-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        for relay in self.relays:
            relay.start()
        # Give the relays a moment, so a server that says it is up is also
        # reachable over NWC; one that stays away is retried in the background.
        deadline = time.monotonic() + STARTUP_WAIT
        while (
            self.relays
            and time.monotonic() < deadline
            and not any(r.state == "connected" for r in self.relays)
        ):
            self._stop.wait(0.05)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._notify_now.set()
        self.store.off_commit(self._notify_now)
        for relay in self.relays:
            relay.stop(timeout)
        self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout)

    def status(self) -> dict[str, Any]:
        """For `GET /info` and `lnplugin status`."""
        return {
            "pubkey": self.pubkey if self.keys else None,
            "relays": [
                {
                    "url": r.name,  # never its credentials: /health is public
                    "state": r.state,
                    "connects": r.connects,
                    "last_error": r.last_error,
                    "rate_limited": r.rate_limited,
                }
                for r in self.relays
            ],
            "notification_backlog": db.backlog(self.store.conn),
            "dropped_requests": self.dropped,
        }

    # -- relays -----------------------------------------------------------------------

    def _filter(self) -> dict[str, Any]:
        last = db.last_request_at(self.store.conn)
        since = (last if last is not None else int(time.time())) - RESUBSCRIBE_MARGIN
        return {"kinds": [p.REQUEST], "#p": self.wallet.pubkeys(), "since": since}

    def _auth_keys(self) -> list[ns.Keys]:
        """The keys a relay's NIP-42 challenge is answered for: every wallet
        key subscribed to, as a relay may serve a key's requests to it alone."""
        found = (self.wallet.get(pubkey) for pubkey in self.wallet.pubkeys())
        return [keys for keys in found if keys is not None]

    def _connected(self, relay: Relay) -> None:
        # Notifications that went unacknowledged on the connection that just
        # dropped go out now, not at the notification thread's next poll
        # (up to KEY_POLL later, which bench_nwc.py measured as a 1 s stall).
        self._wake_notifications()
        # Connections made or revoked by another process since the last key
        # poll: the info events below are of the live connections as they are now.
        self.wallet.take_up()
        # Keys taken up between this connection's REQ and now were not in it,
        # and `Keyring.take_up` found the relay not yet connected: ask again.
        if set(relay.subscribed.get("#p", ())) != set(self.wallet.pubkeys()):
            relay.resubscribe()
        self._publish_info(relay, self.wallet.live())

    def _wake_notifications(self) -> None:
        # Set before the thread waits, it does not wait; set while it waits,
        # it is woken (it is the event the thread waits on).
        self._notify_now.set()

    def _announce(self, keys: list[ns.Keys]) -> None:
        """Wallet keys new to the ring: subscribe to them and publish their
        info events on every connected relay."""
        for relay in self.relays:
            if relay.state == "connected":
                relay.resubscribe()
                self._publish_info(relay, keys)
        self._wake_notifications()  # send notifications queued while it was away

    def _publish_info(self, relay: Relay, keys: list[ns.Keys]) -> None:
        """The info event of each key, sent together and acknowledged together."""
        built = [self._info(k) for k in keys]
        for event in built:
            relay.send_tracked(event.json, event.id)
        taken = relay.acked([event.id for event in built])
        if len(taken) < len(built):
            log.warning(
                "nwc relay %s did not take %d of %d info events",
                relay.name,
                len(built) - len(taken),
                len(built),
            )

    def _info(self, keys: ns.Keys) -> p.SignedEvent:
        """The info event of one wallet key, offering what its connection's
        scopes allow. When that changed (a connection took a spare key, whose
        info event offered all), dated after the last one, which a relay
        keeps otherwise: of two replaceable events of one second, NIP-01
        keeps the lower id."""
        pubkey = keys.public_key().to_hex()
        scopes = self.wallet.scopes(pubkey)
        with self._infos_lock:
            # Never dated before the last one: the same event again is a
            # duplicate to a relay, not an older event it refuses.
            at, content = self._infos.get(pubkey, (0, ""))
            event = p.info_event(keys, self.hold, scopes, at)
            built = json.loads(event.json)
            if content and built["content"] != content and built["created_at"] <= at:
                event = p.info_event(keys, self.hold, scopes, at + 1)
                built = json.loads(event.json)
            self._infos[pubkey] = (built["created_at"], built["content"])
        return event

    def _enqueue(self, url: str, event: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait((url, event))
        except queue.Full:
            self.dropped += 1
            log.warning("nwc request queue full; dropped an event from %s", url)

    def _publish(self, event_json: str) -> None:
        for relay in self.relays:
            relay.publish(event_json)

    # -- requests ---------------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            item = self._queue.get()
            if item is None or self._stop.is_set():
                return
            url, raw = item
            try:
                answer = self.handle(raw, time.time())
            except Exception:
                log.exception("nwc request from %s failed", url)
                continue
            if answer is not None:
                self._publish(answer)

    def handle(self, raw: dict[str, Any], now: float) -> str | None:
        """Answer one request event: the response event's JSON, or None when
        the event is dropped (logged once). Runs on the one request thread."""
        shared = self.load_keys()
        try:
            event = p.parse_event(raw)
            addressee = p.addressee(raw)
            keys = self.wallet.get(addressee)
            if keys is None and self.wallet.take_up():  # a connection made a moment ago
                keys = self.wallet.get(addressee)
            if keys is None:
                raise p.Drop("request is addressed to another wallet")
            request = p.read_request(event, keys, int(now))
            if not now - REQUEST_MEMORY + CLOCK_SKEW <= request.created_at <= now + CLOCK_SKEW:
                raise p.Drop(
                    f"request dated {request.created_at}, too far from now to be answered once"
                )
        except p.Drop as exc:
            self.dropped += 1
            log.info("nwc: dropped event %s: %s", str(raw.get("id", "?"))[:16], exc)
            return None
        except p.Refused as exc:
            return self._refuse(keys, exc.request, exc.refusal)
        connection = db.live_by_pubkey(self.store.conn, request.app_pubkey)
        if connection is not None and keys is not (
            self.wallet.get(connection.service_pubkey) if connection.service_pubkey else shared
        ):
            connection = None  # an app's key is good only with its own wallet key
        if connection is None:
            # Strangers share one bucket, so a flood of them cannot make us
            # sign and publish answers without end.
            if not self.limiter.allow(STRANGERS, now):
                self.dropped += 1
                return None
            return self._refuse(keys, request, p.Refuse("UNAUTHORIZED", "no wallet connection"))
        seen = db.response(self.store.conn, request.event_id)
        if seen is not None:
            return seen  # a replay: the same response again, whatever the rate
        if not self.limiter.allow(connection.id, now):
            return self._refuse(keys, request, p.Refuse("RATE_LIMITED", "too many requests"))
        with self.store.transaction(wake=False) as tx:  # no waiter reads requests
            stored = db.claim(tx, request.event_id, connection.id, request.method)
        if stored == db.CLAIMED:
            log.info("nwc: request %s was interrupted before its answer", request.event_id[:16])
            return None
        if stored is not None:
            return stored  # seen before: the same response again
        try:
            body = self.methods.run(request, connection, keys)
        except p.Refuse as exc:
            body = p.error(request.method, exc.code, exc.message)
        except Exception:  # answered, so the app does not wait for nothing
            log.exception("nwc: %s failed", request.method)
            body = p.error(request.method, "INTERNAL", "the wallet failed to answer")
        answered = db.response(self.store.conn, request.event_id)
        if answered is not None:  # make_invoice stores its answer with the invoice
            return answered
        event_json = p.response_event(keys, request, body).as_json()
        with self.store.transaction(wake=False) as tx:  # an answer, read by no waiter
            db.answer(tx, request.event_id, event_json)
        return event_json

    @staticmethod
    def _refuse(keys: ns.Keys, request: p.Request, refusal: p.Refuse) -> str:
        body = p.error(request.method or "unknown", refusal.code, refusal.message)
        return p.response_event(keys, request, body).as_json()

    # -- notifications --------------------------------------------------------------

    def _notify(self) -> None:
        while not self._stop.is_set():
            self._notify_now.clear()  # a relay connecting from here on is not missed
            try:
                self.wallet.take_up()
                more = self.notify_step()
            except Exception:
                log.exception("nwc notification step failed")
                more = False
            if more:
                continue
            # A relay holding back after `rate-limited` is tried again when
            # its pause ends, even if nothing new was committed meanwhile.
            pauses = [r.throttled_for() for r in self.relays if r.state == "connected"]
            wait = min([KEY_POLL, *(t for t in pauses if t > 0)])
            self._notify_now.wait(wait)

    def notify_step(self) -> bool:
        """Fan out and send what is due; True when there may be more to do now."""
        conn = self.store.conn
        read = 0
        # The write lock only when there is something to write: this runs
        # after every commit, the request thread's too.
        # Its own rows, read by no other waiter, and sent on in this same step:
        # its commits wake no one.
        if events.last_seq(conn) > cursors.get(conn, db.CURSOR):
            with self.store.transaction(wake=False) as tx:
                read = db.fan_out(tx)
        if time.monotonic() - self._pruned_at > 3600:  # hourly, forget old requests
            with self.store.transaction(wake=False) as tx:
                db.prune_requests(tx, int(time.time()) - REQUEST_MEMORY)
            self._pruned_at = time.monotonic()
        live = [r for r in self.relays if r.state == "connected" and not r.throttled_for()]
        if not live:
            return False
        shared = self.load_keys()
        rows = db.pending(conn)
        if not rows:
            return read == db.FAN_OUT_BATCH
        batch: dict[int, list[str]] = {}  # notification row id -> its event ids
        notified: dict[tuple[str, int], dict[str, Any] | None] = {}  # one read per payment
        built: list[p.SignedEvent] = []
        for row in rows:
            body = json.loads(row["body"])
            key = (body["type"], body["invoice_id"])
            if key not in notified:
                inv = invoices.by_id(conn, body["invoice_id"])
                notified[key] = (
                    None if inv is None else p.notification(body["type"], inv, self.address_domain)
                )
            keys = self.wallet.get(row["service_pubkey"]) if row["service_pubkey"] else shared
            if keys is None:
                continue  # a connection made a moment ago: sent once its key is taken up
            batch[row["id"]] = []
            notification = notified[key]
            if notification is None:
                continue
            for event in p.notification_events(keys, row["app_pubkey"], body["type"], notification):
                batch[row["id"]].append(event.id)
                built.append(event)
            if len(built) >= SEND_CHUNK:
                _send(live, built)
        _send(live, built)
        every = [i for ids in batch.values() for i in ids]
        acked: set[str] = set()
        for relay in live:
            acked |= relay.acked(every)
        done = [row_id for row_id, events_ in batch.items() if all(i in acked for i in events_)]
        with self.store.transaction(wake=False) as tx:
            for row_id in done:
                db.sent(tx, row_id)
        # More to do at once when a full page went out; else wait (relays away).
        return read == db.FAN_OUT_BATCH or (
            len(done) == len(batch) and len(rows) == db.PENDING_BATCH
        )


def _send(relays: list[Relay], events_: list[p.SignedEvent]) -> None:
    """Send built notification events, and empty the list.

    Events go out in chunks of `SEND_CHUNK` rather than each as soon as it
    is built: the relay's OK for each event wakes two threads here (the
    websocket reader and ours), and signing and encrypting keep releasing
    the GIL (libsecp256k1 through cffi), so OKs arriving while the next
    events are built made each cost about twice its CPU. Measured with 100
    connections (contrib/bench/bench_nwc.py); a chunk delays the first
    connection's notification by the time to build it (~3 ms)."""
    for event in events_:
        for relay in relays:
            relay.send_tracked(event.json, event.id)
    events_.clear()
