"""Hold invoices end to end: `lnplugin serve` as a real process on the dev
node, over HTTP, with payments and blocks from the `lnplugin dev` CLI.

A held invoice survives a SIGKILL: after the restart it is still ACCEPTED
and the preimage still settles it. A held invoice nobody settles is canceled
by lnplugin before its deadline, and the canceled webhook-and-SSE event says why.
A SIGKILL after a settle, before its webhooks went out: each event reaches
the receiver after the restart, under one id, and the payment counts once.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import signal
from functools import partial
from pathlib import Path

from lnplugin.nodes.dev.node import HTLC_CLTV_DELTA
from tests.e2e import Server, cli, cltv_delta_of_new_invoice, wait_for
from tests.helpers_webhooks import Receiver
from tests.helpers_webhooks import Server as WebhookServer


def _pair() -> tuple[str, str]:
    preimage = secrets.token_bytes(32)
    return preimage.hex(), hashlib.sha256(preimage).hexdigest()


def _state(server: Server, payment_hash: str) -> dict:
    return server.request("GET", f"/invoices/{payment_hash}").json()


def test_a_held_invoice_survives_sigkill_and_settles_after_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    preimage, payment_hash = _pair()
    server = Server(data).start()
    token = server.token
    try:
        created = server.request(
            "POST", "/invoices", json={"amount": 21, "payment_hash": payment_hash}
        )
        assert created.status_code == 201, created.text
        paid = json.loads(cli(data, "dev", "pay", payment_hash))
        assert paid["state"] == "ACCEPTED"
        held = wait_for(
            lambda: (got := _state(server, payment_hash))["state"] == "ACCEPTED" and got,
            "the invoice to be ACCEPTED",
        )
        assert held["settle_deadline"] is not None
    finally:
        assert server.stop(signal.SIGKILL) == -signal.SIGKILL

    with Server(data, env={}) as again:
        got = again.request("GET", f"/invoices/{payment_hash}", token=token).json()
        assert got["state"] == "ACCEPTED"
        assert got["settle_deadline"] == held["settle_deadline"]
        r = again.request(
            "POST", f"/invoices/{payment_hash}/settle", token=token, json={"preimage": preimage}
        )
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "SETTLED" and r.json()["preimage"] == preimage
        types = [
            line.split(": ", 1)[1]
            for line in again.request(
                "GET", f"/invoices/{payment_hash}/events", token=token, stream=True
            ).iter_lines(decode_unicode=True)
            if line.startswith("event: ")
        ]
        assert types[-1] == "invoice.incoming.settled"


def test_lnplugin_cancels_a_held_invoice_before_its_deadline(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _, payment_hash = _pair()
    with Server(data, "--hold-cancel-margin", "5") as server:
        created = server.request(
            "POST", "/invoices", json={"amount": 21, "payment_hash": payment_hash}
        )
        assert created.status_code == 201, created.text
        assert json.loads(cli(data, "dev", "pay", payment_hash))["state"] == "ACCEPTED"
        wait_for(lambda: _state(server, payment_hash)["state"] == "ACCEPTED", "ACCEPTED")
        height = json.loads(cli(data, "dev", "mine", "--blocks", str(HTLC_CLTV_DELTA - 6)))
        assert _state(server, payment_hash)["state"] == "ACCEPTED"  # 6 blocks left > 5
        cli(data, "dev", "mine")
        got = wait_for(
            lambda: (inv := _state(server, payment_hash))["state"] == "CANCELED" and inv,
            "lnplugin to cancel the held invoice",
        )
        assert f"at block {height['block_height'] + 1}" in got["cancel_reason"]
        assert "5 blocks before its settle deadline" in got["cancel_reason"]
        r = server.request("POST", "/dev/pay", json={"payment_hash": payment_hash})
        assert r.status_code == 409  # the node refuses a payment after the cancel


def test_min_cltv_expiry_delta_reaches_the_invoice_and_the_deadline(tmp_path: Path) -> None:
    """POST /invoices' `min_cltv_expiry_delta`, for hold and regular invoices,
    with the rule NWC's make_hold_invoice follows (`invoicing.check_cltv_delta`)."""
    data = tmp_path / "data"
    _, payment_hash = _pair()
    with Server(data) as server:  # --hold-cancel-margin 24, the default
        delta = cltv_delta_of_new_invoice(
            server, amount=21, payment_hash=payment_hash, min_cltv_expiry_delta=144
        )
        assert delta == 144
        height = json.loads(cli(data, "dev", "mine"))["block_height"]
        assert json.loads(cli(data, "dev", "pay", payment_hash))["state"] == "ACCEPTED"
        held = wait_for(
            lambda: (got := _state(server, payment_hash))["state"] == "ACCEPTED" and got,
            "the invoice to be ACCEPTED",
        )
        assert held["settle_deadline"] == height + 144

        assert cltv_delta_of_new_invoice(server, amount=21, min_cltv_expiry_delta=18) == 18

        refused: list[tuple[dict[str, object], str]] = [
            ({"payment_hash": _pair()[1], "min_cltv_expiry_delta": 24}, "hold cancel margin"),
            ({"payment_hash": _pair()[1], "min_cltv_expiry_delta": 2017}, "at most 2016"),
            ({"min_cltv_expiry_delta": 17}, "between 18 and 2016"),
            ({"min_cltv_expiry_delta": "144"}, "integer"),
            ({"min_cltv_expiry_delta": True}, "integer"),
            ({"min_cltv_expiry_delta": 1.5}, "integer"),
        ]
        for body, says in refused:
            r = server.request("POST", "/invoices", json={"amount": 21, **body})
            assert r.status_code == 400, (body, r.text)
            errors = r.json()["errors"]
            assert list(errors) == ["min_cltv_expiry_delta"], body
            assert says in errors["min_cltv_expiry_delta"], (body, errors)
        exported = server.request("GET", "/invoices/export?format=jsonl&type=incoming")
        assert len(exported.text.splitlines()) == 2  # nothing minted for the refused ones


