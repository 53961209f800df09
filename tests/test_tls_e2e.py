"""Every outbound client of lnplugin over real TLS: webhooks, rss::payment
fetches and fiat rates over https, NWC and zap receipts over wss.

A test CA (tests/helpers_tls.py) issues a certificate for `localhost` (a
DNS name only: lnplugin connects to the address it checked, 127.0.0.1, and
must verify the certificate against the URL's host, with that name in its
SNI), one for another name, and one for localhost that no CA issued.
`lnplugin serve` runs as a process and trusts the CA the way an operator
with a private CA makes it: `SSL_CERT_FILE` in its environment (README,
"Trusting a private CA"). The loopback servers are let through the SSRF
guard with the allow settings, as an operator would for servers on their
own network.

The relay is rust-nostr's (tests/nwc_relay.py) on plain ws://; lnplugin
reaches it through TLS-terminating proxies (lnplugin_sim/tls_proxy.py),
while the app and the tests' own readers use the plain port (nostr-sdk's
client does not read SSL_CERT_FILE).

A certificate from no trusted CA, or one for another name, delivers
nothing: the delivery, fetch, receipt or relay records the verification
error, is tried again later, never over plain HTTP, and the server runs on.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nostr_sdk as ns
import pytest
import requests
from standardwebhooks.webhooks import Webhook

from lnplugin_sim.lnd_sim import LndSim
from lnplugin_sim.tls_proxy import TLSProxy
from tests import e2e
from tests.helpers_tls import GOOD, SELF_SIGNED, WRONG_NAME, Pages, Pki
from tests.helpers_webhooks import Receiver, free_port
from tests.nwc_relay import Relay
from tests.test_nwc_e2e import Listener, make_invoice
from tests.test_zaps_e2e import receipts_at, zap_request

SETTLED = "invoice.incoming.settled"
RECORD = {"action": "boost", "sender_name": "oscar", "message": "over https", "item_guid": "ep-9"}
LOOPBACK = "127.0.0.0/8"
VERIFY_FAILED = "certificate verify failed"


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(dir="/tmp", prefix="tls-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def pki(home: Path) -> Pki:
    return Pki(home / "pki")


@pytest.fixture(scope="module")
def relay(home: Path) -> Iterator[Relay]:
    started = Relay(home / "relay").start()
    yield started
    started.kill()


def _proxy(pki: Pki, relay: Relay, kind: str) -> TLSProxy:
    chain, key = (str(pki.directory / f"{kind}.{ext}") for ext in ("pem", "key"))
    return TLSProxy(relay.port, chain, key)


@pytest.fixture(scope="module")
def wss(pki: Pki, relay: Relay) -> Iterator[dict[str, TLSProxy]]:
    """A TLS proxy in front of the relay per certificate kind."""
    proxies = {kind: _proxy(pki, relay, kind) for kind in (GOOD, WRONG_NAME, SELF_SIGNED)}
    yield proxies
    for proxy in proxies.values():
        proxy.close()


def wss_url(proxy: TLSProxy) -> str:
    return f"wss://localhost:{proxy.port}"


def trusting(pki: Pki) -> dict[str, str]:
    """The server's environment: the test CA is the one it trusts."""
    env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    return {**env, "SSL_CERT_FILE": str(pki.ca)}


def serve(data: Path, pki: Pki, *args: str) -> e2e.Server:
    port = free_port()
    server = e2e.Server(
        data,
        "--port", str(port), "--public-url", f"http://127.0.0.1:{port}",
        "--webhook-allow", LOOPBACK, "--fiat-allow", LOOPBACK, "--zap-relay-allow", LOOPBACK,
        "--rss-payment-domain", "localhost", "--zaps",
        "--webhook-retry-schedule", "1,1,1,1,1,1,1,1,1,1",
        "--rss-payment-retry-schedule", "1,1,1,1,1,1,1,1,1,1",
        "--rate-limit", "1000/minute", "--rate-limit-callback", "1000/minute",
        *args,
    )  # fmt: skip
    server.env = trusting(pki) | {k: v for k, v in server.env.items() if k.startswith("LNPLUGIN_")}
    return server


def rss_header() -> dict[str, str]:
    return {"x-rss-payment": urllib.parse.quote(json.dumps(RECORD))}


def add_address(server: e2e.Server, username: str) -> None:
    reply = server.request(
        "POST",
        "/lightning_addresses",
        json={"username": username, "description": "Boosts", "comment_allowed": 255},
    )
    assert reply.status_code == 201, reply.text


