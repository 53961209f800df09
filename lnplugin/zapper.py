"""The zap worker: a zap receipt for each settled zapped invoice, published
to the relays its zap request named.

It hangs off the outbox like the rss::payment worker: settlements past its
own cursor get their one receipt, signed with the zapper key and dated the
payment time, and a delivery row per relay, in the transaction that
advances the cursor (`store/zaps.py`). Deliveries are then sent on a small
pool of their own, each on a connection of its own (connect, `EVENT`,
wait for the relay's `OK`, close): the relays are a stranger's choice, so
each goes through the SSRF guard (`pinned_http.resolve`: resolved once,
every address judged, the connection made to the address that passed) and
is never kept open. A relay that took the event (`OK true`, or `duplicate:`)
is done; a network error, `rate-limited:` or `error:` is retried on
`RETRY_SCHEDULE`, then given up; a relay that refused the event for good or
whose address is not public is not asked again. At least once across
restarts: a row is marked sent only after the relay's `OK`.

Relay URLs are shown without credentials or query (`nwc.relay.shown_url`);
the receipt itself (which carries the preimage) is never logged.
"""

from __future__ import annotations

import functools
import json
import logging
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import nostr_sdk as ns
from websockets.exceptions import WebSocketException
from websockets.sync.client import connect

from lnplugin import pinned_http, tls, zaps
from lnplugin.handout import Handout, Senders, retry_delay
from lnplugin.nwc.relay import shown_url
from lnplugin.ssrf import Refused
from lnplugin.store import Store, cursors, events, invoices
from lnplugin.store import zaps as db
from lnplugin.wakeloop import WakeLoop, sleep_until

log = logging.getLogger(__name__)

BATCH = 500  # outbox events read per transaction
SENDERS = 4  # deliveries at once: a silent relay holds one thread, not the queue
PARK = 30.0  # seconds a row whose outcome could not be stored waits before another try
STOP_GRACE = 1.0
CONNECT_TIMEOUT = 5.0
ANSWER_TIMEOUT = 10.0  # seconds from the connect to the relay's OK, all in all
# Seconds between attempts at one relay (about 15 hours in all), then given up.
RETRY_SCHEDULE = (1, 5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800)
MAX_MESSAGE = 64 * 1024
# NIP-01 `OK false` prefixes after which the same event may be taken later.
_TRANSIENT = ("rate-limited:", "error:")


@dataclass(frozen=True)
class Outcome:
    sent: bool = False
    error: str | None = None
    retry: bool = False
    refused: bool = False


