"""`/metrics`: its scope, and each family moving when what it counts happens.

Parsed with prometheus-client's own text parser, as Prometheus would read it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lnplugin.api import create_app
from lnplugin.config import load_settings
from lnplugin.nodes.lnd.node import LndNode
from lnplugin.service import Service
from lnplugin.store import tokens
from lnplugin_sim.lnd_sim import LndSim

DASHBOARD = Path(__file__).parent.parent / "contrib" / "grafana" / "lnplugin.json"


def scrape(client, token: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reply = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert reply.status_code == 200, reply.get_data(as_text=True)
    assert reply.headers["Content-Type"].startswith("text/plain; version=")
    out = {}
    for family in text_string_to_metric_families(reply.get_data(as_text=True)):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_need_the_metrics_scope(client, make_token: Callable[..., str]) -> None:
    assert client.get("/metrics").status_code == 401
    reader = make_token("invoices:read", "transactions:read")
    assert client.get("/metrics", headers={"Authorization": f"Bearer {reader}"}).status_code == 403
    scrape(client, make_token("metrics:read"))
    scrape(client, make_token("admin"))


def test_a_fresh_server_exports_every_counter_at_zero_and_no_created_series(
    client, make_token: Callable[..., str]
) -> None:
    """Absent series read as "no data" (a failed scrape looks the same), and
    `rate()` needs the zero; the `_created` gauges prometheus-client adds by
    default are one more series per label set that nobody reads."""
    from lnplugin.api.metrics import NODE_OPERATIONS
    from lnplugin.store.events import EVENT_TYPES

    samples = scrape(client, make_token("metrics:read"))
    for type_ in EVENT_TYPES:
        assert (("lnplugin_events_total", (("type", type_),))) in samples, type_
    for operation in NODE_OPERATIONS:
        key = ("lnplugin_node_rpc_errors_total", (("operation", operation),))
        assert samples.get(key) == 0.0, operation
    assert not [name for name, _ in samples if name.endswith("_created")]


def test_unknown_scopes_are_still_refused() -> None:
    with pytest.raises(tokens.UnknownScope):
        tokens.check_scopes(["metrics:write"])


def test_each_family_moves_when_its_thing_happens(
    client, service: Service, make_token: Callable[..., str]
) -> None:
    metrics = make_token("metrics:read")
    admin = {"Authorization": f"Bearer {make_token('admin')}"}
    before = scrape(client, metrics)

    created = client.post("/invoices", json={"amount": 21}, headers=admin)
    assert created.status_code == 201
    payment_hash = created.get_json()["payment_hash"]
    paid = client.post("/dev/pay", json={"payment_hash": payment_hash}, headers=admin)
    assert paid.status_code == 200
    keysend = client.post(
        "/dev/keysend",
        json={"amount_msat": 5000, "custom_records": {"34349334": "hi"}},
        headers=admin,
    )
    assert keysend.status_code == 200
    # A webhook endpoint the worker cannot reach: its deliveries stay pending.
    endpoint = client.post(
        "/webhook_endpoints",
        json={
            "url": "https://lnplugin-metrics.invalid/hook",
            "filter_types": ["invoice.incoming.settled"],
        },
        headers=admin,
    )
    assert endpoint.status_code == 201
    client.post("/invoices", json={"amount": 1}, headers=admin)
    second = client.post("/invoices", json={"amount": 2}, headers=admin).get_json()
    client.post("/dev/pay", json={"payment_hash": second["payment_hash"]}, headers=admin)
    stream = client.get("/events", headers=admin, buffered=False)
    assert stream.status_code == 200

    deadline = time.monotonic() + 30  # liveness bound for the webhook fan-out
    while True:
        after = scrape(client, metrics)
        if value(after, "lnplugin_webhook_pending") >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    stream.close()

    def moved(name: str, **labels: str) -> bool:
        return value(after, name, **labels) > value(before, name, **labels)

    assert moved("lnplugin_follower_cursor", stream="incoming")
    assert moved("lnplugin_follower_head", stream="incoming")
    assert ("lnplugin_follower_lag", (("stream", "incoming"),)) in after
    assert moved("lnplugin_settlements_total", kind="invoice")
    assert moved("lnplugin_settlements_total", kind="keysend")
    assert moved("lnplugin_events_total", type="invoice.incoming.created")
    assert moved("lnplugin_events_total", type="invoice.incoming.settled")
    assert moved("lnplugin_webhook_deliveries", outcome="pending")
    assert moved("lnplugin_webhook_pending")
    assert ("lnplugin_webhook_dead_letters", ()) in after
    assert moved("lnplugin_outbox_seq", reader="head")
    assert value(after, "lnplugin_outbox_oldest_undelivered_age_seconds") >= 0
    assert moved("lnplugin_sse_streams_open")
    assert moved("lnplugin_http_requests_total", method="POST", route="/invoices", status="201")
    assert moved("lnplugin_http_request_duration_seconds_count", route="/invoices", status="201")
    assert value(after, "process_resident_memory_bytes") > 0
    # Route labels are URL rules, never concrete paths.
    client.get(f"/invoices/{payment_hash}", headers=admin)
    client.get("/no/such/route", headers=admin)
    last = scrape(client, metrics)
    assert (
        value(
            last,
            "lnplugin_http_requests_total",
            method="GET",
            route="/invoices/<payment_hash>",
            status="200",
        )
        == 1
    )
    assert not any(payment_hash in str(labels) for _, labels in last)
    assert value(
        last, "lnplugin_http_requests_total", method="GET", route="unmatched", status="404"
    )


@pytest.mark.timeout(60)
def test_node_errors_are_counted(tmp_path: Path) -> None:
    """A real LND (the simulator, over gRPC) that goes away: creating an invoice
    fails with 503 and `lnplugin_node_rpc_errors_total` counts it."""
    with LndSim(tmp_path / "lnd", network="regtest") as sim:
        node = LndNode(
            sim.target, cert=sim.cert_path, macaroon=sim.admin_macaroon_path, network="regtest"
        )
        settings = load_settings({"data_dir": str(tmp_path / "data")}, environ={})
        svc = Service.build(settings, node=node)
        svc.start()
        try:
            client = create_app(svc).test_client()
            with svc.store.transaction() as tx:
                _, admin = tokens.create(tx, ["admin"])
            before = scrape(client, admin)
            sim.stop()
            reply = client.post(
                "/invoices", json={"amount": 5}, headers={"Authorization": f"Bearer {admin}"}
            )
            assert reply.status_code == 503
            after = scrape(client, admin)
            name = "lnplugin_node_rpc_errors_total"
            assert (
                value(after, name, operation="create_invoice")
                == value(before, name, operation="create_invoice") + 1
            )
        finally:
            svc.stop()


def test_the_grafana_dashboard_only_uses_families_lnplugin_exports(
    client, make_token: Callable[..., str]
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    reply = client.get(
        "/metrics", headers={"Authorization": f"Bearer {make_token('metrics:read')}"}
    )
    exported = set()
    for family in text_string_to_metric_families(reply.get_data(as_text=True)):
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
        exported |= {family.name + s for s in suffixes.get(family.type, [""])}
    used = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used |= set(re.findall(r"\b((?:lnplugin|process)_[a-z_]+)", target["expr"]))
    assert used, "no queries found"
    assert used <= exported, f"not exported: {sorted(used - exported)}"