def lnurl_pay(server: e2e.Server, username: str, **params: Any) -> str:
    """Pay `username` through its LNURL callback; returns the payment hash."""
    reply = requests.get(f"{server.url}/lnurlp/{username}/callback", params=params, timeout=10)
    assert reply.status_code == 200, reply.text
    paid = json.loads(e2e.cli(server.data_dir, "dev", "pay", reply.json()["pr"]))
    assert paid["state"] == "SETTLED"
    return str(paid["payment_hash"])


def rss_row(server: e2e.Server, payment_hash: str) -> dict[str, Any] | None:
    found = e2e.scalar(
        server.data_dir,
        "SELECT json_object('state', r.state, 'attempts', r.attempts, 'error', r.last_error) "
        "FROM rss_payments r JOIN invoices i ON i.id = r.invoice_id WHERE i.payment_hash = ?",
        payment_hash,
    )
    return json.loads(found[0]) if found else None


def relays_of(server: e2e.Server) -> dict[str, dict[str, Any]]:
    """NWC relay states from `GET /info`, by URL (as shown: with a trailing /)."""
    return {r["url"].rstrip("/"): r for r in server.request("GET", "/info").json()["nwc"]["relays"]}


# -- it works over TLS ------------------------------------------------------------


@pytest.fixture(scope="module")
def trusted(home: Path, pki: Pki, relay: Relay, wss: dict[str, TLSProxy]) -> Iterator[Any]:
    """The receivers with the good certificate, and a server that uses them all."""
    hook = Receiver(tls=pki.server_context(GOOD))
    pages = Pages(pki.server_context(GOOD))
    pages.answers["/usd"] = (200, {"content-type": "application/json"}, b'{"rate": "62000"}')
    provider = f"tls={pages.url('/{currency}')}|rate"
    server = serve(
        home / "trusted",
        pki,
        "--nwc-relay", wss_url(wss[GOOD]), "--fiat-provider", provider,
    ).start()  # fmt: skip
    try:
        yield server, hook, pages
    finally:
        server.stop()
        hook.close()
        pages.close()


def test_a_signed_webhook_is_delivered_over_https_to_the_urls_host_name(
    trusted: Any, pki: Pki
) -> None:
    server, hook, _ = trusted
    url = hook.url("/hook")
    assert url.startswith("https://localhost:")
    endpoint = server.request(
        "POST", "/webhook_endpoints", json={"url": url, "filter_types": [SETTLED]}
    ).json()
    invoice = server.request("POST", "/invoices", json={"amount": 21}).json()
    e2e.cli(server.data_dir, "dev", "pay", invoice["payment_hash"])
    (delivered,) = e2e.wait_for(
        lambda: hook.of_type(SETTLED, invoice["payment_hash"]), "the webhook over https"
    )
    signed = Webhook(endpoint["endpoint_secret"]).verify(delivered.body, delivered.headers)
    assert signed["data"]["payment_hash"] == invoice["payment_hash"]
    assert delivered.headers["host"] == url.split("/")[2]  # localhost:<port>, not the address
    # The certificate names localhost only, and the connection went to the
    # address the guard checked: verified against the name, sent in SNI.
    assert "localhost" in pki.names and None not in pki.names
    (row,) = server.request("GET", f"/webhook_endpoints/{endpoint['id']}/deliveries").json()
    assert row["status"] == "delivered" and row["last_error"] is None


def test_an_rss_payment_boost_is_fetched_over_https(trusted: Any) -> None:
    server, _, pages = trusted
    pages.answers["/boost/9"] = (200, rss_header(), b"")
    add_address(server, "alice")
    url = pages.url("/boost/9") + "?payment=tls"
    comment = f"rss::payment::boost {url} hi"
    payment_hash = lnurl_pay(server, "alice", amount=21_000, comment=comment)
    row = e2e.wait_for(
        lambda: (r := rss_row(server, payment_hash)) and r["state"] != "pending" and r,
        "the rss::payment fetch",
    )
    assert row == {"state": "fetched", "attempts": 1, "error": None}
    boost = server.request("GET", f"/invoices/{payment_hash}").json()["boostagram"]
    assert boost["message"] == "over https" and boost["episode_guid"] == "ep-9"


def test_a_fiat_price_is_read_over_https(trusted: Any) -> None:
    server, _, pages = trusted
    reply = server.request("POST", "/invoices", json={"currency": "USD", "amount": 250})
    assert reply.status_code == 201, reply.text
    price = reply.json()["price"]
    assert (price["rate"], price["rate_source"]) == ("62000", "median of tls")
    assert "/usd" in pages.asked