def publish(url: str, event_json: str, event_id: str, allow: Sequence[str]) -> Outcome:
    """Send one event to one relay and wait for its `OK`."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if parts.scheme == "wss" else 80)
        address = pinned_http.resolve(host, port, allow)
    except Refused as exc:
        return Outcome(error=str(exc).replace("--webhook-allow", "--zap-relay-allow"), refused=True)
    except (ValueError, UnicodeError) as exc:
        return Outcome(error=f"unusable URL: {exc}"[:200])
    deadline = time.monotonic() + ANSWER_TIMEOUT
    try:
        sock = socket.create_connection((address, port), CONNECT_TIMEOUT)
    except OSError as exc:
        return Outcome(error=f"{type(exc).__name__}: {exc}"[:200], retry=True)
    try:
        with connect(
            url,
            sock=sock,
            ssl=tls.client_context() if parts.scheme == "wss" else None,
            server_hostname=tls.server_name(host) if parts.scheme == "wss" else None,
            open_timeout=CONNECT_TIMEOUT,
            close_timeout=1,
            max_size=MAX_MESSAGE,
        ) as ws:
            ws.send(f'["EVENT",{event_json}]')
            while (left := deadline - time.monotonic()) > 0:
                answer = _ok(ws.recv(timeout=left), event_id)
                if answer is not None:
                    return answer
            return Outcome(error="no OK from the relay in time", retry=True)
    except ValueError as exc:
        # websockets' refusal to follow a redirect on a socket it was handed
        # (the one the guard checked): the relay's answer, tried again later
        # like any other, never followed (its target was not checked).
        if isinstance(exc.__cause__, WebSocketException):
            error = f"redirect not followed: {exc.__cause__}"
        else:
            error = f"{type(exc).__name__}: {exc}".replace(url, shown_url(url))
        return Outcome(error=error[:200], retry=True)
    except (WebSocketException, OSError, TimeoutError) as exc:
        error = f"{type(exc).__name__}: {exc}".replace(url, shown_url(url))
        return Outcome(error=error[:200], retry=True)
    finally:
        sock.close()


def _ok(raw: Any, event_id: str) -> Outcome | None:
    """The outcome a relay message gives, or None when it is not our `OK`."""
    try:
        msg = json.loads(raw)
    except (TypeError, ValueError):
        return None
    if not (isinstance(msg, list) and len(msg) >= 3 and msg[0] == "OK" and msg[1] == event_id):
        return None
    reason = str(msg[3]) if len(msg) > 3 else ""
    if msg[2] is True or reason.startswith("duplicate:"):
        return Outcome(sent=True)
    return Outcome(error=f"relay refused it: {reason[:150]}", retry=reason.startswith(_TRANSIENT))


class ZapWorker:
    """Builds receipts from the outbox on one thread and sends them on a
    pool of `SENDERS`; a delivery is handed out again only once the outcome
    of its attempt is stored."""

    def __init__(self, store: Store, allow: Sequence[str] = ()) -> None:
        self.store = store
        self.allow = tuple(allow)
        self._keys: ns.Keys | None = None
        self._keys_lock = threading.Lock()
        self._pool: Senders | None = None
        self._handout = Handout(SENDERS, PARK)
        # Receipts follow settlements only; other events wait for the next
        # of those, or the idle timeout, to move the cursor past them.
        self._loop = WakeLoop(store, "lnplugin-zaps", self.step, (events.INCOMING_SETTLED,))

    @property
    def keys(self) -> ns.Keys:
        """The zapper key, made and stored on first use."""
        with self._keys_lock:
            if self._keys is None:
                with self.store.transaction(wake=False) as tx:
                    secret = db.zapper_secret(tx)
                self._keys = ns.Keys(ns.SecretKey.parse(secret))
            return self._keys

    @property
    def pubkey(self) -> str:
        return str(self.keys.public_key().to_hex())

    def status(self) -> dict[str, Any]:
        """For `GET /info`, the operator's `GET /health` and `lnplugin status`:
        deliveries (one per receipt and relay) still to go, receipts not yet
        built included, and those given up, as the relay refused the event or
        its retries ran out (`failed`) or its address may not be reached
        (`refused`, see `--zap-relay-allow`)."""
        with self.store.snapshot() as conn:
            states = db.by_state(conn)
            unbuilt = db.not_built(conn)
        return {
            "pubkey": self.pubkey,
            "receipt_backlog": states[db.PENDING] + unbuilt,
            "receipts_failed": states[db.FAILED],
            "receipts_refused": states[db.REFUSED],
        }

    def start(self) -> None:
        log.info("zaps on: receipts signed by %s", self.pubkey)
        self._pool = Senders(SENDERS, "lnplugin-zap-send")
        self._loop.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._loop.stop(timeout)
        if self._pool is not None:
            self._pool.shutdown(STOP_GRACE)

    def step(self) -> float:
        """Build receipts for new settlements, hand due deliveries to the
        pool; returns seconds to sleep."""
        conn = self.store.conn
        backlog = False
        if events.last_seq(conn) > cursors.get(conn, db.CURSOR):
            keys = self.keys  # before the transaction: made in one of its own the first time
            # Delivery rows, which only this worker reads, sent on in this step.
            with self.store.transaction(wake=False) as tx:
                backlog = self.build(tx, keys) == BATCH
        now = time.time()
        rows = self._handout.take(
            lambda busy, free: db.due(conn, now, free, busy), lambda row: row["id"]
        )
        for row in rows:
            assert self._pool is not None
            self._pool.submit(
                self._loop.attempt,
                self._handout,
                row["id"],
                functools.partial(self.attempt, row),
                f"zap receipt for invoice {row['invoice_id']}",
            )
        if backlog:
            return 0.0
        return sleep_until(db.next_due_at(conn, self._handout.busy()))

    def build(self, tx: Any, keys: ns.Keys) -> int:
        """The receipts of zapped invoices settled past the cursor; returns events read."""
        rows = events.after(tx, cursors.get(tx, db.CURSOR), BATCH)
        settled = [r["invoice_id"] for r in rows if r["type"] == events.INCOMING_SETTLED]
        for request in db.without_receipt(tx, settled):
            invoice = invoices.by_id(tx, request["invoice_id"])
            if invoice is None or invoice.state != "SETTLED":
                continue
            paid_at = invoice.settled_at or int(time.time())
            receipt = zaps.receipt(
                keys, request["request"], invoice.payment_request, invoice.preimage, paid_at
            )
            db.set_receipt(tx, invoice.id, receipt, json.loads(request["relays"]))
        if rows:
            cursors.advance(tx, db.CURSOR, rows[-1]["seq"])
        return len(rows)

    def attempt(self, row: Any) -> None:
        """Send one due delivery and store the outcome."""
        receipt = row["receipt"]
        outcome = publish(row["relay"], receipt, json.loads(receipt)["id"], self.allow)
        relay = shown_url(row["relay"])
        delay = None
        if outcome.sent:
            state = db.SENT
        elif outcome.refused:
            state = db.REFUSED
        else:
            delay = retry_delay(RETRY_SCHEDULE, row["attempts"]) if outcome.retry else None
            state = db.FAILED if delay is None else db.PENDING
        next_at = None if delay is None else time.time() + delay
        # Rows only this worker reads; its loop is woken when the attempt ends.
        with self.store.transaction(wake=False) as tx:
            db.record_attempt(tx, row["id"], state=state, error=outcome.error, next_at=next_at)
        if outcome.sent:
            log.info("zap receipt for invoice %s published to %s", row["invoice_id"], relay)
        else:
            log.warning(
                "zap receipt for invoice %s to %s failed: %s; %s",
                row["invoice_id"],
                relay,
                outcome.error,
                f"retrying in {delay:.0f}s" if delay is not None else "given up",
            )
