"""NIP-57 zaps end to end: `lnplugin serve --zaps` as a real process on the
dev node, a real relay process (rust-nostr's, `tests/nwc_relay.py`), zap
requests built and signed with nostr-sdk, payment with `lnplugin dev pay`.

The address advertises `allowsNostr` and the zapper key; the callback takes
a zap request and mints an invoice whose description hash is SHA-256 of the
request as sent; once paid, one zap receipt, signed by that key, reaches
the request's relay, also when lnplugin restarts between the payment and the
receipt. Invalid zap requests get LUD-06 errors and mint nothing.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import bolt11 as reference
import nostr_sdk as ns
import pytest
import requests
from websockets.sync.client import connect

from lnplugin.zapper import publish
from tests.e2e import Server, cli, scalar, wait_for
from tests.helpers_webhooks import free_port
from tests.nwc_relay import Relay

RECIPIENT = "32e1827635450ebb3c5a7d12c1f8e7b2b514439ac10a67eef3d9fd9c5c68e245"
NOTE = "3624762a1274dd9636e0c552b53086d70bc88c165bc4dc0f9e836a1eaf86c3b8"
ALLOW_LOOPBACK = ("--zap-relay-allow", "127.0.0.0/8")


def zap_request(
    sender: ns.Keys,
    relays: list[str],
    amount: int | None,
    content: str = "Zap!",
    tags: list[list[str]] | None = None,
) -> str:
    """A signed kind 9734 event's JSON, as a Nostr client sends it to the callback."""
    if tags is None:
        tags = [["p", RECIPIENT], ["e", NOTE], ["k", "1"]]
    all_tags = [["relays", *relays], *tags]
    if amount is not None:
        all_tags.append(["amount", str(amount)])
    builder = ns.EventBuilder(ns.Kind(9734), content).tags([ns.Tag.parse(t) for t in all_tags])
    return str(sender.sign_event(builder.finalize_unsigned(sender.public_key())).as_json())


def receipts_at(relay_url: str, bolt11: str) -> list[dict[str, Any]]:
    """The kind 9735 events the relay holds whose `bolt11` tag is `bolt11`."""
    found = []
    with connect(relay_url, open_timeout=5) as ws:
        ws.send(json.dumps(["REQ", "zaps", {"kinds": [9735], "#p": [RECIPIENT]}]))
        while True:
            msg = json.loads(ws.recv(timeout=10))
            if msg[0] == "EOSE":
                break
            if msg[0] == "EVENT" and ["bolt11", bolt11] in msg[2]["tags"]:
                found.append(msg[2])
    return found


def serve(data: Path, port: int, *extra: str) -> Server:
    public = f"http://127.0.0.1:{port}"
    return Server(
        data,
        "--public-url", public, "--port", str(port), "--zaps",
        "--rate-limit", "1000/minute", "--rate-limit-callback", "1000/minute",
        *extra,
    )  # fmt: skip


def add_alice(server: Server, **extra: Any) -> None:
    reply = server.request(
        "POST",
        "/lightning_addresses",
        json={"username": "alice", "description": "Tips", "comment_allowed": 100, **extra},
    )
    assert reply.status_code == 201, reply.text


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    started = Relay(tmp_path_factory.mktemp("relay")).start()
    yield started
    started.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("zaps") / "data"
    with serve(data, free_port(), *ALLOW_LOOPBACK) as srv:
        add_alice(srv)
        yield srv


def _callback(server: Server, **params: Any) -> requests.Response:
    return requests.get(server.url + "/lnurlp/alice/callback", params=params, timeout=10)