def test_nwc_runs_over_wss(trusted: Any, relay: Relay, wss: dict[str, TLSProxy]) -> None:
    server, _, _ = trusted
    url = wss_url(wss[GOOD])
    try:
        e2e.wait_for(lambda: relays_of(server)[url]["state"] == "connected", "wss connected")
    except AssertionError as exc:  # once seen under load (2026-12-08): say why, next time
        raise AssertionError(
            f"{exc}; the relay: {relays_of(server)[url]}; the proxy saw: {wss[GOOD].names}; "
            f"the server logged: {server.stderr_text()[-3000:]}"
        ) from None
    # The app reaches the same relay on its plain port (nostr-sdk's client
    # does not read SSL_CERT_FILE); lnplugin's side is wss only.
    uri = e2e.cli(
        server.data_dir, "nwc", "connect", "--scope", "invoices:create", "--scope",
        "invoices:read", "--label", "tls app", "--nwc-relay", relay.url,
    ).strip().splitlines()[-1]  # fmt: skip
    listener = Listener(relay, uri)
    try:
        made = make_invoice(uri, 21_000, "over wss")
        assert made.amount == 21_000
        e2e.cli(server.data_dir, "dev", "pay", made.payment_hash)
        note = listener.next(23197)["body"]
        assert note["notification_type"] == "payment_received"
        assert note["notification"]["payment_hash"] == made.payment_hash
    finally:
        listener.close()
    assert wss[GOOD].names and set(wss[GOOD].names) == {"localhost"}


def test_a_zap_receipt_is_published_over_wss(
    trusted: Any, relay: Relay, wss: dict[str, TLSProxy]
) -> None:
    server, _, _ = trusted
    add_address(server, "zed")
    text = zap_request(ns.Keys.generate(), [wss_url(wss[GOOD])], 21_000, "zap over wss")
    reply = requests.get(
        f"{server.url}/lnurlp/zed/callback", params={"amount": "21000", "nostr": text}, timeout=10
    )
    pr = reply.json()["pr"]
    e2e.cli(server.data_dir, "dev", "pay", pr)
    (receipt,) = e2e.wait_for(lambda: receipts_at(relay.url, pr), "the receipt at the relay")
    assert ns.Event.from_json(json.dumps(receipt)).verify()
    assert e2e.scalar(server.data_dir, "SELECT state, last_error FROM zap_receipts") == (
        "sent",
        None,
    )


# -- untrusted and wrong-name certificates deliver nothing ----------------------


@pytest.fixture(scope="module")
def refused(home: Path, pki: Pki, relay: Relay, wss: dict[str, TLSProxy]) -> Iterator[Any]:
    """Receivers with the self-signed and the wrong-name certificate (the
    same handlers as the good ones), and a server that uses only them."""
    hooks = {kind: Receiver(tls=pki.server_context(kind)) for kind in (SELF_SIGNED, WRONG_NAME)}
    pages = {kind: Pages(pki.server_context(kind)) for kind in (SELF_SIGNED, WRONG_NAME)}
    for page in pages.values():
        page.answers["/usd"] = (200, {}, b'{"rate": "62000"}')
        page.answers["/boost"] = (200, rss_header(), b"")
    providers = [
        arg
        for kind, page in pages.items()
        for arg in ("--fiat-provider", f"{kind}={page.url('/{currency}')}|rate")
    ]
    # The good relay too, as a deployment may have: serve waits for a first
    # relay at start (up to 5 s), and the others are judged each on its own.
    relays = [a for k in (GOOD, SELF_SIGNED, WRONG_NAME) for a in ("--nwc-relay", wss_url(wss[k]))]
    server = serve(home / "refused", pki, *relays, *providers).start()
    try:
        yield server, hooks, pages
    finally:
        server.stop()
        closers: list[Receiver | Pages] = [*hooks.values(), *pages.values()]
        for closing in closers:
            closing.close()


REASONS = {SELF_SIGNED: "self-signed certificate", WRONG_NAME: "Hostname mismatch"}


def _retried(rows: list[dict[str, Any]]) -> bool:
    return len(rows) == 2 and all(r["attempts"] >= 2 for r in rows)


