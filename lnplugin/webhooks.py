"""Webhook delivery: Standard Webhooks signatures, an SSRF-safe HTTP POST, and
the worker that turns outbox events into at-least-once deliveries.

The path of a payment: follower commits invoice + outbox event -> the worker
wakes on `Store.wait_for_commit` -> fan-out writes delivery rows and its
cursor in one transaction -> a pool of sender threads POSTs each due row ->
the outcome (delivered, retry at T, or dead-lettered) is written back. A crash
anywhere leaves a pending row that the next start sends again, with the same
`webhook-id`, which is what lets receivers deduplicate.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from lnplugin import __version__, pinned_http
from lnplugin.handout import Handout, Senders, retry_delay
from lnplugin.store import Store, cursors, events
from lnplugin.store import webhooks as db
from lnplugin.wakeloop import WakeLoop, sleep_until

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 64 * 1024
SENDERS = 8  # concurrent deliveries, so one slow receiver cannot hold up the rest
# Deliveries in flight to one target (an endpoint, or an invoice `webhook` URL)
# are at most half the senders: a receiver that does not answer gets half,
# never all (`DeliveryWorker.per_target`).
PARK = 60.0  # seconds a row whose outcome could not be recorded is not dispatched again
# Seconds a stop waits for attempts in flight to store their outcome; one that
# has not by then is left, its row still due, for the next start to send again.
STOP_GRACE = 1.0


# -- signing ------------------------------------------------------------------------


def secret_key(secret: str) -> bytes:
    """The HMAC key: the base64-decoded part after `whsec_`."""
    return base64.b64decode(secret.removeprefix(db.SECRET_PREFIX))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 over "id.timestamp.body">` (Standard Webhooks)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(
    secrets: Sequence[str], msg_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """Headers for one attempt; several secrets give space-separated signatures
    (used while a rotated service secret is still in its grace period)."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(s, msg_id, timestamp, body) for s in secrets),
        "content-type": "application/json",
        "user-agent": f"lnplugin-webhooks/{__version__}",
    }


# -- sending ------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status_code: int | None = None
    error: str | None = None


def post(url: str, body: bytes, headers: dict[str, str], allow: Sequence[str]) -> Outcome:
    """One attempt. 2xx is success; redirects are not followed (they count as
    failures), the response body is read up to MAX_RESPONSE_BYTES only."""
    try:
        response = pinned_http.request(
            "POST", url, allow=allow, body=body, headers=headers, max_body=MAX_RESPONSE_BYTES
        )
    except pinned_http.Failed as exc:
        return Outcome(False, error=str(exc))
    code = response.status
    if 200 <= code < 300:
        return Outcome(True, code)
    note = " (redirects are not followed)" if 300 <= code < 400 else ""
    return Outcome(False, code, f"HTTP {code}{note}")


# -- the worker ----------------------------------------------------------------------


