"""A podcaster's boosts as podcast apps send them, over the real transports.

Each test plays a podcast app (Fountain, Castamatic, Podverse, Breez, an
rss::payment sender) against `lnplugin serve` as a real process following
the LND simulator over gRPC, or the Core Lightning simulator through the
plugin, and reads what the podcaster's own app would: the REST invoice, the
webhook delivery and the export.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lnplugin_sim.cln_plugin_driver import PluginDriver
from lnplugin_sim.cln_sim import ClnSim
from lnplugin_sim.lnd_sim import LndSim
from tests import e2e
from tests.e2e import Api, Server, wait_for
from tests.helpers_webhooks import Receiver
from tests.test_lnd_e2e import serve_args

tmp = e2e.fixture_tmp
ALLOW_LOOPBACK = ("--webhook-allow", "127.0.0.0/8")  # the receivers here listen on loopback


@pytest.fixture
def lnd(tmp: Path) -> Iterator[tuple[LndSim, Server, Api]]:
    """The LND simulator and a real `lnplugin serve` following it over gRPC."""
    with (
        LndSim(tmp / "lnd", network="regtest", port=0) as sim,
        Server(tmp / "data", *serve_args(sim), *ALLOW_LOOPBACK) as server,
    ):
        assert server.token
        api = Api(server.url, server.token)
        yield sim, server, api
        api.close()


def _address(server: Server, username: str, webhook: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"username": username, "min_sendable_msat": 1000}
    if webhook is not None:
        body["webhook"] = webhook
    reply = server.request("POST", "/lightning_addresses", json=body)
    assert reply.status_code == 201, reply.text
    return dict(reply.json())


def test_a_keysend_boost_to_an_address_reaches_the_address_webhook(
    lnd: tuple[LndSim, Server, Api],
) -> None:
    """The address's keysend record (`/.well-known/keysend/<user>`) is how a
    podcast app boosts an lnaddress recipient by keysend; the podcaster's
    address webhook must see that boost as it sees the same boost paid by
    LNURL-pay."""
    sim, server, api = lnd
    hook = Receiver()
    try:
        made = _address(server, "podcast", webhook=hook.url("/podcast"))
        boost = {"action": "boost", "app_name": "Fountain", "message": "keysend boost"}
        records = {
            made["keysend_custom_key"]: made["keysend_custom_value"].encode(),
            7629169: json.dumps(boost).encode(),
        }
        paid = sim.keysend(21_000, records).r_hash.hex()
        invoice = wait_for(lambda: api.incoming(paid), "the keysend boost")
        assert invoice["lightning_address"] == "podcast"

        [delivered] = wait_for(
            lambda: hook.of_type("invoice.incoming.settled", paid), "the address webhook"
        )
        assert delivered.path == "/podcast"
        assert delivered.json["data"]["boostagram"] == boost
        assert delivered.json["data"]["amount_received_msat"] == 21_000
        # An invoice made with a webhook of its own keeps it when an address's
        # keysend record comes with its payment.
        own = Receiver()
        try:
            mine = api.post("/invoices", {"amount": 5, "webhook": own.url("/mine")})
            sim.pay_invoice(mine["payment_hash"], htlc_records=[records])
            [sent] = wait_for(
                lambda: own.of_type("invoice.incoming.settled", mine["payment_hash"]),
                "the invoice's own webhook",
            )
            assert sent.path == "/mine"
            assert not hook.of_type("invoice.incoming.settled", mine["payment_hash"])
        finally:
            own.close()
    finally:
        hook.close()


def test_an_invoice_paid_with_an_addresss_record_is_not_sent_to_its_webhook(
    lnd: tuple[LndSim, Server, Api],
) -> None:
    """The address's webhook is for keysends to the address. An app's own
    invoice (no webhook) is not the address's: a payer who adds the address's
    keysend record to its payment, as anyone holding the BOLT11 may, must not
    send that invoice's settlement (amount, description, metadata) to the
    podcaster's webhook, as docs/lnurl.md says ("A keysend that carries ...")."""
    sim, server, api = lnd
    hook = Receiver()
    try:
        made = _address(server, "podcast", webhook=hook.url("/podcast"))
        record = {made["keysend_custom_key"]: made["keysend_custom_value"].encode()}
        app = api.post("/invoices", {"amount": 7, "description": "an app's own order"})
        sim.pay_invoice(app["payment_hash"], htlc_records=[record])
        wait_for(lambda: api.settled(app["payment_hash"]), "the app's invoice settled")
        assert e2e.scalar(
            server.data_dir,
            "SELECT webhook_url FROM invoices WHERE payment_hash = ?",
            app["payment_hash"],
        ) == (None,)
        # A keysend to the address after it still reaches the webhook; the
        # invoice's settlement, appended to the outbox before it, never does.
        paid = sim.keysend(21_000, record).r_hash.hex()
        wait_for(lambda: hook.of_type("invoice.incoming.settled", paid), "the keysend boost")
        assert not hook.of_type("invoice.incoming.settled", app["payment_hash"])
    finally:
        hook.close()


def test_a_keysend_boost_to_an_address_reaches_its_webhook_in_cln_plugin_mode(tmp: Path) -> None:
    """The same boost through Core Lightning: the plugin's `htlc_accepted`
    hook captures the records before the keysend settles."""
    env = {"LNPLUGIN_WEBHOOK_ALLOW": "127.0.0.0/8"}
    hook = Receiver()
    with (
        ClnSim(tmp / "cln", tmp / "rpc") as sim,
        PluginDriver(sim, tmp / "cln-data", env=env) as plugin,
    ):
        api = Api(plugin.url, plugin.admin_token)
        try:
            made = api.post("/lightning_addresses", {"username": "show", "webhook": hook.url()})
            boost = {"action": "boost", "app_name": "Podverse", "message": "via CLN"}
            records = {696969: b"show", 7629169: json.dumps(boost).encode()}
            row = sim.keysend(
                21_000, records, on_htlc=lambda h, payload: plugin.htlc_accepted(h, payload)
            )
            paid = row["payment_hash"]
            [delivered] = wait_for(
                lambda: hook.of_type("invoice.incoming.settled", paid), "the address webhook"
            )
            assert made["keysend_custom_key"] == 696969
            assert delivered.json["data"]["lightning_address"] == "show"
            assert delivered.json["data"]["boostagram"] == boost
        finally:
            api.close()
            hook.close()


def test_a_boostagram_written_with_a_byte_order_mark_is_read(
    lnd: tuple[LndSim, Server, Api],
) -> None:
    """Some JSON writers start UTF-8 with a byte order mark (EF BB BF). The
    record is still the app's JSON object: the podcaster must see its
    message, not a boost without a boostagram."""
    sim, server, api = lnd
    boost = {"action": "boost", "app_name": "Castamatic", "message": "Grüße 🎙", "ts": 33}
    record = b"\xef\xbb\xbf" + json.dumps(boost, ensure_ascii=False).encode()
    paid = sim.keysend(42_000, {7629169: record}).r_hash.hex()
    invoice = wait_for(lambda: api.incoming(paid), "the keysend boost")
    assert invoice["boostagram"] == boost
    lines = server.request("GET", "/invoices/export", params={"format": "jsonl"}).text
    [row] = [r for r in map(json.loads, lines.splitlines()) if r["payment_hash"] == paid]
    assert row["boost_message"] == "Grüße 🎙" and row["boost_ts"] == 33