def test_a_zap_is_paid_and_its_receipt_reaches_the_relay(server: Server, relay: Relay) -> None:
    found = requests.get(server.url + "/.well-known/lnurlp/alice", timeout=10).json()
    assert found["allowsNostr"] is True
    zapper = found["nostrPubkey"]
    assert ns.PublicKey.parse(zapper).to_hex() == zapper

    sender = ns.Keys.generate()
    text = zap_request(sender, [relay.url, "https://not-a-relay.example"], 21_000, "Great post")
    reply = _callback(server, amount=21_000, nostr=text)
    assert reply.status_code == 200, reply.text
    pr = reply.json()["pr"]
    invoice = reference.decode(pr)
    assert invoice.amount_msat == 21_000
    # NIP-57: the description hash commits to the zap request alone, as sent.
    assert invoice.description_hash == hashlib.sha256(text.encode()).hexdigest()

    paid = json.loads(cli(server.data_dir, "dev", "pay", pr))
    assert paid["state"] == "SETTLED"
    (receipt,) = wait_for(lambda: receipts_at(relay.url, pr), "the zap receipt at the relay")

    event = ns.Event.from_json(json.dumps(receipt))
    assert event.verify()
    assert receipt["pubkey"] == zapper and receipt["kind"] == 9735 and receipt["content"] == ""
    tags = receipt["tags"]
    assert ["p", RECIPIENT] in tags and ["e", NOTE] in tags and ["k", "1"] in tags
    assert ["P", sender.public_key().to_hex()] in tags
    assert ["bolt11", pr] in tags
    (description,) = [t[1] for t in tags if t[0] == "description"]
    assert description == text
    (preimage,) = [t[1] for t in tags if t[0] == "preimage"]
    assert hashlib.sha256(bytes.fromhex(preimage)).hexdigest() == invoice.payment_hash

    stored = server.request("GET", f"/invoices/{invoice.payment_hash}").json()
    # Appendix E: dated the payment's time, so every build of it is the same event.
    settled_at = scalar(
        server.data_dir,
        "SELECT settled_at FROM invoices WHERE payment_hash = ?",
        invoice.payment_hash,
    )[0]
    assert receipt["created_at"] == settled_at
    assert stored["payer_pubkey"] == sender.public_key().to_hex()
    assert stored["comment"] == "Great post"
    assert stored["metadata"] == {"zap_request": json.loads(text)}
    assert stored["lightning_address"] == "alice"


def _bad(sender: ns.Keys, relay_url: str) -> list[tuple[str, str, str]]:
    """(name, zap request text, words the reason must hold), each invalid."""
    good = zap_request(sender, [relay_url], 21_000)
    tampered = json.loads(good)
    tampered["content"] = "changed after signing"
    other = ns.EventBuilder(ns.Kind(1), "").tags([ns.Tag.parse(["p", RECIPIENT])])
    note = str(sender.sign_event(other.finalize_unsigned(sender.public_key())).as_json())
    return [
        ("signature", json.dumps(tampered), "signature"),
        ("kind", note, "kind 9734"),
        ("not json", "{zap", "JSON"),
        ("no p", zap_request(sender, [relay_url], 21_000, tags=[["e", NOTE]]), "one p tag"),
        (
            "two p",
            zap_request(sender, [relay_url], 21_000, tags=[["p", RECIPIENT], ["p", NOTE]]),
            "one p tag",
        ),
        (
            "two e",
            zap_request(
                sender, [relay_url], 21_000, tags=[["p", RECIPIENT], ["e", NOTE], ["e", NOTE]]
            ),
            "at most one e tag",
        ),
        ("amount", zap_request(sender, [relay_url], 1_000), "amount tag must equal"),
        (
            "no relays",
            str(
                sender.sign_event(
                    ns.EventBuilder(ns.Kind(9734), "")
                    .tags([ns.Tag.parse(["p", RECIPIENT])])
                    .finalize_unsigned(sender.public_key())
                ).as_json()
            ),
            "no relays tag",
        ),
        ("https relay", zap_request(sender, ["https://relay.example"], 21_000), "ws://"),
        (
            "bad a",
            zap_request(sender, [relay_url], 21_000, tags=[["p", RECIPIENT], ["a", "x:y"]]),
            "coordinate",
        ),
    ]