class DeliveryWorker:
    """Fans out outbox events and sends due deliveries from background threads."""

    def __init__(
        self,
        store: Store,
        *,
        allow: Sequence[str] = (),
        schedule: Sequence[int] = (5,),
        senders: int = SENDERS,
        public_url: str | None = None,
    ) -> None:
        self.store = store
        self.public_url = public_url  # fills the invoice's links in each body
        self.allow = tuple(allow)
        self.schedule = tuple(schedule)
        # Woken by the event types some endpoint takes, and by every event of
        # an invoice with its own webhook URL (`wanted_types`, kept current by
        # each step); the rest are fanned out (to no one) at the next wake-up,
        # so a server with no endpoint pays nothing per invoice created.
        self._loop = WakeLoop(store, "lnplugin-webhooks", self.step, db.wanted_types(store.conn))
        self._pool = Senders(senders, "lnplugin-webhook")
        self._handout = Handout(senders, PARK)  # delivery rows out, by row id
        self.per_target = max(1, senders // 2)
        self._targets: dict[int, tuple[str, str]] = {}  # rows out -> their `db.target`
        self._targets_lock = threading.Lock()

    def start(self) -> None:
        with self.store.transaction() as tx:
            db.service_secrets(tx)  # create it now, so later reads never need to write
        self._loop.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._loop.stop(timeout)
        self._pool.shutdown(STOP_GRACE)

    @property
    def running(self) -> bool:
        """Whether the dispatcher thread is still alive."""
        return self._loop.running

    def step(self) -> float:
        """Fan out new events, dispatch due deliveries; returns seconds to sleep."""
        conn = self.store.conn
        # Before the fan-out: an endpoint added since the last step (its commit
        # woke this one) must wake the next, or its first event could wait
        # for the idle timeout.
        self._loop.retype(db.wanted_types(conn))
        backlog = False
        if events.last_seq(conn) > cursors.get(conn, db.CURSOR):
            # Delivery rows, which only this worker reads, and on in this step.
            with self.store.transaction(wake=False) as tx:
                backlog = db.fan_out(tx) == db.FAN_OUT_BATCH
        now = time.time()
        rows = self._handout.take(lambda busy, free: self._due(now, busy, free), lambda r: r["id"])
        for row in rows:
            self._pool.submit(self._deliver, row)
        if backlog:
            return 0.0  # the fan-out read a full batch: there may be more
        return sleep_until(db.next_due_at(conn, self._handout.busy(), self._full_targets()))

    def _full_targets(self, counts: Counter[tuple[str, str]] | None = None) -> set[tuple[str, str]]:
        """Targets with `per_target` deliveries in flight: no more go to them."""
        if counts is None:
            counts = self._in_flight()
        return {t for t, n in counts.items() if n >= self.per_target}

    def _in_flight(self) -> Counter[tuple[str, str]]:
        with self._targets_lock:
            return Counter(self._targets.values())

    def _due(self, now: float, busy: set[int], free: int) -> list[Any]:
        """Up to `free` due rows, at most `per_target` in flight per target.

        Full targets are left out in SQL; the rest are capped here, from a
        wider read, so that a target with many due rows cannot fill the
        senders in one step either."""
        counts = self._in_flight()
        full = self._full_targets(counts)
        picked = []
        for row in db.due(self.store.conn, now, busy, free * self.per_target, full):
            key = db.target(row)
            if counts[key] >= self.per_target:
                continue
            counts[key] += 1
            picked.append(row)
            if len(picked) == free:
                break
        with self._targets_lock:
            self._targets.update((row["id"], db.target(row)) for row in picked)
        return picked

    def _deliver(self, row: Any) -> None:
        parked = False
        try:
            outcome = self._attempt_counted(row)
            retry_in = None if outcome.ok else retry_delay(self.schedule, row["retry_index"])
            # Read by no other waiter; the dispatcher is woken below.
            with self.store.transaction(wake=False) as tx:
                decided = db.record_attempt(
                    tx,
                    row["id"],
                    row["generation"],
                    ok=outcome.ok,
                    status_code=outcome.status_code,
                    error=outcome.error,
                    retry_in=retry_in,
                )
            if not decided:
                log.info("webhook %s: attempt superseded by a redeliver or delete", row["event_id"])
            elif not outcome.ok:
                what = "dead-lettered" if retry_in is None else f"retry in {retry_in:.0f}s"
                log.info(
                    "webhook %s to %s failed (%s); %s",
                    row["event_id"],
                    _origin(row["url"]),
                    outcome.error,
                    what,
                )
        except Exception:
            # The outcome is not recorded (a failing database), so the row is
            # still due: without parking, the dispatcher would send it again
            # at once, over and over.
            log.exception("webhook delivery %s: recording the attempt failed", row["id"])
            parked = True
        finally:
            # Only now, with the outcome committed, may `due` hand this row out
            # again: a redeliver during the attempt then gets its own, later one.
            with self._targets_lock:
                self._targets.pop(row["id"], None)
            self._handout.release(row["id"], parked)
            self._loop.wake()

    def _attempt_counted(self, row: Any) -> Outcome:
        """`attempt`, with any exception as a failed attempt with its reason.

        Recorded like an HTTP failure, it follows the retry schedule (backoff,
        jitter, dead letter); escaping, it would leave the row due and the
        dispatcher would send it again at once, forever.
        """
        try:
            return self.attempt(row)
        except Exception as exc:
            return Outcome(False, error=f"{exc.__class__.__name__}: {exc}"[:300])

    def attempt(self, row: Any) -> Outcome:
        if row["body"] is None:
            return Outcome(False, error="event no longer exists")
        if row["endpoint_id"] == db.INVOICE_TARGET:
            secrets = db.service_secrets(self.store.conn)
        elif row["endpoint_secret"] is None:
            return Outcome(False, error="endpoint deleted")
        else:
            secrets = [row["endpoint_secret"]]
        body = events.with_links(row["body"], row["page_id"], self.public_url).encode()
        headers = signed_headers(secrets, row["event_id"], body)
        return post(row["url"], body, headers, self.allow)


def _origin(url: str) -> str:
    """Scheme and host only: paths and queries may carry receivers' own tokens."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        return f"{parts.scheme}://[{host}]" if ":" in host else f"{parts.scheme}://{host}"
    except ValueError:
        return "(an unparsable URL)"