def test_webhooks_to_an_untrusted_or_wrong_name_certificate_are_retried_not_sent(
    refused: Any,
) -> None:
    server, hooks, _ = refused
    endpoints = {
        kind: server.request(
            "POST", "/webhook_endpoints", json={"url": hook.url(), "filter_types": [SETTLED]}
        ).json()["id"]
        for kind, hook in hooks.items()
    }
    invoice = server.request("POST", "/invoices", json={"amount": 21}).json()
    e2e.cli(server.data_dir, "dev", "pay", invoice["payment_hash"])
    for kind, endpoint in endpoints.items():

        def retried(endpoint: str = endpoint) -> dict[str, Any] | None:
            rows = server.request("GET", f"/webhook_endpoints/{endpoint}/deliveries").json()
            return rows[0] if rows and rows[0]["attempts"] >= 2 else None

        row = e2e.wait_for(retried, f"the {kind} delivery to be tried twice")
        assert row["status"] == "pending" and row["next_attempt_at"] is not None
        assert VERIFY_FAILED in row["last_error"] and REASONS[kind] in row["last_error"]
        assert row["last_status_code"] is None
        assert hooks[kind].received == []  # nothing reached a handler, in TLS or in plain
    assert server.proc.poll() is None


def test_rss_payment_fetches_from_an_untrusted_or_wrong_name_certificate_are_retried(
    refused: Any,
) -> None:
    server, _, pages = refused
    add_address(server, "bob")
    paid = {
        kind: lnurl_pay(
            server, "bob", amount=21_000, comment=f"rss::payment::boost {page.url('/boost')}?p=x"
        )
        for kind, page in pages.items()
    }
    for kind, page in pages.items():
        payment_hash = paid[kind]
        row = e2e.wait_for(
            lambda h=payment_hash: (r := rss_row(server, h)) and r["attempts"] >= 2 and r,
            f"the {kind} fetch to be tried twice",
        )
        assert row["state"] == "pending"
        assert VERIFY_FAILED in row["error"] and REASONS[kind] in row["error"]
        assert server.request("GET", f"/invoices/{payment_hash}").json()["boostagram"] is None
        assert page.asked == []


def test_fiat_providers_with_an_untrusted_or_wrong_name_certificate_give_no_rate(
    refused: Any,
) -> None:
    server, _, pages = refused
    reply = server.request("POST", "/invoices", json={"currency": "USD", "amount": 250})
    assert reply.status_code == 503, reply.text
    assert "no provider answered" in reply.json()["message"] and reply.headers["Retry-After"]
    assert all(page.asked == [] for page in pages.values())
    # The reason, per provider, is in the server's log.
    logged: list[str] = []

    def said_why() -> bool:
        logged.append(server.stderr_since())
        text = "".join(logged)
        return all(f"fiat rate provider {kind} (USD)" in text for kind in pages) and all(
            reason in text for reason in REASONS.values()
        )

    e2e.wait_for(said_why, "the providers' failures in the log")
    assert server.proc.poll() is None


def test_nwc_relays_with_an_untrusted_or_wrong_name_certificate_stay_unconnected(
    refused: Any, wss: dict[str, TLSProxy]
) -> None:
    server, _, _ = refused
    for kind in (SELF_SIGNED, WRONG_NAME):
        url = wss_url(wss[kind])
        state = e2e.wait_for(
            lambda u=url: (r := relays_of(server)[u])["last_error"] and r, f"{kind} relay error"
        )
        assert state["state"] != "connected" and state["connects"] == 0
        assert VERIFY_FAILED in state["last_error"] and REASONS[kind] in state["last_error"]
    # `lnplugin status`, as an operator asks the running server, says the same.
    status = json.loads(e2e.cli(server.data_dir, "status"))
    shown = {r["url"].rstrip("/"): r for r in status["nwc"]["relays"]}
    for kind in (SELF_SIGNED, WRONG_NAME):
        assert shown[wss_url(wss[kind])]["state"] != "connected"
        assert REASONS[kind] in shown[wss_url(wss[kind])]["last_error"]
    assert server.proc.poll() is None


def test_zap_receipts_to_an_untrusted_or_wrong_name_relay_are_retried_not_sent(
    refused: Any, relay: Relay, wss: dict[str, TLSProxy]
) -> None:
    server, _, _ = refused
    add_address(server, "zoe")
    urls = {kind: wss_url(wss[kind]) for kind in (SELF_SIGNED, WRONG_NAME)}
    text = zap_request(ns.Keys.generate(), list(urls.values()), 21_000, "refused zap")
    reply = requests.get(
        f"{server.url}/lnurlp/zoe/callback", params={"amount": "21000", "nostr": text}, timeout=10
    )
    pr = reply.json()["pr"]
    e2e.cli(server.data_dir, "dev", "pay", pr)
    for kind, url in urls.items():
        row = e2e.wait_for(
            lambda u=url: e2e.scalar(
                server.data_dir,
                "SELECT state, attempts, last_error, next_attempt_at FROM zap_receipts "
                "WHERE relay = ? AND attempts >= 2",
                u,
            ),
            f"the {kind} receipt to be tried twice",
        )
        state, _, error, next_at = row
        assert state == "pending" and next_at is not None
        assert VERIFY_FAILED in error and REASONS[kind] in error
    assert receipts_at(relay.url, pr) == []
    assert server.proc.poll() is None


