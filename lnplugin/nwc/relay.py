"""One connection to one nostr relay, kept open by its own thread.

NIP-47 requests are ephemeral events: a relay hands them only to those
subscribed when they arrive, so the connection must come back quickly after
a drop. It reconnects with exponential backoff and jitter (so many services
behind one restarted relay do not return in step), resubscribes from a
moment the caller gives (the last request it answered, less a margin: a
relay that does keep them replays what was missed, and the store answers a
replay with the stored response), and republishes the info event each time.

A relay may limit what one connection sends: by answering `OK false
"rate-limited: ..."` (NIP-01), by closing a subscription (`CLOSED`), or by
dropping the connection without a word (rust-nostr's relay does that past
its per-connection message budget). The first makes this connection hold
back its notifications for a while (doubling, from one second) and resend
what was refused; a closed subscription is made again after a pause; a drop
is retried almost at once the first time, and with growing delays when the
connections keep dropping soon after they were made.

A relay may also require NIP-42 authentication: it sends a challenge
(`["AUTH", <challenge>]`) and refuses our `REQ` (`CLOSED`) or our events
(`OK false`) with `auth-required:`. Then this connection answers the latest
challenge with a kind 22242 event for each wallet key it listens on (the
relay may serve a key's requests only to that key) and, once the relay
has answered those, asks again and sends the refused events again, once.
Nothing is signed for a relay that never asks.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import random
import secrets
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

import nostr_sdk as ns
from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect

from lnplugin import tls
from lnplugin.config import ConfigError
from lnplugin.nwc.protocol import auth_event
from lnplugin.ssrf import literal_address

log = logging.getLogger(__name__)

BACKOFF_FIRST, BACKOFF_MAX, JITTER = 0.5, 30.0, 0.3
# The first retry after a drop: a relay that dropped one connection usually
# takes the next, and notifications in flight wait for it.
QUICK_RETRY = 0.01
# A connection that lasted this long resets the backoff; one that drops
# sooner (a relay that keeps throwing us out) makes the next wait longer.
STABLE_AFTER = 30.0
THROTTLE_FIRST, THROTTLE_MAX = 1.0, 60.0  # after `OK false "rate-limited: ..."`
INFLIGHT_MAX = 1000  # unanswered responses remembered for a resend
RESEND_MAX = 5  # times an event refused as rate-limited is sent again
ACK_TIMEOUT = 5.0
MAX_MESSAGE = 512 * 1024  # a relay message larger than this ends the connection


def backoff(attempt: int) -> float:
    """Seconds before reconnect attempt `attempt` (0-based), with ±30 % jitter:
    almost at once the first time, then 0.5 s doubling up to 30 s."""
    base = QUICK_RETRY if attempt == 0 else min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (attempt - 1))
    return base * random.uniform(1 - JITTER, 1 + JITTER)


def rate_limited(message: object) -> bool:
    """An `OK false` or `CLOSED` reason with NIP-01's `rate-limited:` prefix."""
    return isinstance(message, str) and message.startswith("rate-limited:")


def auth_required(message: object) -> bool:
    """An `OK false` or `CLOSED` reason with NIP-42's `auth-required:` prefix."""
    return isinstance(message, str) and message.startswith("auth-required:")