def test_invalid_zap_requests_are_refused_and_mint_nothing(server: Server, relay: Relay) -> None:
    sender = ns.Keys.generate()
    count = "SELECT (SELECT COUNT(*) FROM invoices), (SELECT COUNT(*) FROM zap_requests)"
    before = scalar(server.data_dir, count)
    for name, text, reason in _bad(sender, relay.url):
        reply = _callback(server, amount=21_000, nostr=text)
        assert reply.status_code == 400, (name, reply.text)
        body = reply.json()
        assert body["status"] == "ERROR", name
        assert reason in body["reason"] and "nostr" in body["reason"], (name, body)
    assert scalar(server.data_dir, count) == before


def test_an_address_that_asks_for_payer_data_is_not_offered_zaps(
    tmp_path: Path, relay: Relay
) -> None:
    with serve(tmp_path / "data", free_port(), *ALLOW_LOOPBACK) as srv:
        add_alice(srv, payer_data={"name": {"mandatory": True}})
        found = requests.get(srv.url + "/.well-known/lnurlp/alice", timeout=10).json()
        assert "allowsNostr" not in found and "nostrPubkey" not in found
        text = zap_request(ns.Keys.generate(), [relay.url], 21_000)
        reply = _callback(srv, amount=21_000, nostr=text)
        assert reply.status_code == 400 and "no zaps" in reply.json()["reason"]


def test_without_zaps_the_address_offers_none(tmp_path: Path) -> None:
    port = free_port()
    with Server(
        tmp_path / "data", "--public-url", f"http://127.0.0.1:{port}", "--port", str(port)
    ) as srv:
        add_alice(srv)
        found = requests.get(srv.url + "/.well-known/lnurlp/alice", timeout=10).json()
        assert "allowsNostr" not in found and "nostrPubkey" not in found


def test_a_loopback_relay_is_refused_without_the_allow_setting(
    tmp_path: Path, relay: Relay
) -> None:
    with serve(tmp_path / "data", free_port()) as srv:
        add_alice(srv)
        text = zap_request(ns.Keys.generate(), [relay.url], 21_000)
        pr = _callback(srv, amount=21_000, nostr=text).json()["pr"]
        cli(srv.data_dir, "dev", "pay", pr)
        row = wait_for(
            lambda: scalar(
                srv.data_dir,
                "SELECT state, last_error FROM zap_receipts WHERE state != 'pending'",
            ),
            "the delivery to be refused",
        )
        assert row[0] == "refused" and "loopback" in row[1]
        assert receipts_at(relay.url, pr) == []


def test_a_restart_between_payment_and_receipt_delivers_it_once(tmp_path: Path) -> None:
    """The relay is down when the zap is paid; lnplugin stops with the receipt
    undelivered, the relay comes up, and the restarted lnplugin delivers it."""
    relay = Relay(tmp_path / "relay")  # not started yet: its port refuses connections
    port = free_port()
    data = tmp_path / "data"
    with serve(data, port, *ALLOW_LOOPBACK) as srv:
        add_alice(srv)
        text = zap_request(ns.Keys.generate(), [relay.url], 21_000, secrets.token_hex(4))
        pr = _callback(srv, amount=21_000, nostr=text).json()["pr"]
        cli(data, "dev", "pay", pr)
        wait_for(
            lambda: scalar(data, "SELECT attempts FROM zap_receipts WHERE attempts > 0"),
            "a failed delivery attempt",
        )
    receipt = scalar(data, "SELECT receipt FROM zap_requests")[0]
    assert scalar(data, "SELECT state FROM zap_receipts")[0] == "pending"
    relay.start()
    try:
        with serve(data, port, *ALLOW_LOOPBACK):
            wait_for(
                lambda: scalar(data, "SELECT 1 FROM zap_receipts WHERE state = 'sent'"),
                "the receipt to be delivered after the restart",
            )
            (delivered,) = receipts_at(relay.url, pr)
            assert delivered["id"] == json.loads(receipt)["id"]
            assert ns.Event.from_json(json.dumps(delivered)).verify()
            assert scalar(data, "SELECT COUNT(*) FROM zap_receipts")[0] == 1
    finally:
        relay.kill()