# -- lnd without --lnd-cert -------------------------------------------------------


def test_lnd_without_lnd_cert_is_verified_against_the_same_cas(home: Path, pki: Pki) -> None:
    """lnd behind a certificate from the operator's CA, no `--lnd-cert`: gRPC
    has roots of its own and did not read SSL_CERT_FILE, so `lnplugin doctor`
    (Python's ssl) passed the certificate and `serve` failed every call."""
    lnd_dir = home / "lnd"
    lnd_dir.mkdir()
    shutil.copy(pki.directory / f"{GOOD}.pem", lnd_dir / "tls.cert")
    shutil.copy(pki.directory / f"{GOOD}.key", lnd_dir / "tls.key")
    with LndSim(lnd_dir, network="regtest", port=0) as sim:
        args = [
            "--node", "lnd", "--network", "regtest", "--lnd-host", f"localhost:{sim.port}",
            "--lnd-macaroon", str(sim.admin_macaroon_path),
        ]  # fmt: skip
        env = trusting(pki)
        env.pop("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", None)  # gRPC's own roots, as on most hosts
        doctor = e2e.run(home / "lnd-data", "doctor", *args, env=env)
        assert "OK   TLS: handshake ok with the system's CAs" in doctor.stdout, doctor.stdout
        assert "FAIL" not in doctor.stdout, doctor.stdout  # gRPC's own calls trust it too
        server = e2e.Server(home / "lnd-data", *args)
        server.env = env | {k: v for k, v in server.env.items() if k.startswith("LNPLUGIN_")}
        with server:
            reply = server.request("POST", "/invoices", json={"amount": 21})
            assert reply.status_code == 201, reply.text


# -- a host name written with its final dot ---------------------------------------

FINAL_DOT = """
import json, socket, sys, time
import nostr_sdk as ns
from lnplugin import pinned_http, zapper
from lnplugin.nwc.relay import Relay

# This host's resolver answers no name with a final dot; DNS answers
# "localhost." as it answers "localhost" (the same fully qualified name).
real = socket.getaddrinfo
socket.getaddrinfo = lambda host, *a, **k: real(
    host[:-1] if isinstance(host, str) and host.endswith(".") else host, *a, **k
)
https_url, wss_url = sys.argv[1:3]
out = {}
try:
    out["https"] = pinned_http.request("GET", https_url, allow=["127.0.0.0/8"]).status
except pinned_http.Failed as exc:
    out["https"] = str(exc)
keys = ns.Keys.generate()
note = ns.EventBuilder(ns.Kind(1), "final dot").finalize_unsigned(keys.public_key())
event = keys.sign_event(note)
outcome = zapper.publish(wss_url, event.as_json(), event.id().to_hex(), ["127.0.0.0/8"])
out["zap"] = outcome.sent or outcome.error
relay = Relay(wss_url, lambda *a: None, lambda: {"kinds": [1], "limit": 0}, lambda r: None)
relay.start()
deadline = time.monotonic() + 20
while relay.state != "connected" and relay.last_error is None and time.monotonic() < deadline:
    time.sleep(0.05)
out["nwc"] = relay.state if relay.state == "connected" else relay.last_error
relay.stop()
print(json.dumps(out))
"""


def test_a_host_name_with_its_final_dot_is_verified_and_sent_without_it(
    home: Path, pki: Pki, wss: dict[str, TLSProxy]
) -> None:
    """`https://hooks.example.com./x` is the same host as without the dot (and
    passes the URL check), but certificates name it without one and SNI
    carries none (RFC 6066): verified as written, every attempt failed with
    a hostname mismatch."""
    pages = Pages(pki.server_context(GOOD))
    pages.answers["/x"] = (200, {}, b"ok")
    try:
        https_url = pages.url("/x").replace("//localhost:", "//localhost.:")
        wss_dotted = wss_url(wss[GOOD]).replace("//localhost:", "//localhost.:")
        done = subprocess.run(
            [sys.executable, "-c", FINAL_DOT, https_url, wss_dotted],
            capture_output=True,
            text=True,
            timeout=60,
            env=trusting(pki),
            cwd=Path(__file__).resolve().parents[1],
        )
    finally:
        pages.close()
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"https": 200, "zap": True, "nwc": "connected"}
    assert "localhost." not in pki.names and "localhost." not in wss[GOOD].names
