"""Prometheus `/metrics` (scope `metrics:read`; `admin` has it too).

Two kinds of numbers. What happens in this process (HTTP requests and their
latency) is counted as it happens, in a registry owned by the app, so two
apps in one process (tests, the CLN plugin) never share counts. What the
store already knows (events and settlements by type, webhook deliveries,
rss::payment fetches and zap receipt deliveries by outcome, the outbox
backlog) and what the follower and the stream gate hold (cursor, head, lag,
open streams) is read at scrape time by `_Collector`,
so it survives restarts and cannot drift from the data.

Route labels are URL rules (`/invoices/<payment_hash>`), never concrete
paths, and unmatched requests share one label, so a scanner cannot grow the
number of series.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, current_app
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from lnplugin.api.auth import require
from lnplugin.service import Service
from lnplugin.store import events as event_types
from lnplugin.store import metrics as store_metrics
from lnplugin.store import zaps as zap_states

bp = Blueprint("metrics", __name__)

UNMATCHED = "unmatched"
# The node calls whose failures are counted (`Follower.node_errors`).
NODE_OPERATIONS = ("create_invoice", "feed", "feed_head", "get_info", "sweep")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The app's registry and the in-process instruments."""

    def __init__(self, service: Service) -> None:
        # No `*_created` series: one more per label set, which Prometheus
        # (before its opt-in created-timestamps feature) only stores as a gauge.
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "lnplugin_http_requests",
            "HTTP requests answered, by method, route (URL rule) and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "lnplugin_http_request_duration_seconds",
            "Time to the response headers (an event stream counts until its first byte).",
            ["route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._children: dict[tuple[str, str | None, int], tuple[Any, Any]] = {}
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, CPU, fds
        self.registry.register(_Collector(service))

    def observe(self, method: str, route: str | None, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            # `labels()` takes a lock and builds the label tuple on every call;
            # the children of one (method, route, status) never change, and
            # their number is bounded (route labels are URL rules).
            label, code = route or UNMATCHED, str(status)
            children = (self.requests.labels(method, label, code), self.latency.labels(label, code))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


class _Collector:
    """Families computed at scrape time from the store, follower and gate."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.running = store_metrics.Running()  # outbox counts, carried between scrapes

    def describe(self) -> list[Metric]:
        return []  # computed families: nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        svc = self.service
        status = svc.follower.status
        now = time.time()

        cursor = GaugeMetricFamily(
            "lnplugin_follower_cursor",
            "Node feed position applied to the store, per stream.",
            labels=["stream"],
        )
        cursor.add_metric(["incoming"], status.cursor)
        cursor.add_metric(["outgoing"], status.outgoing_cursor)
        yield cursor
        head = GaugeMetricFamily(
            "lnplugin_follower_head",
            "Highest node feed position known, per stream.",
            labels=["stream"],
        )
        head.add_metric(["incoming"], status.head)
        yield head
        lag = GaugeMetricFamily(
            "lnplugin_follower_lag", "head - cursor, per stream.", labels=["stream"]
        )
        lag.add_metric(["incoming"], max(0, status.head - status.cursor))
        yield lag
        connected = GaugeMetricFamily(
            "lnplugin_follower_connected", "1 while the settlement feed is connected."
        )
        connected.add_metric([], 1 if status.connection == "connected" else 0)
        yield connected

        node_errors = CounterMetricFamily(
            "lnplugin_node_rpc_errors",
            "Node calls that failed, by operation "
            "(feed, feed_head, sweep, create_invoice, get_info).",
            labels=["operation"],
        )
        # Every operation from the start, at 0: an absent series cannot be
        # told from a scrape that failed, and `rate()` needs the zero.
        failed = {op: 0 for op in NODE_OPERATIONS} | dict(svc.follower.node_errors)
        for operation, count in sorted(failed.items()):
            node_errors.add_metric([operation], count)
        yield node_errors

        with svc.store.snapshot() as conn:
            counts = store_metrics.read(conn, self.running)
        events = CounterMetricFamily(
            "lnplugin_events", "Outbox events stored, by type.", labels=["type"]
        )
        stored = {type_: 0 for type_ in event_types.EVENT_TYPES} | counts.events_by_type
        for type_, count in sorted(stored.items()):
            events.add_metric([type_], count)
        yield events
        settled = CounterMetricFamily(
            "lnplugin_settlements",
            "Incoming payments settled, by kind (invoice or keysend).",
            labels=["kind"],
        )
        for kind in ("invoice", "keysend"):
            settled.add_metric([kind], counts.settlements_by_kind.get(kind, 0))
        yield settled
        deliveries = GaugeMetricFamily(
            "lnplugin_webhook_deliveries",
            "Webhook delivery rows by outcome: pending (retrying or due), delivered, "
            "failed (dead-lettered).",
            labels=["outcome"],
        )
        for outcome in ("pending", "delivered", "failed"):
            deliveries.add_metric([outcome], counts.deliveries_by_status.get(outcome, 0))
        yield deliveries
        dead = GaugeMetricFamily(
            "lnplugin_webhook_dead_letters", "Deliveries that ran out of retries."
        )
        dead.add_metric([], counts.deliveries_by_status.get("failed", 0))
        yield dead
        pending = GaugeMetricFamily(
            "lnplugin_webhook_pending", "Deliveries not yet delivered and still retrying."
        )
        pending.add_metric([], counts.deliveries_by_status.get("pending", 0))
        yield pending
        oldest = [
            t for t in (counts.oldest_pending_delivery_at, counts.oldest_unfanned_event_at) if t
        ]
        age = GaugeMetricFamily(
            "lnplugin_outbox_oldest_undelivered_age_seconds",
            "Age of the oldest outbox item not yet delivered: a pending webhook delivery, or "
            "an event not yet fanned out. 0 when nothing waits.",
        )
        age.add_metric([], max(0.0, now - min(oldest)) if oldest else 0.0)
        yield age
        outbox = GaugeMetricFamily(
            "lnplugin_outbox_seq",
            "Outbox positions: head, webhook fan-out, rss::payment worker, zap worker.",
            labels=["reader"],
        )
        outbox.add_metric(["head"], counts.outbox_head)
        outbox.add_metric(["webhooks"], counts.outbox_fanned_out)
        outbox.add_metric(["rss_payment"], counts.outbox_rss_payment)
        outbox.add_metric(["zaps"], counts.outbox_zaps)
        yield outbox
        rss_fetches = GaugeMetricFamily(
            "lnplugin_rss_payments",
            "rss::payment boost-record fetches by state: pending (due or retrying), fetched, "
            "refused (domain or address not allowed), failed.",
            labels=["state"],
        )
        for state in ("pending", "fetched", "refused", "failed"):
            rss_fetches.add_metric([state], counts.rss_payments_by_state.get(state, 0))
        yield rss_fetches
        zap_receipts = GaugeMetricFamily(
            "lnplugin_zap_receipts",
            "NIP-57 zap receipt deliveries (one per receipt and relay) by state: pending "
            "(due or retrying), sent, refused (relay address not allowed), failed (refused "
            "by the relay, or out of retries).",
            labels=["state"],
        )
        for state in zap_states.STATES:
            zap_receipts.add_metric([state], counts.zap_receipts_by_state.get(state, 0))
        yield zap_receipts

        streams = GaugeMetricFamily("lnplugin_sse_streams_open", "Server-Sent Event streams open.")
        streams.add_metric([], svc.stream_gate.open)
        yield streams


def register(app: Any, service: Service) -> Metrics:
    metrics = Metrics(service)
    app.extensions["lnplugin_metrics"] = metrics
    app.register_blueprint(bp)
    return metrics


@bp.get("/metrics")
@require("metrics:read")
def scrape() -> Any:
    metrics: Metrics = current_app.extensions["lnplugin_metrics"]
    return Response(
        generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )
