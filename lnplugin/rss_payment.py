"""The rss::payment worker: fetch the boost record a settled payment points at.

A boost paid to a Lightning Address arrives with only a comment such as
`rss::payment::boost https://app.example/p/123 Great episode!`; the full
record (show, episode, sender, amounts) is the `x-rss-payment` header of the
response to that URL. This worker hangs off the outbox like webhook
delivery: it reads settled events past its own cursor and schedules a fetch
in the same transaction as the cursor advance (`store/rss_payments.py`), so
a restart neither loses nor repeats one. It then fetches due rows, up to
`FETCHERS` at once on a pool of its own (so one slow app cannot hold up the
others' boosts), through the SSRF guard (`pinned_http`), only from the
operator's `--rss-payment-domain` list, with a timeout, a size cap and the
retry schedule, and on success fills the invoice's boostagram and appends
`invoice.updated` (webhooks and SSE read it from there).

URLs can carry a sender's payment ids, so logs name only the host.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from lnplugin import __version__, pinned_http
from lnplugin.boostagram import (
    RSS_PAYMENT_HEADER,
    RSS_PAYMENT_PREFIX,
    RssPaymentRef,
    parse_rss_payment,
    rss_payment_ref,
)
from lnplugin.handout import Handout, Senders, retry_delay
from lnplugin.store import Store, cursors, events, invoices
from lnplugin.store import rss_payments as db
from lnplugin.wakeloop import WakeLoop, sleep_until

log = logging.getLogger(__name__)

BATCH = 500  # outbox events read per transaction
FETCHERS = 4  # fetches at once: a slow or silent app holds one, not the whole queue
PARK = 30.0  # seconds a row whose outcome could not be stored waits before another try
# Seconds a stop waits for attempts in flight to store their outcome; one that
# has not by then is left, its row still due, for the next start to send again.
STOP_GRACE = 1.0
# Where a settled payment's rss::payment reference may be, in the order looked at.
SOURCES = ("comment", "keysend_message", "description")


@dataclass(frozen=True)
class FetchSettings:
    """What the worker needs from `lnplugin.config.Settings`."""

    domains: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()  # CIDRs the SSRF guard lets through (--webhook-allow)
    schedule: tuple[int, ...] = (10, 60, 300, 1800, 7200, 21600)
    timeout: float = 10.0
    max_bytes: int = 16384


def reference(invoice: dict[str, Any]) -> RssPaymentRef | None:
    """The first rss::payment reference in an invoice's JSON, or None."""
    for key in SOURCES:
        value = invoice.get(key)
        ref = rss_payment_ref(value) if isinstance(value, str) else None
        if ref is not None:
            return ref
    return None


def domain_allowed(url: str, domains: Sequence[str]) -> bool:
    """Whether the URL's host is one of `domains` or a subdomain of one."""
    try:
        host = (urlsplit(url).hostname or "").lower().rstrip(".")
    except ValueError:
        return False
    return bool(host) and any(host == d or host.endswith("." + d) for d in domains)


def host_of(url: str) -> str:
    try:
        return urlsplit(url).hostname or "(no host)"
    except ValueError:
        return "(an unparsable URL)"


@dataclass(frozen=True)
class Result:
    """One fetch: the header on success, else why not and whether to retry."""

    header: str | None = None
    error: str | None = None
    retry: bool = False
    refused: bool = False


def fetch(url: str, settings: FetchSettings) -> Result:
    """GET `url` once and take its `x-rss-payment` header.

    Network errors, 5xx and 429 are worth retrying; a refusal by the guard,
    a redirect (never followed), another status, a missing or oversized
    header (ours, or past what http.client reads at all) are not: asking
    again gets the same answer.
    """
    try:
        response = pinned_http.request(
            "GET",
            url,
            allow=settings.allow,
            headers={"user-agent": f"lnplugin-rss-payment/{__version__}"},
            max_body=0,  # the record is in the header; the body is the episode page
            read_timeout=settings.timeout,
        )
    except pinned_http.Failed as exc:
        return Result(error=str(exc), retry=not (exc.refused or exc.malformed), refused=exc.refused)
    except ValueError as exc:  # a port out of range, a host IDNA cannot encode (UnicodeError)
        return Result(error=f"unusable URL: {exc}"[:300])
    if response.status >= 500 or response.status == 429:
        return Result(error=f"HTTP {response.status}", retry=True)
    if not 200 <= response.status < 300:
        note = " (redirects are not followed)" if 300 <= response.status < 400 else ""
        return Result(error=f"HTTP {response.status}{note}")
    header = response.headers.get(RSS_PAYMENT_HEADER)
    if header is None:
        return Result(error=f"no {RSS_PAYMENT_HEADER} header in the response")
    header = as_sent(header)
    if len(header.encode("utf-8", errors="replace")) > settings.max_bytes:
        return Result(error=f"{RSS_PAYMENT_HEADER} is larger than {settings.max_bytes} bytes")
    return Result(header=header)