def _metric(text: str, name: str, label: str) -> float:
    """One sample of `/metrics` (Prometheus text), by family and label set."""
    for line in text.splitlines():
        if line.startswith(f"{name}{{{label}}} "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name}{{{label}}} in /metrics")


def test_the_receipt_backlog_is_shown_where_the_operator_looks(tmp_path: Path) -> None:
    """Receipts not yet delivered (the relay is down) and those given up (a
    relay at a private address, never tried) are in `GET /info`, the
    operator's `GET /health`, `lnplugin status` and `/metrics`, as the other
    workers' backlogs are."""
    down = Relay(tmp_path / "relay")  # never started: its port refuses connections
    data = tmp_path / "data"
    with serve(data, free_port(), *ALLOW_LOOPBACK) as srv:
        add_alice(srv)
        waiting = zap_request(ns.Keys.generate(), [down.url], 21_000)
        cli(data, "dev", "pay", _callback(srv, amount=21_000, nostr=waiting).json()["pr"])
        private = zap_request(ns.Keys.generate(), ["ws://10.9.8.7:7777"], 22_000)
        cli(data, "dev", "pay", _callback(srv, amount=22_000, nostr=private).json()["pr"])
        wait_for(
            lambda: scalar(
                data,
                "SELECT COUNT(*) FROM zap_receipts WHERE (state = 'pending' AND attempts > 0)"
                " OR state = 'refused' HAVING COUNT(*) = 2",
            ),
            "one delivery retrying and one refused",
        )
        zapper = requests.get(srv.url + "/.well-known/lnurlp/alice", timeout=10).json()
        shown = {
            "pubkey": zapper["nostrPubkey"],
            "receipt_backlog": 1,
            "receipts_failed": 0,
            "receipts_refused": 1,
        }
        assert srv.request("GET", "/info").json()["zaps"] == shown
        assert srv.health()["zaps"] == shown
        # The open probe tells anyone who can reach the port nothing of it.
        assert "zaps" not in requests.get(srv.url + "/health", timeout=10).json()
        assert json.loads(cli(data, "status"))["zaps"] == shown

        text = srv.request("GET", "/metrics").text
        assert _metric(text, "lnplugin_zap_receipts", 'state="pending"') == 1
        assert _metric(text, "lnplugin_zap_receipts", 'state="refused"') == 1
        assert _metric(text, "lnplugin_zap_receipts", 'state="sent"') == 0
        assert _metric(text, "lnplugin_zap_receipts", 'state="failed"') == 0
        head = _metric(text, "lnplugin_outbox_seq", 'reader="head"')
        assert head > 0 and _metric(text, "lnplugin_outbox_seq", 'reader="zaps"') == head


def test_without_zaps_no_receipt_backlog_is_shown(tmp_path: Path) -> None:
    with Server(tmp_path / "data") as srv:
        assert "zaps" not in srv.request("GET", "/info").json()
        assert "zaps" not in srv.health()
        text = srv.request("GET", "/metrics").text
        assert _metric(text, "lnplugin_zap_receipts", 'state="pending"') == 0


def test_a_relay_that_answers_with_a_redirect_is_a_failed_attempt_not_an_error() -> None:
    """The receipt goes over the socket the SSRF guard checked, so a redirect
    is not followed; websockets says so with a ValueError, which escaped
    `publish`: the attempt was logged as a failure to store its outcome, the
    row parked and tried again every 30 s with no reason recorded."""

    class Redirect(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # websockets reads no other

        def do_GET(self) -> None:
            self.send_response(301)
            self.send_header("Location", "ws://169.254.169.254/")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"ws://127.0.0.1:{server.server_address[1]}/"
        outcome = publish(url, '{"id": "00"}', "00", ["127.0.0.0/8"])
    finally:
        server.shutdown()
        server.server_close()
    assert not outcome.sent and outcome.retry and not outcome.refused
    assert outcome.error is not None and "redirect" in outcome.error