def _no_delay(sock: socket.socket) -> None:
    """Small writes leave at once (websockets sets this itself since version
    14; lnplugin accepts older ones)."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only


def _ack_now(sock: socket.socket) -> None:
    """Acknowledge what arrived now rather than after the delayed-ACK timer.

    A relay writes its `OK` for our response and, a moment later, the next
    request on the same socket. A relay that leaves Nagle's algorithm on
    (rust-nostr's does) holds that second small write until our ACK of the
    first, and Linux delays that ACK up to 40 ms on a connection that also
    sends: every request arriving in that window waited ~40 ms. Setting
    TCP_QUICKACK sends the pending ACK at once; the kernel clears the flag
    again by itself, hence once per message."""
    if _QUICKACK is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)


def shown_url(url: str) -> str:
    """`url` as logs and status show it: without the credentials a relay URL
    may carry (`user:password@`, an auth token in the query), which must not
    reach a log or the public `/health`."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def proxy_of(url: str) -> str | None:
    """The proxy the environment names for `url`, through which websockets
    connects (WSS_PROXY or WS_PROXY, SOCKS_PROXY, HTTPS_PROXY, then, for
    ws://, HTTP_PROXY; NO_PROXY exempts a host; ALL_PROXY is not read), as
    `shown_url` shows it; None: straight to the relay.

    Why: a relay is the operator's choice, so it follows the operator's
    proxy (docs/operations.md, "Outbound connections"), unlike the URLs a
    payer or an API client picks, which connect to the address the SSRF
    guard checked. Raises `ConfigError` for a SOCKS proxy without
    python-socks: websockets raised ImportError at every connect, which
    ended the relay's thread and with it NWC, with a traceback in the log."""
    from websockets.proxy import get_proxy
    from websockets.uri import parse_uri

    try:
        proxy = get_proxy(parse_uri(url))
    except WebSocketException:
        return None  # not a ws:// or wss:// URL: the setting's own check says so
    if proxy is None:
        return None
    if proxy.startswith("socks") and importlib.util.find_spec("python_socks") is None:
        raise ConfigError(
            "invalid setting nwc_relay (--nwc-relay / LNPLUGIN_NWC_RELAY): "
            f"{shown_url(url)} would go through the SOCKS proxy {shown_url(proxy)} the "
            "environment names, which needs python-socks: install it (pip install "
            "python-socks) or exempt the relay's host in NO_PROXY"
        )
    return shown_url(proxy)


def plain_and_remote(url: str) -> bool:
    """A `ws://` URL whose host is not this machine: the traffic crosses a
    network unencrypted (NIP-44 still hides the contents, not who talks when)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "ws":
        return False
    host = (parts.hostname or "").rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return False
    address = literal_address(host)
    return address is None or not address.is_loopback


class Relay:
    """States: "connecting", "connected", "disconnected" (waiting to retry), "stopped".

    `url` is the one to connect to; `name` (`shown_url`) the one to show."""

    def __init__(
        self,
        url: str,
        on_event: Callable[[str, dict[str, Any]], None],
        subscription: Callable[[], dict[str, Any]],
        on_connect: Callable[[Relay], None],
        auth_keys: Callable[[], Sequence[ns.Keys]] | None = None,
    ) -> None:
        self.url = url
        self.name = shown_url(url)
        if plain_and_remote(url):
            log.warning(
                "nwc relay %s is plain ws:// to another machine: requests and answers stay "
                "encrypted, but who talks to this wallet, and when, can be read on the way; "
                "use wss:// unless the network between is yours",
                self.name,
            )
        proxy = proxy_of(url)
        if proxy is not None:
            log.info("nwc relay %s: connecting through the proxy %s", self.name, proxy)
        self._on_event = on_event
        self._subscription = subscription
        self._on_connect = on_connect
        self._auth_keys = auth_keys  # the keys a NIP-42 challenge is answered for
        self.state = "connecting"
        self.last_error: str | None = None
        self.connects = 0
        self._ws: ClientConnection | None = None
        self._stop = threading.Event()
        # Tracked events (notifications, the info event): None until the
        # relay's OK, then whether it took them. One condition for all of
        # them rather than a threading.Event each: a fan-out to hundreds of
        # connections made hundreds of Events, and each OK woke its own.
        self._acks: dict[str, bool | None] = {}
        # Their JSON until the OK, to send again after NIP-42 authentication.
        self._bodies: dict[str, str] = {}
        self._acks_lock = threading.Lock()
        self._answered = threading.Condition(self._acks_lock)
        self._waiting = 0  # threads in `acked`: an OK notifies only then
        self._thread: threading.Thread | None = None
        self._sub_id = secrets.token_hex(8)
        self.subscribed: dict[str, Any] = {}  # the filter last asked for on this connection
        # Untracked events (responses) awaiting their OK: resent when refused
        # as rate-limited. Cleared with each connection.
        self._inflight: dict[str, tuple[str, int]] = {}
        self._throttled_until = 0.0
        self._throttle = 0.0  # the current hold-back; 0 when the relay took the last event
        self.rate_limited = 0  # events the relay refused as rate-limited, for status
        self._reset_auth()

    def _reset_auth(self) -> None:
        """NIP-42 state, per connection (an authentication lasts as long as
        its connection). Guarded by `_acks_lock`."""
        self._challenge: str | None = None  # the relay's latest
        self._authed: set[str] = set()  # wallet keys the relay took an AUTH of
        self._auth_refused: set[str] = set()  # and refused one of: not asked again
        self._auth_reason = ""  # the relay's last refusal of an AUTH
        self._auth_pending: dict[str, str] = {}  # AUTH event id -> its wallet key
        self._auth_wanted = False  # the relay said auth-required
        self._resub_after_auth = False  # our REQ waits for the AUTHs' answers
        self._after_auth: dict[str, str] = {}  # refused events, sent again after them
        self._auth_resent: set[str] = set()  # sent again once already

    def throttled_for(self) -> float:
        """Seconds this connection still holds back notifications after the
        relay said `rate-limited`; 0 when it may send."""
        return max(0.0, self._throttled_until - time.monotonic())

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"lnplugin-nwc {self.name}")
        self._thread.daemon = True
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        ws = self._ws
        if ws is not None:
            ws.close()
        if self._thread is not None:
            self._thread.join(timeout)
        self.state = "stopped"

    def resubscribe(self) -> None:
        """Ask again with the current subscription (the wallet keys changed).

        Under a new subscription id, then the old one closed: no moment goes
        unheard, and no relay has to support replacing a subscription in
        place. A request heard on both for that moment is answered once (the
        store dedupes by event id)."""
        ws = self._ws
        if ws is None or self.state != "connected":
            return  # the next connection asks with the current filter anyway
        old, self._sub_id = self._sub_id, secrets.token_hex(8)
        with self._acks_lock:
            authenticating = self._auth_wanted and self._challenge is not None
        if authenticating and self._auth_keys is not None:
            self._authenticate(ws)  # the new keys, before the REQ that names them
        with contextlib.suppress(WebSocketException, OSError):
            self._ask(ws)
            ws.send(json.dumps(["CLOSE", old]))

    def _ask(self, ws: ClientConnection) -> None:
        """Send our `REQ` with the current filter, and remember the filter."""
        self.subscribed = self._subscription()
        ws.send(json.dumps(["REQ", self._sub_id, self.subscribed]))

    def publish(self, event_json: str, wait: bool = False) -> bool:
        """Send an event; with `wait`, True only once the relay acknowledged it
        (NIP-01 OK true). Without a live connection, False at once."""
        ws = self._ws
        if ws is None or self.state != "connected":
            return False
        event_id = json.loads(event_json)["id"]
        with self._acks_lock:
            if wait:
                self._acks[event_id] = None
                self._bodies[event_id] = event_json
            else:
                if len(self._inflight) >= INFLIGHT_MAX:  # a relay that never answers
                    self._inflight.pop(next(iter(self._inflight)))
                self._inflight[event_id] = (event_json, self._inflight.get(event_id, ("", 0))[1])
        try:
            ws.send(f'["EVENT",{event_json}]')
            if not wait:
                return True
        except (WebSocketException, OSError):
            self.forget([event_id])
            return False
        return event_id in self.acked([event_id])

    def send_tracked(self, event_json: str, event_id: str) -> bool:
        """Send an event without waiting; `acked` tells later whether the relay
        took it. False when there is no live connection. Sending a batch this
        way and collecting the acknowledgements once keeps a fan-out to many
        connections at about one round trip, not one per event."""
        ws = self._ws
        if ws is None or self.state != "connected" or self.throttled_for() > 0:
            return False
        with self._acks_lock:
            self._acks[event_id] = None
            self._bodies[event_id] = event_json
        try:
            ws.send(f'["EVENT",{event_json}]')
        except (WebSocketException, OSError):
            self.forget([event_id])
            return False
        return True

    def acked(self, event_ids: list[str], timeout: float = ACK_TIMEOUT) -> set[str]:
        """Of events sent with `send_tracked`, those the relay accepted (waiting
        up to `timeout` in all); forgets them."""
        deadline = time.monotonic() + timeout
        with self._answered:
            self._waiting += 1
            try:
                waiting = [i for i in event_ids if self._acks.get(i, False) is None]
                while waiting:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._answered.wait(left)
                    waiting = [i for i in waiting if self._acks.get(i, False) is None]
            finally:
                self._waiting -= 1
            taken = {i for i in event_ids if self._acks.get(i) is True}
            for event_id in event_ids:
                self._acks.pop(event_id, None)
                self._bodies.pop(event_id, None)
        return taken

    def forget(self, event_ids: list[str]) -> None:
        with self._acks_lock:
            for event_id in event_ids:
                self._acks.pop(event_id, None)
                self._bodies.pop(event_id, None)

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            self.state = "connecting"
            connected_at: float | None = None
            try:
                with connect(self.url, open_timeout=5, max_size=MAX_MESSAGE, **self._tls()) as ws:
                    with self._acks_lock:
                        self._reset_auth()
                    self._ws = ws
                    _no_delay(ws.socket)
                    self._ask(ws)
                    self.state = "connected"
                    self.connects += 1
                    self.last_error = None
                    connected_at = time.monotonic()
                    log.info("nwc relay %s connected", self.name)
                    # Off this thread: on_connect publishes and waits for acks
                    # that only this thread's reads can deliver.
                    threading.Thread(target=self._on_connect, args=(self,), daemon=True).start()
                    self._read(ws)
            except (WebSocketException, OSError, TimeoutError) as exc:
                # Connection errors may quote the URL, credentials and all.
                self.last_error = f"{type(exc).__name__}: {exc}".replace(self.url, self.name)
            finally:
                self._ws = None
                self._unacked()
            if self._stop.is_set():
                break
            if connected_at is not None and time.monotonic() - connected_at >= STABLE_AFTER:
                attempt = 0
            self.state = "disconnected"
            delay = backoff(attempt)
            attempt += 1
            log.warning(
                "nwc relay %s disconnected (%s); retrying in %.1fs",
                self.name,
                self.last_error,
                delay,
            )
            self._stop.wait(delay)

    def _tls(self) -> dict[str, Any]:
        """For a wss:// relay: the CAs every outbound client trusts, and the
        host's name as certificates carry it (`tls.server_name`)."""
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme.lower() != "wss":
            return {}
        name = parts.hostname
        return {
            "ssl": tls.client_context(),
            "server_hostname": tls.server_name(name) if name else None,
        }

    def _unacked(self) -> None:
        """The connection is gone: no `OK` can come for what was sent on it,
        so whoever waits for one learns now (not accepted) instead of after
        `ACK_TIMEOUT`, and those notifications go out again on the next
        connection without a 5 s stall behind them."""
        with self._answered:
            for event_id, accepted in self._acks.items():
                if accepted is None:
                    self._acks[event_id] = False
            self._inflight.clear()  # responses are not resent on a new connection
            self._bodies.clear()
            self._answered.notify_all()

    def _read(self, ws: ClientConnection) -> None:
        for raw in ws:
            _ack_now(ws.socket)
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(msg, list) or not msg:
                continue
            if msg[0] == "EVENT" and len(msg) >= 3 and isinstance(msg[2], dict):
                self._on_event(self.name, msg[2])
            elif msg[0] == "OK" and len(msg) >= 3:
                self._ok(ws, str(msg[1]), msg[2] is True, msg[3] if len(msg) > 3 else "")
            elif msg[0] == "CLOSED" and len(msg) >= 2 and msg[1] == self._sub_id:
                reason = msg[2] if len(msg) > 2 else ""
                if not (auth_required(reason) and self._want_auth(ws, resubscribe=True)):
                    self._closed(ws, reason)
            elif msg[0] == "AUTH" and len(msg) >= 2 and isinstance(msg[1], str):
                self._challenged(ws, msg[1])
            elif msg[0] == "NOTICE":
                log.info("nwc relay %s notice: %s", self.name, str(msg[1:])[:200])

    def _ok(self, ws: ClientConnection, event_id: str, accepted: bool, message: object) -> None:
        auth_for = None
        if self._auth_pending:  # only while AUTHs are unanswered
            with self._acks_lock:
                auth_for = self._auth_pending.pop(event_id, None)
        if auth_for is not None:
            self._auth_answered(ws, auth_for, accepted, message)
            return
        if not accepted and auth_required(message) and self._refused_for_auth(ws, event_id):
            return  # the outcome is the answer to the event sent again
        limited = not accepted and rate_limited(message)
        if accepted:
            self._throttle = 0.0
        elif limited:
            self.rate_limited += 1
            now = time.monotonic()
            # The rest of a burst refused together is one refusal; refused
            # again after the pause, with nothing taken since, the pause doubles.
            if now >= self._throttled_until:
                self._throttle = min(THROTTLE_MAX, max(THROTTLE_FIRST, self._throttle * 2))
                self._throttled_until = now + self._throttle
                log.warning(
                    "nwc relay %s is rate-limiting us (%s); holding back %.0fs",
                    self.name,
                    str(message)[:100],
                    self._throttle,
                )
        with self._answered:
            if self._acks.get(event_id, False) is None:  # tracked: its waiter learns the outcome
                self._acks[event_id] = accepted
                self._bodies.pop(event_id, None)
                if self._waiting:
                    self._answered.notify_all()
            resend = self._inflight.pop(event_id, None)
            self._auth_resent.discard(event_id)
        if resend is not None and not accepted and not limited:
            # An answer the relay would not take (too large, blocked): the app
            # waits for it in vain, so say why once.
            log.warning("nwc relay %s refused an answer: %s", self.name, str(message)[:200])
        if limited and resend is not None and resend[1] < RESEND_MAX:
            # A response: sent again on this connection once the hold-back is over.
            event_json, tries = resend
            with self._acks_lock:
                self._inflight[event_id] = (event_json, tries + 1)
            timer = threading.Timer(self._throttle, self._resend, args=(ws, event_id))
            timer.daemon = True
            timer.start()

    def _resend(self, ws: ClientConnection, event_id: str) -> None:
        with self._acks_lock:
            pending = self._inflight.get(event_id)
        if pending is None or self._ws is not ws or self._stop.is_set():
            return
        with contextlib.suppress(WebSocketException, OSError):
            ws.send(f'["EVENT",{pending[0]}]')

    def _closed(self, ws: ClientConnection, message: object) -> None:
        """The relay ended our subscription: without it no request reaches us,
        so ask again after a pause (longer when it said rate-limited)."""
        delay = THROTTLE_MAX / 4 if rate_limited(message) else BACKOFF_FIRST * 4
        log.warning(
            "nwc relay %s closed our subscription (%s); asking again in %.0fs",
            self.name,
            str(message)[:100],
            delay,
        )

        def again() -> None:
            if self._ws is ws and not self._stop.is_set():
                with contextlib.suppress(WebSocketException, OSError):
                    self._ask(ws)

        timer = threading.Timer(delay, again)
        timer.daemon = True
        timer.start()

    # -- NIP-42 -------------------------------------------------------------------------

    def _want_auth(self, ws: ClientConnection, resubscribe: bool = False) -> bool:
        """The relay refused our REQ (`resubscribe`) or an event with
        auth-required. True when authentication takes care of it: the REQ
        is sent again once the relay answered our AUTHs, an event then too
        (or at once, when every key is authenticated already: the AUTHs'
        answers may have crossed it). False for a REQ when there is no
        challenge yet, or nothing left to authenticate and the relay still
        refuses: it is then asked again as after any `CLOSED`."""
        if self._auth_keys is None:
            return False
        with self._acks_lock:
            self._auth_wanted = True
            if resubscribe:
                self._resub_after_auth = True
            if self._challenge is None:
                return not resubscribe  # events wait for the challenge
        awaited = self._authenticate(ws)
        if awaited:
            return True
        if resubscribe:
            with self._acks_lock:
                self._resub_after_auth = False
            return False
        self._flush_after_auth(ws)
        return True

    def _refused_for_auth(self, ws: ClientConnection, event_id: str) -> bool:
        """An event refused with auth-required: kept to be sent again after
        authentication, once. False when it was already sent again (the
        refusal stands) or is not ours to send again."""
        if self._auth_keys is None:
            return False
        with self._acks_lock:
            if event_id in self._auth_resent:
                return False
            body = self._bodies.get(event_id) or self._inflight.get(event_id, ("", 0))[0]
            if not body:
                return False
            self._after_auth[event_id] = body
        return self._want_auth(ws)

    def _challenged(self, ws: ClientConnection, challenge: str) -> None:
        """A relay's challenge: kept (the latest counts), and answered at
        once when the relay has already said auth-required."""
        with self._acks_lock:
            self._challenge = challenge
            wanted = self._auth_wanted
        if wanted and not self._authenticate(ws):
            self._flush_after_auth(ws)

    def _authenticate(self, ws: ClientConnection) -> int:
        """Send an AUTH, for the latest challenge, for each wallet key the
        relay has neither taken nor refused one of on this connection (so a
        relay that refuses them all ends the round, not loops); returns how
        many AUTHs await an answer."""
        assert self._auth_keys is not None
        with self._acks_lock:
            challenge = self._challenge
            done = self._authed | self._auth_refused | set(self._auth_pending.values())
        if challenge is None:
            return 0
        built = []
        for keys in self._auth_keys():
            pubkey = keys.public_key().to_hex()
            if pubkey not in done:
                built.append((pubkey, auth_event(keys, self.name, challenge)))
                done.add(pubkey)
        with self._acks_lock:
            for pubkey, event in built:
                self._auth_pending[event.id] = pubkey
            awaited = len(self._auth_pending)
        if built:
            log.info(
                "nwc relay %s asks for NIP-42 auth: answering for %d keys", self.name, len(built)
            )
        with contextlib.suppress(WebSocketException, OSError):
            for _pubkey, event in built:
                ws.send(f'["AUTH",{event.json}]')
        return awaited

    def _auth_answered(
        self, ws: ClientConnection, pubkey: str, accepted: bool, message: object
    ) -> None:
        with self._acks_lock:
            (self._authed if accepted else self._auth_refused).add(pubkey)
            if not accepted:
                self._auth_reason = str(message)[:200]
            left = len(self._auth_pending)
            taken, refused = len(self._authed), len(self._auth_refused)
        if left:
            return
        # Once a round, not per key. rust-nostr's relay takes one AUTH per
        # challenge and refuses the rest ("invalid challenge"), although
        # NIP-42 lets a client authenticate several keys: one is enough
        # there, as it serves any authenticated client.
        if refused and not taken:
            log.warning("nwc relay %s refused our AUTH: %s", self.name, self._auth_reason)
        elif refused:
            log.info(
                "nwc relay %s took %d of %d AUTHs (the others: %s)",
                self.name,
                taken,
                taken + refused,
                self._auth_reason,
            )
        self._flush_after_auth(ws)

    def _flush_after_auth(self, ws: ClientConnection) -> None:
        """The relay answered every AUTH: ask again and send the refused
        events again (each once)."""
        with self._acks_lock:
            resubscribe, self._resub_after_auth = self._resub_after_auth, False
            again, self._after_auth = self._after_auth, {}
            self._auth_resent.update(again)
        if self._ws is not ws or self._stop.is_set():
            return
        with contextlib.suppress(WebSocketException, OSError):
            if resubscribe:
                self._ask(ws)
            for body in again.values():
                ws.send(f'["EVENT",{body}]')