def as_sent(header: str) -> str:
    """A header value as the app wrote it: UTF-8 text.

    http.client reads header bytes as Latin-1, one character per byte. A
    URI-encoded record is ASCII, which that leaves alone, but one sent as
    plain JSON (taken too) carries its message, names and titles as UTF-8,
    which would read as `TrÃ¨s` for `Très`. Bytes that are not UTF-8 stay
    as read.
    """
    try:
        return header.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return header


class RssPaymentWorker:
    """Schedules fetches from the outbox on one thread and makes them on a
    pool of `FETCHERS`; a row is handed out again only once the outcome of
    its attempt is stored."""

    def __init__(self, store: Store, settings: FetchSettings) -> None:
        self.store = store
        self.settings = settings
        self._pool = Senders(FETCHERS, "lnplugin-rss-fetch")
        self._handout = Handout(FETCHERS, PARK)  # rows being fetched, by invoice id
        # Fetches follow settlements only (`schedule`); other events wait for
        # the next of those, or the idle timeout, to move the cursor past them.
        self._loop = WakeLoop(store, "lnplugin-rss-payment", self.step, (events.INCOMING_SETTLED,))

    def start(self) -> None:
        self._loop.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._loop.stop(timeout)
        self._pool.shutdown(STOP_GRACE)

    @property
    def running(self) -> bool:
        return self._loop.running

    def step(self) -> float:
        """Schedule from new events, hand due fetches to the pool; returns seconds to sleep."""
        conn = self.store.conn
        backlog = False
        if events.last_seq(conn) > cursors.get(conn, db.CURSOR):
            # Fetch rows, which only this worker reads, and on in this step.
            with self.store.transaction(wake=False) as tx:
                backlog = self.schedule(tx) == BATCH
        now = time.time()
        rows = self._handout.take(
            lambda busy, free: db.due(conn, now, free, busy), lambda row: row["invoice_id"]
        )
        for row in rows:
            self._pool.submit(
                self._loop.attempt,
                self._handout,
                row["invoice_id"],
                functools.partial(self.attempt, row),
                f"rss::payment fetch for invoice {row['invoice_id']}",
            )
        if backlog:
            return 0.0
        return sleep_until(db.next_due_at(conn, self._handout.busy()))

    def schedule(self, tx: Any) -> int:
        """Look at the events past the cursor; returns how many were read."""
        start = cursors.get(tx, db.CURSOR)
        rows = events.after(tx, start, BATCH)
        for event in rows:
            # The substring test spares decoding every payload of a bulk catch-up.
            if (
                event["type"] != events.INCOMING_SETTLED
                or RSS_PAYMENT_PREFIX not in event["payload"]
            ):
                continue
            ref = reference(events.payload(event)["data"])
            if ref is None:
                continue
            if domain_allowed(ref.url, self.settings.domains):
                db.schedule(tx, event["invoice_id"], ref.url, ref.action)
            else:
                why = f"{host_of(ref.url)} is not an --rss-payment-domain"
                log.info("rss::payment for invoice %s not fetched: %s", event["invoice_id"], why)
                db.schedule(
                    tx, event["invoice_id"], ref.url, ref.action, state=db.REFUSED, error=why
                )
        if rows:
            cursors.advance(tx, db.CURSOR, rows[-1]["seq"])
        return len(rows)

    def attempt(self, row: Any) -> None:
        """Fetch one due row and write the outcome."""
        invoice_id, url = row["invoice_id"], row["url"]
        try:
            result = fetch(url, self.settings)
        except Exception as exc:  # not expected; recorded, so the row is not retried in a loop
            log.exception("rss::payment fetch from %s raised", host_of(url))
            result = Result(error=f"{exc.__class__.__name__}: {exc}"[:300], retry=True)
        with self.store.transaction() as tx:
            if result.header is not None:
                invoice = invoices.by_id(tx, invoice_id)
                ref = reference({k: getattr(invoice, k) for k in SOURCES}) if invoice else None
                boost = parse_rss_payment(result.header, ref)
                if boost is None:
                    error = f"{RSS_PAYMENT_HEADER} is not URI-encoded JSON holding an object"
                    db.record_failure(
                        tx, invoice_id, error, None, final=db.FAILED, header=result.header
                    )
                    log.warning(
                        "rss::payment record from %s for invoice %s: %s",
                        host_of(url),
                        invoice_id,
                        error,
                    )
                    return
                changed = db.fill(tx, invoice_id, result.header, boost)
                log.info(
                    "rss::payment record from %s for invoice %s%s",
                    host_of(url),
                    invoice_id,
                    "" if changed else " kept (no new boostagram)",
                )
                return
            delay = retry_delay(self.settings.schedule, row["attempts"]) if result.retry else None
            next_at = None if delay is None else time.time() + delay
            final = db.REFUSED if result.refused else db.FAILED
            db.record_failure(tx, invoice_id, str(result.error), next_at, final=final)
        log.warning(
            "rss::payment fetch from %s for invoice %s failed: %s%s",
            host_of(url),
            invoice_id,
            result.error,
            f"; retrying in {delay:.0f}s" if delay is not None else "",
        )