def test_a_settle_killed_before_its_webhooks_went_out_is_delivered_and_counted_once(
    tmp_path: Path,
) -> None:
    """SIGKILL between the settle and its notification: after the restart
    the accepted and settled events each reach the receiver under one event
    id (at least once; deduplicated by it), and the payment is counted once."""
    receiver = Receiver(script={"/hook": [503]})  # away while it happens
    env = {"LNPLUGIN_WEBHOOK_ALLOW": "127.0.0.0/8", "LNPLUGIN_WEBHOOK_RETRY_SCHEDULE": "1,1,1,1,1"}
    server = WebhookServer(tmp_path / "data", env).start()
    types = ["invoice.incoming.accepted", "invoice.incoming.settled"]
    try:
        server.add_endpoint(receiver.url(), types)
        preimage, payment_hash = _pair()
        server.create_invoice(amount=21, payment_hash=payment_hash)
        server.pay(payment_hash)
        settled = server.call(
            "POST", f"/invoices/{payment_hash}/settle", json={"preimage": preimage}
        )
        assert settled.status_code == 200, settled.text
        server.kill()
        receiver.script["/hook"] = [200]
        server.start()

        def delivered(type_: str) -> bool:
            got = receiver.of_type(type_, payment_hash)
            return any(r.headers["webhook-id"] in receiver.accepted for r in got)

        for type_ in types:
            wait_for(partial(delivered, type_), f"{type_} delivered")
            ids = {r.headers["webhook-id"] for r in receiver.of_type(type_, payment_hash)}
            assert len(ids) == 1, ids  # one event, however many attempts
        again = server.call("POST", f"/invoices/{payment_hash}/settle", json={"preimage": preimage})
        assert again.status_code == 200  # a client retrying its lost answer
        listed = server.call("GET", "/invoices/incoming").json()
        assert [(i["payment_hash"], i["amount_received_msat"]) for i in listed] == [
            (payment_hash, 21_000)
        ]
    finally:
        server.stop()
        receiver.close()
