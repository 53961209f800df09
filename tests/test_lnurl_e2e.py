"""Lightning Addresses end to end: `lnplugin serve` as a real process on the
dev node, a wallet's side played by the `lnurl` package (which no one here
wrote) and by plain HTTP.

Discover, call back with a comment and payer data, check the invoice's `h`
against the metadata (plus the payer data, LUD-18), pay with `lnplugin dev
pay`, verify (LUD-21); the LUD-06 error shapes; the admin CRUD's 4xx with a
reason per field; keysend attribution; the rate limiter's 429 and headers;
and the one error public routes give without `--public-url`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bolt11 as reference
import lnurl as lnurl_client
import pytest
import requests

from tests.e2e import Server, cli, wait_for
from tests.helpers_webhooks import free_port

PAYER = {"name": "Bob", "email": "bob@example.com"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    data = tmp_path_factory.mktemp("lnurl") / "data"
    args = (
        "--public-url", public, "--port", str(port),
        "--rate-limit", "1000/minute", "--rate-limit-callback", "1000/minute",
    )  # fmt: skip
    with Server(data, *args) as srv:
        # `--port 0` comes first in Server's arguments; a later --port wins.
        assert srv.url == public
        yield srv


@pytest.fixture(scope="module")
def alice(server: Server) -> dict[str, Any]:
    reply = server.request(
        "POST",
        "/lightning_addresses",
        json={
            "username": "alice",
            "description": "Tips for Alice's podcast",
            "min_sendable_msat": 1000,
            "max_sendable_msat": 5_000_000,
            "comment_allowed": 50,
            "payer_data": {"name": {"mandatory": True}, "email": {"mandatory": False}},
            "success_message": "Thanks!",
        },
    )
    assert reply.status_code == 201, reply.text
    return reply.json()


def _public(server: Server, path: str, **params: Any) -> requests.Response:
    """A request with no token, as a wallet makes it."""
    return requests.get(server.url + path, params=params, timeout=10)


def test_an_lnurl_client_pays_an_address_and_verifies_it(
    server: Server, alice: dict[str, Any]
) -> None:
    assert alice["lightning_address"] == f"alice@{urllib.parse.urlsplit(server.url).netloc}"
    # The bech32 LNURL decodes (with the client library) to the discovery URL.
    assert str(lnurl_client.decode(alice["lnurl"]).url) == alice["lnurlp_url"]

    discovered = asyncio.run(lnurl_client.handle(alice["lnurl"]))
    assert isinstance(discovered, lnurl_client.LnurlPayResponse)
    assert discovered.minSendable == 1000 and discovered.maxSendable == 5_000_000
    assert discovered.commentAllowed == 50
    assert discovered.metadata.text == "Tips for Alice's podcast"
    metadata_text = _public(server, "/.well-known/lnurlp/alice").json()["metadata"]
    assert ["text/identifier", alice["lightning_address"]] in json.loads(metadata_text)
    assert discovered.payerData is not None and discovered.payerData.name is not None

    payer_text = json.dumps(PAYER)
    reply = requests.get(
        str(discovered.callback),
        params={"amount": "21000", "comment": "great episode", "payerdata": payer_text},
        timeout=10,
    ).json()
    action = lnurl_client.LnurlPayActionResponse(**reply)
    assert reply["routes"] == []
    assert reply["disposable"] is False  # LUD-11: an address is kept and paid again
    assert reply["successAction"] == {"tag": "message", "message": "Thanks!"}

    invoice = reference.decode(action.pr)
    assert invoice.amount_msat == 21_000
    # LUD-06 and LUD-18: h = sha256(metadata + payerdata as sent).
    expected = hashlib.sha256((metadata_text + payer_text).encode()).hexdigest()
    assert invoice.description_hash == expected

    verify_url = str(action.verify)
    before = requests.get(verify_url, timeout=10).json()
    assert before == {"status": "OK", "settled": False, "preimage": None, "pr": action.pr}

    paid = json.loads(cli(server.data_dir, "dev", "pay", action.pr))
    assert paid["state"] == "SETTLED"
    after = wait_for(
        lambda: (r := requests.get(verify_url, timeout=10).json())["settled"] and r,
        "verify to report the settlement",
    )
    assert hashlib.sha256(bytes.fromhex(after["preimage"])).hexdigest() == invoice.payment_hash
    lnurl_client.LnurlPayVerifyResponse(**after)  # the client library accepts the shape

    stored = server.request("GET", f"/invoices/{invoice.payment_hash}").json()
    assert stored["comment"] == "great episode"
    assert stored["payer_name"] == "Bob" and stored["payer_email"] == "bob@example.com"
    assert stored["lightning_address"] == "alice"
    assert stored["description"] == "Tips for Alice's podcast"
    assert stored["description_hash"] == expected
    listed = server.request(
        "GET", "/invoices/incoming", params={"q[lightning_address]": "alice"}
    ).json()
    assert invoice.payment_hash in [item["payment_hash"] for item in listed]


def test_an_address_typed_with_capitals_is_the_lower_case_address(
    server: Server, alice: dict[str, Any]
) -> None:
    """A phone capitalises `Alice@domain` as the payer types it, and some
    wallets ask for the username as typed; it used to be a 404 (`No
    Lightning Address 'Alice' here`), and the payment failed."""
    lower = _public(server, "/.well-known/lnurlp/alice").json()
    for typed in ("Alice", "ALICE"):
        found = _public(server, f"/.well-known/lnurlp/{typed}")
        assert found.status_code == 200, found.text
        # The very same answer: the callback, and the metadata whose hash the
        # wallet checks, name the address as it is, in lower case.
        assert found.json() == lower
        keysend = _public(server, f"/.well-known/keysend/{typed}")
        assert keysend.status_code == 200, keysend.text
        assert keysend.json()["customData"][0]["customValue"] == "alice"
    paid = _public(
        server, "/lnurlp/Alice/callback", amount=2000, payerdata=json.dumps({"name": "Bo"})
    )
    assert paid.status_code == 200, paid.text
    minted = server.request("GET", f"/invoices/{paid.json()['verify'].rsplit('/', 1)[1]}")
    assert minted.json()["lightning_address"] == "alice"
    assert _public(server, "/.well-known/lnurlp/Bob").status_code == 404


def test_a_keysend_carrying_the_address_record_is_attributed_to_it(
    server: Server, alice: dict[str, Any]
) -> None:
    info = _public(server, "/.well-known/keysend/alice").json()
    assert info["status"] == "OK" and info["tag"] == "keysend"
    node_pubkey = server.request("GET", "/info").json()["node"]["pubkey"]
    assert info["pubkey"] == node_pubkey
    [custom] = info["customData"]
    assert custom == {"customKey": "696969", "customValue": "alice"}

    boost = json.dumps({"podcast": "Alice's pod", "message": "boost!", "value_msat_total": 7000})
    sent = json.loads(
        cli(
            server.data_dir,
            "dev",
            "keysend",
            "--amount-msat",
            "7000",
            "--record",
            f"{custom['customKey']}={custom['customValue']}",
            "--record",
            f"7629169={boost}",
        )
    )
    other = json.loads(
        cli(server.data_dir, "dev", "keysend", "--amount-msat", "1000", "--record", "696969=bob")
    )

    def attributed() -> dict[str, Any] | None:
        reply = server.request("GET", f"/invoices/{sent['payment_hash']}")
        return reply.json() if reply.status_code == 200 else None

    row = wait_for(attributed, "the keysend to be stored")
    assert row["lightning_address"] == "alice"
    assert row["boostagram"]["message"] == "boost!"
    unrelated = wait_for(
        lambda: (
            server.request("GET", f"/invoices/{other['payment_hash']}").status_code == 200
            and server.request("GET", f"/invoices/{other['payment_hash']}").json()
        ),
        "the other keysend to be stored",
    )
    assert unrelated["lightning_address"] is None
    listed = server.request(
        "GET", "/invoices", params={"q[lightning_address]": "alice@example.com", "items": 100}
    ).json()
    hashes = [item["payment_hash"] for item in listed]
    assert sent["payment_hash"] in hashes and other["payment_hash"] not in hashes


def test_callback_errors_have_lud06_shape_and_say_why(
    server: Server, alice: dict[str, Any]
) -> None:
    callback = "/lnurlp/alice/callback"
    name = json.dumps({"name": "Bob"})
    cases: list[tuple[dict[str, Any], str]] = [
        ({"amount": 999, "payerdata": name}, "from 1000 to 5000000"),
        ({"amount": 5_000_001, "payerdata": name}, "from 1000 to 5000000"),
        ({"payerdata": name}, "amount is required"),
        ({"amount": "12a", "payerdata": name}, "amount must be an integer"),
        ({"amount": 2000, "comment": "x" * 51, "payerdata": name}, "at most 50 characters"),
        ({"amount": 2000}, "payerdata.name is mandatory"),
        ({"amount": 2000, "payerdata": "{not json"}, "payerdata must be a JSON object"),
        ({"amount": 2000, "payerdata": json.dumps({"email": "x"})}, "payerdata.name"),
        (
            {"amount": 2000, "payerdata": json.dumps({"name": "B", "email": "nope"})},
            "payerdata.email must be an email address",
        ),
        # Both were a 500 (the second after minting on the node, unstored).
        ({"amount": 2000, "payerdata": "[" * 1999}, "payerdata must be a JSON object"),
        ({"amount": 2000, "payerdata": '{"name": "\\ud800"}'}, "without lone surrogates"),
    ]
    for params, reason in cases:
        reply = _public(server, callback, **params)
        body = reply.json()
        assert reply.status_code == 400, (params, body)
        assert body["status"] == "ERROR", body
        assert reason in body["reason"], (params, body)

    for path in ("/.well-known/lnurlp/nobody", "/lnurlp/nobody/callback?amount=1000"):
        reply = _public(server, path)
        assert reply.status_code == 404
        assert reply.json() == {"status": "ERROR", "reason": "No Lightning Address 'nobody' here"}
    # Waiting mends none of these: no Retry-After (the limiter's 429 has one).
    assert "Retry-After" not in _public(server, callback, amount=1).headers
    # No route matched, or not for this method: still LUD-06's shape, not the API's.
    for method, path in (
        ("GET", "/.well-known/lnurlp/"),
        ("GET", "/lnurlp/alice/callback/extra"),
        ("POST", "/.well-known/lnurlp/alice"),
        ("PUT", "/lnurlp/alice/callback"),
    ):
        reply = requests.request(method, server.url + path, timeout=10)
        assert reply.status_code in (404, 405), (method, path)
        assert reply.json()["status"] == "ERROR", (method, path, reply.text)
    page = requests.put(server.url + "/pay/address/alice", timeout=10)
    assert page.status_code == 405 and page.headers["Content-Type"].startswith("text/html")
    # Verify answers only for invoices minted through an address.
    api_invoice = server.request("POST", "/invoices", json={"amount": 5}).json()
    for target in (api_invoice["payment_hash"], "0" * 64, "not-a-hash"):
        reply = _public(server, f"/lnurlp/verify/{target}")
        assert reply.status_code == 404
        assert reply.json() == {"status": "ERROR", "reason": "Not found"}


def test_a_page_of_any_origin_may_read_every_lnurl_answer(
    server: Server, alice: dict[str, Any]
) -> None:
    """Browser wallets and Nostr clients fetch addresses from their own
    origin; without Access-Control-Allow-Origin the browser hid every answer."""
    origin = {"Origin": "https://wallet.example"}
    pay = requests.get(
        server.url + "/lnurlp/alice/callback",
        params={"amount": "2000", "payerdata": json.dumps({"name": "Bob"})},
        headers=origin,
        timeout=10,
    )
    assert pay.status_code == 200, pay.text
    for path in (
        "/.well-known/lnurlp/alice",
        "/.well-known/keysend/alice",
        urllib.parse.urlsplit(pay.json()["verify"]).path,
        "/lnurlp/alice/callback?amount=1",  # an error: its reason must be readable too
        "/.well-known/lnurlp/nobody",
        "/lnurlp/alice/callback/extra",  # no route at all
    ):
        reply = requests.get(server.url + path, headers=origin, timeout=10)
        assert reply.headers.get("Access-Control-Allow-Origin") == "*", (path, reply.status_code)
    assert pay.headers["Access-Control-Allow-Origin"] == "*"
    # The API is not opened by this: it stays behind --cors-origin.
    assert "Access-Control-Allow-Origin" not in server.request("GET", "/info").headers


def test_no_cache_may_keep_an_lnurl_answer(server: Server, alice: dict[str, Any]) -> None:
    """Each answer is for one request (a callback's invoice, verify's state,
    a discovery's one-time k1): they came without Cache-Control, so a caching
    proxy or CDN in front could hand the next payer the same invoice, or a
    wallet a stale `settled: false`."""
    pay = _public(server, "/lnurlp/alice/callback", amount=2000, payerdata='{"name":"Bo"}')
    assert pay.status_code == 200, pay.text
    assert pay.headers.get("Cache-Control") == "no-store"
    for path in (
        "/.well-known/lnurlp/alice",
        "/.well-known/keysend/alice",
        urllib.parse.urlsplit(pay.json()["verify"]).path,
        "/lnurlp/alice/callback?amount=1",  # refused
        "/.well-known/lnurlp/nobody",
        "/lnurlp/alice/callback/extra",  # no route at all
    ):
        reply = requests.get(server.url + path, timeout=10)
        assert reply.headers.get("Cache-Control") == "no-store", (path, reply.status_code)


def test_payer_data_the_address_did_not_ask_for_is_hashed_as_sent_not_refused_or_kept(
    server: Server, alice: dict[str, Any]
) -> None:
    # alice asks for name and email; LUD-18: the rest is appended as received.
    payer_text = json.dumps({"name": "Bob", "pubkey": "zz", "foo": [1, 2]})
    reply = _public(server, "/lnurlp/alice/callback", amount=2000, payerdata=payer_text)
    assert reply.status_code == 200, reply.text
    invoice = reference.decode(reply.json()["pr"])
    metadata_text = _public(server, "/.well-known/lnurlp/alice").json()["metadata"]
    expected = hashlib.sha256((metadata_text + payer_text).encode()).hexdigest()
    assert invoice.description_hash == expected
    stored = server.request("GET", f"/invoices/{invoice.payment_hash}").json()
    assert stored["payer_name"] == "Bob"
    assert stored["payer_pubkey"] is None  # not asked for: not a payer field
    assert stored["metadata"]["payer_data"]["foo"] == [1, 2]  # kept as received


def test_a_payer_signs_the_auth_k1_and_each_k1_pays_once(server: Server) -> None:
    """LUD-18 `auth`: discovery hands out a fresh k1 each time; the callback
    takes a LUD-04 signature of it (made with the `lnurl` package's helper)
    once, for the address it was issued by, and refuses anything else."""
    made = server.request("POST", "/lightning_addresses", json={"username": "sig"})
    assert made.status_code == 201, made.text
    patched = server.request(
        "PATCH",
        "/lightning_addresses/sig",
        json={"payer_data": {"auth": {"mandatory": True}, "name": {"mandatory": False}}},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["payer_data"]["auth"] == {"mandatory": True}
    # The command line takes the kind too; its address gets its own k1s.
    cli(server.data_dir, "address", "add", "sig2", "--payer-data", "auth")

    discovered = asyncio.run(lnurl_client.handle(patched.json()["lnurl"]))
    assert isinstance(discovered, lnurl_client.LnurlPayResponse)
    assert discovered.payerData is not None and discovered.payerData.auth is not None
    assert discovered.payerData.auth.mandatory is True
    k1 = discovered.payerData.auth.k1
    assert len(bytes.fromhex(k1)) == 32
    first = _public(server, "/.well-known/lnurlp/sig").json()
    assert first["payerData"]["auth"]["k1"] not in (k1, None)
    other_k1 = _public(server, "/.well-known/lnurlp/sig2").json()["payerData"]["auth"]["k1"]

    linking_key = secrets.token_bytes(32)
    key, sig = lnurl_client.helpers.lnurlauth_signature(k1, linking_key)
    payer_text = json.dumps({"name": "Bob", "auth": {"key": key, "k1": k1, "sig": sig}})
    callback = str(discovered.callback)

    def call(amount: int, payer: str | None) -> requests.Response:
        params: dict[str, Any] = {"amount": amount}
        if payer is not None:
            params["payerdata"] = payer
        return requests.get(callback, params=params, timeout=10)

    def refused(reply: requests.Response, reason: str) -> None:
        assert reply.status_code == 400, reply.text
        body = reply.json()
        assert body["status"] == "ERROR" and reason in body["reason"], body

    refused(call(2000, json.dumps({"name": "Bob"})), "payerdata.auth is mandatory")
    _, stranger_sig = lnurl_client.helpers.lnurlauth_signature(k1, secrets.token_bytes(32))
    forged = {"key": key, "k1": k1, "sig": stranger_sig}
    refused(call(2000, json.dumps({"auth": forged})), "not a valid signature of k1 by key")
    _, other_sig = lnurl_client.helpers.lnurlauth_signature(other_k1, linking_key)
    borrowed = {"key": key, "k1": other_k1, "sig": other_sig}
    refused(call(2000, json.dumps({"auth": borrowed})), "payerdata.auth.k1 is not one")
    unissued = "ab" * 32
    _, unissued_sig = lnurl_client.helpers.lnurlauth_signature(unissued, linking_key)
    refused(
        call(2000, json.dumps({"auth": {"key": key, "k1": unissued, "sig": unissued_sig}})),
        "payerdata.auth.k1 is not one this address issued",
    )
    # None of those refusals, nor an amount out of range, used the k1 up.
    refused(call(0, payer_text), "amount must be")

    reply = call(21_000, payer_text)
    assert reply.status_code == 200, reply.text
    action = lnurl_client.LnurlPayActionResponse(**reply.json())
    invoice = reference.decode(action.pr)
    expected = hashlib.sha256((first["metadata"] + payer_text).encode()).hexdigest()
    assert invoice.description_hash == expected
    stored = server.request("GET", f"/invoices/{invoice.payment_hash}").json()
    assert stored["payer_name"] == "Bob" and stored["lightning_address"] == "sig"
    assert stored["metadata"]["payer_data"]["auth"]["key"] == key

    # Single use: the same signed k1 again is refused.
    refused(call(21_000, payer_text), "it was used or has expired")
    # sig2's k1 still works at sig2.
    reply = requests.get(
        server.url + "/lnurlp/sig2/callback",
        params={"amount": "5000", "payerdata": json.dumps({"auth": borrowed})},
        timeout=10,
    )
    assert reply.status_code == 200, reply.text


def test_admin_crud_over_http_with_a_reason_per_field(server: Server) -> None:
    created = server.request(
        "POST", "/lightning_addresses", json={"username": "carol.pod", "comment_allowed": 0}
    )
    assert created.status_code == 201, created.text
    assert created.json()["keysend_custom_value"] == "carol.pod"

    bad = server.request(
        "POST",
        "/lightning_addresses",
        json={
            "username": "Carol!",
            "min_sendable_msat": 0,
            "comment_allowed": 5000,
            "payer_data": {"phone": {"mandatory": True}},
            "image": "https://example.com/a.png",
            "webhook": "ftp://x",
            "success_message": "x" * 145,
            "surprise": 1,
        },
    )
    assert bad.status_code == 400
    errors = bad.json()["errors"]
    assert set(errors) == {
        "username",
        "min_sendable_msat",
        "comment_allowed",
        "payer_data",
        "image",
        "webhook",
        "success_message",
        "surprise",
    }, errors
    assert "LUD-16" in errors["username"]

    crossed = server.request(
        "POST",
        "/lightning_addresses",
        json={"username": "dave", "min_sendable_msat": 9000, "max_sendable_msat": 8000},
    )
    assert crossed.status_code == 400
    assert crossed.json()["errors"] == {"max_sendable_msat": "must be at least min_sendable_msat"}

    taken = server.request("POST", "/lightning_addresses", json={"username": "carol.pod"})
    assert taken.status_code == 409
    assert taken.json()["errors"] == {"username": "is taken by another address"}
    same_keysend = server.request(
        "POST",
        "/lightning_addresses",
        json={"username": "erin", "keysend_custom_value": "carol.pod"},
    )
    assert same_keysend.status_code == 409
    assert "keysend_custom_value" in same_keysend.json()["errors"]

    patched = server.request(
        "PATCH", "/lightning_addresses/carol.pod", json={"description": "Carol", "image": None}
    )
    assert patched.status_code == 200 and patched.json()["description"] == "Carol"
    low = server.request("PATCH", "/lightning_addresses/carol.pod", json={"max_sendable_msat": 500})
    assert low.status_code == 400
    assert low.json()["errors"] == {
        "max_sendable_msat": "must be at least min_sendable_msat (1000)"
    }
    nulled = server.request("PATCH", "/lightning_addresses/carol.pod", json={"description": None})
    assert nulled.status_code == 400 and nulled.json()["errors"] == {
        "description": "cannot be null"
    }
    assert server.request("PATCH", "/lightning_addresses/zed", json={}).status_code == 404

    names = [a["username"] for a in server.request("GET", "/lightning_addresses").json()]
    assert "carol.pod" in names
    assert server.request("GET", "/lightning_addresses/carol.pod").status_code == 200
    gone = server.request("DELETE", "/lightning_addresses/carol.pod")
    assert gone.status_code == 200 and gone.json()["deleted"] is True
    assert server.request("GET", "/lightning_addresses/carol.pod").status_code == 404
    assert server.request("DELETE", "/lightning_addresses/carol.pod").status_code == 404

    # Managing addresses needs the admin scope.
    reader = cli(server.data_dir, "token", "create", "--scope", "invoices:read").splitlines()[-1]
    assert server.request("GET", "/lightning_addresses", token=reader).status_code == 403
    assert requests.get(server.url + "/lightning_addresses", timeout=10).status_code == 401


def test_the_callback_rate_limit_answers_429_with_its_headers(tmp_path: Path) -> None:
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    args = ("--public-url", public, "--port", str(port), "--rate-limit-callback", "2/minute")
    with Server(tmp_path / "data", *args) as srv:
        made = srv.request("POST", "/lightning_addresses", json={"username": "rl"})
        assert made.status_code == 201
        replies = [_public(srv, "/lnurlp/rl/callback", amount=1000) for _ in range(3)]
        assert [r.status_code for r in replies] == [200, 200, 429]
        assert replies[0].headers["X-RateLimit-Limit"] == "2"
        assert replies[0].headers["X-RateLimit-Remaining"] == "1"
        assert "Retry-After" not in replies[0].headers
        limited = replies[2]
        assert limited.json()["status"] == "ERROR"
        assert limited.headers["Access-Control-Allow-Origin"] == "*"
        assert int(limited.headers["Retry-After"]) > 0
        assert limited.headers["X-RateLimit-Remaining"] == "0"
        assert int(limited.headers["X-RateLimit-Reset"]) > 0
        # Discovery has its own, separate limit.
        assert _public(srv, "/.well-known/lnurlp/rl").status_code == 200


@pytest.mark.parametrize("trust", ["0", "1"])
def test_x_forwarded_for_picks_the_bucket_only_behind_a_trusted_proxy(
    tmp_path: Path, trust: str
) -> None:
    """Without --trust-proxy a client's own X-Forwarded-For is ignored (it
    cannot choose a fresh bucket); with --trust-proxy 1 the address the proxy
    appended is the client's, so two clients behind it have their own."""
    port = free_port()
    args = ("--public-url", f"http://127.0.0.1:{port}", "--port", str(port))
    with Server(
        tmp_path / "data", *args, "--rate-limit", "1/minute", "--trust-proxy", trust
    ) as srv:
        assert srv.request("POST", "/lightning_addresses", json={"username": "px"}).ok
        replies = [
            requests.get(
                srv.url + "/.well-known/lnurlp/px",
                headers={"X-Forwarded-For": f"spoofed, 203.0.113.{n}"},
                timeout=10,
            )
            for n in (1, 2, 1)
        ]
        codes = [r.status_code for r in replies]
        assert codes == ([200, 429, 429] if trust == "0" else [200, 200, 429])
        assert replies[2].json()["status"] == "ERROR" and int(replies[2].headers["Retry-After"]) > 0


def test_ipv6_clients_are_counted_per_64_network(tmp_path: Path) -> None:
    """One IPv6 client holds a whole /64 (every host and VPS is given one), so
    a bucket per address would let it take a fresh one for each request:
    addresses in one /64 share a bucket, another /64 has its own, and an
    IPv4 client written as an IPv4-mapped IPv6 address is that IPv4 client."""
    port = free_port()
    args = ("--public-url", f"http://127.0.0.1:{port}", "--port", str(port))
    with Server(tmp_path / "data", *args, "--rate-limit", "1/minute", "--trust-proxy", "1") as srv:
        assert srv.request("POST", "/lightning_addresses", json={"username": "v6"}).ok

        def status(client: str) -> int:
            reply = requests.get(
                srv.url + "/.well-known/lnurlp/v6", headers={"X-Forwarded-For": client}, timeout=10
            )
            return int(reply.status_code)

        assert status("2001:db8:1:2::1") == 200
        assert status("2001:db8:1:2:ffff::9") == 429  # the same /64
        assert status("2001:db8:1:3::1") == 200  # another /64
        assert status("203.0.113.7") == 200
        assert status("::ffff:203.0.113.7") == 429  # the same IPv4 client


def test_public_routes_name_the_missing_public_url_setting(tmp_path: Path) -> None:
    with Server(tmp_path / "data") as srv:
        assert srv.request("POST", "/lightning_addresses", json={"username": "x"}).ok
        for path in (
            "/.well-known/lnurlp/x",
            "/lnurlp/x/callback?amount=1000",
            "/.well-known/keysend/x",
            "/lnurlp/verify/" + "0" * 64,
        ):
            reply = _public(srv, path)
            assert reply.status_code == 503
            body = reply.json()
            assert body["status"] == "ERROR"
            assert "--public-url (LNPLUGIN_PUBLIC_URL)" in body["reason"]
        shown = srv.request("GET", "/lightning_addresses/x").json()
        assert shown["lightning_address"] is None and shown["lnurl"] is None


def test_the_readme_lnurl_walkthrough_works_as_shown(tmp_path: Path) -> None:
    """The README's ```sh lnurl-walkthrough blocks, run after the main walk-through's
    setup (activate, export, `field`) against a server with `--public-url`,
    print what the README shows (see tests/test_readme_walkthrough.py)."""
    from tests import test_readme_walkthrough as walk

    setup = walk.COMMANDS[:3]
    assert [c.text.split()[0] for c in setup] == [".", "export", "field()"]
    commands = walk.parse_commands(walk.README, "lnurl-walkthrough")
    assert commands, "README.md has no ```sh lnurl-walkthrough blocks"
    port = free_port()
    walked = walk.run_walkthrough(
        tmp_path,
        setup + commands,
        ("--port", str(port), "--public-url", f"http://127.0.0.1:{port}"),
    )
    for n in range(len(walked)):
        walk.test_each_command_works_and_prints_what_the_readme_shows(walked, n)
