"""Nostr Wallet Connect end to end: a real relay process (rust-nostr's local
relay, `tests/nwc_relay.py`), lnplugin as a process with `--nwc-relay`, and as the app the NWC
client in rust-nostr's `nostr-sdk` (requests and responses).

nostr-sdk's client has no notification API and no hold invoice methods
(its `Method` type knows their names, which `get_info` shows, but the client
offers no call), so notifications, the hold invoice requests and the
hand-made duplicate and expired requests go through `Listener`: a plain
websocket subscription on the same relay whose events are built, signed,
encrypted, checked and decrypted by nostr-sdk, not by our code.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import queue
import secrets
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import nostr_sdk as ns
import pytest
from websockets.sync.client import connect

from tests import e2e
from tests.nwc_relay import Relay

tmp = e2e.fixture_tmp


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    """The module's directory under /tmp (short, for the relay and data dirs)."""
    path = Path(tempfile.mkdtemp(dir="/tmp", prefix="nwc-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


WAIT = e2e.WAIT  # a liveness bound, not a timing assertion


relay = e2e.fixture_relay  # a relay process for the module, in `home`


@pytest.fixture(scope="module")
def server(home: Path, relay: Relay) -> Iterator[e2e.Server]:
    with e2e.Server(home / "data", "--nwc-relay", relay.url) as srv:
        yield srv


def connect_app(server: e2e.Server, relay: Relay, *scopes: str, label: str = "app") -> str:
    flags = [arg for scope in scopes for arg in ("--scope", scope)]
    out = e2e.cli(
        server.data_dir, "nwc", "connect", *flags, "--label", label, "--nwc-relay", relay.url
    )
    return out.strip().splitlines()[-1]


def call(uri: str, method: str, *args: Any) -> Any:
    """One NWC call through nostr-sdk's client, the way an app makes it."""

    async def go() -> Any:
        client = ns.NostrWalletConnect(ns.NostrWalletConnectUri.parse(uri))
        return await getattr(client, method)(*args)

    return asyncio.run(go())


def make_invoice(uri: str, msat: int, description: str) -> Any:
    request = ns.MakeInvoiceRequest(
        amount=msat, description=description, description_hash=None, expiry=None
    )
    return call(uri, "make_invoice", request)


def kind(event: ns.Event) -> int:
    return int(event.kind().as_u16())


def auth_event(keys: ns.Keys, relay_url: str, challenge: str) -> str:
    """NIP-42's answer to a relay's challenge, signed by the app's key with nostr-sdk."""
    tags = [ns.Tag.parse(["relay", relay_url]), ns.Tag.parse(["challenge", challenge])]
    builder = ns.EventBuilder(ns.Kind(22242), "").tags(tags)
    return keys.sign_event(builder.finalize_unsigned(keys.public_key())).as_json()


def authenticate(ws: Any, url: str, keys: ns.Keys, wanted: dict[str, Any]) -> list[dict[str, Any]]:
    """`REQ` `wanted` on `ws` as an app does on a relay that may require
    NIP-42: a challenge is answered with `keys`, and a `REQ` closed with
    `auth-required:` is sent again (after the AUTH, which went first).
    Returns the stored events, up to EOSE."""
    ws.send(json.dumps(["REQ", "app", wanted]))
    found = []
    while (msg := json.loads(ws.recv(timeout=WAIT)))[0] != "EOSE":
        if msg[0] == "AUTH":
            ws.send(f'["AUTH",{auth_event(keys, url, msg[1])}]')
        elif msg[0] == "CLOSED" and str(msg[2]).startswith("auth-required:"):
            ws.send(json.dumps(["REQ", "app", wanted]))
        elif msg[0] == "EVENT":
            found.append(msg[2])
    return found


class Listener:
    """Subscribes as the app to its responses (23195) and notifications
    (23197) on the relay; decrypts with nostr-sdk. On a relay that requires
    NIP-42 it answers the challenge, and sends again what was refused."""

    def __init__(self, relay: Relay, uri: str, kinds: tuple[int, ...] = (23195, 23197)) -> None:
        parsed = ns.NostrWalletConnectUri.parse(uri)
        self.keys = ns.Keys(parsed.secret())
        self.service = parsed.public_key()
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._stash: list[dict[str, Any]] = []
        self._stack = contextlib.ExitStack()
        self._ws = self._stack.enter_context(connect(relay.url))
        self._url = relay.url
        self._sent: dict[str, str] = {}  # event id -> JSON, to send again after AUTH
        app = self.keys.public_key().to_hex()
        authenticate(self._ws, relay.url, self.keys, {"kinds": list(kinds), "#p": [app]})
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for raw in self._ws:
                msg = json.loads(raw)
                if msg[0] == "AUTH":
                    self._ws.send(f'["AUTH",{auth_event(self.keys, self._url, msg[1])}]')
                elif msg[0] == "OK" and str(msg[3]).startswith("auth-required:"):
                    self._ws.send(f'["EVENT",{self._sent[msg[1]]}]')  # the AUTH went first
                if msg[0] != "EVENT":
                    continue
                event = ns.Event.from_json(json.dumps(msg[2]))
                assert event.verify() and event.author().to_hex() == self.service.to_hex()
                tags = {t.to_vec()[0]: t.to_vec()[1] for t in event.tags()}
                nip44 = kind(event) == 23197 or tags.get("encryption") == "nip44_v2"
                decrypt = self.keys.nip44_decrypt if nip44 else self.keys.nip04_decrypt
                body = json.loads(decrypt(self.service, event.content()))
                self.events.put(
                    {
                        "id": event.id().to_hex(),
                        "kind": event.kind().as_u16(),
                        "e": tags.get("e"),
                        "body": body,
                    }
                )
        except Exception:  # the socket closed at the end of the test
            return

    def next(self, kind: int) -> dict[str, Any]:
        """The next event of `kind`; events of other kinds that arrive first
        are kept for their own `next` (a notification may overtake a response)."""
        for i, event in enumerate(self._stash):
            if event["kind"] == kind:
                return self._stash.pop(i)
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                event = self.events.get(timeout=0.2)
            except queue.Empty:
                continue
            if event["kind"] == kind:
                return event
            self._stash.append(event)
        raise AssertionError(f"no kind {kind} event arrived")

    def next_any(self, kinds: tuple[int, ...]) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                event = self.events.get(timeout=0.2)
            except queue.Empty:
                continue
            if event["kind"] in kinds:
                return event
        raise AssertionError(f"no event of kinds {kinds} arrived")

    def request(self, method: str, params: dict[str, Any], extra: Sequence[list[str]] = ()) -> str:
        """Publish a request by hand; returns its event JSON (to send again)."""
        content = self.keys.nip44_encrypt(
            self.service, json.dumps({"method": method, "params": params})
        )
        tags = [["p", self.service.to_hex()], ["encryption", "nip44_v2"], *extra]
        builder = ns.EventBuilder(ns.Kind(23194), content).tags([ns.Tag.parse(t) for t in tags])
        event = self.keys.sign_event(builder.finalize_unsigned(self.keys.public_key()))
        return event.as_json()

    def request_nip04(self, method: str, params: dict[str, Any]) -> str:
        """A request as an older app sends it: NIP-04, no `encryption` tag."""
        content = self.keys.nip04_encrypt(
            self.service, json.dumps({"method": method, "params": params})
        )
        tags = [["p", self.service.to_hex()]]
        builder = ns.EventBuilder(ns.Kind(23194), content).tags([ns.Tag.parse(t) for t in tags])
        event = self.keys.sign_event(builder.finalize_unsigned(self.keys.public_key()))
        return event.as_json()

    def send(self, event_json: str) -> None:
        self._sent[json.loads(event_json)["id"]] = event_json
        self._ws.send(f'["EVENT",{event_json}]')

    def answer_to(self, request_json: str) -> dict[str, Any]:
        """The response to one request (others that arrive first are skipped)."""
        wanted = json.loads(request_json)["id"]
        while True:
            event = self.next(23195)
            if event["e"] == wanted:
                return event

    def ask(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """One request made by hand, for methods nostr-sdk's client lacks."""
        request = self.request(method, params)
        self.send(request)
        return self.answer_to(request)["body"]

    def close(self) -> None:
        self._stack.close()


def nwc_invoices(server: e2e.Server) -> int:
    return int(e2e.scalar(server.data_dir, "SELECT COUNT(*) FROM invoices WHERE source = 'nwc'")[0])


def test_an_app_makes_an_invoice_hears_it_paid_looks_it_up_and_lists_it(
    server: e2e.Server, relay: Relay
) -> None:
    uri = connect_app(server, relay, "invoices:create", "invoices:read")
    info = call(uri, "get_info")
    assert info.network == "regtest"
    assert {str(m).split(".")[-1].rstrip("()") for m in info.methods} == {
        "GET_INFO",
        "MAKE_INVOICE",
        "LOOKUP_INVOICE",
        "LIST_TRANSACTIONS",
        "MAKE_HOLD_INVOICE",  # the dev node can hold invoices
        "SETTLE_HOLD_INVOICE",
        "CANCEL_HOLD_INVOICE",
    }
    listener = Listener(relay, uri)
    try:
        made = make_invoice(uri, 21_000, "coffee")
        assert made.amount == 21_000 and made.invoice.startswith("lnbcrt")
        e2e.cli(server.data_dir, "dev", "pay", made.payment_hash)
        note = listener.next(23197)["body"]
        assert note["notification_type"] == "payment_received"
        paid = note["notification"]
        assert (paid["payment_hash"], paid["amount"], paid["state"]) == (
            made.payment_hash,
            21_000,
            "settled",
        )
        assert paid["preimage"] and paid["settled_at"] >= paid["created_at"]
    finally:
        listener.close()
    found = call(
        uri, "lookup_invoice", ns.LookupInvoiceRequest(payment_hash=made.payment_hash, invoice=None)
    )
    assert found.amount == 21_000 and found.preimage == paid["preimage"]
    by_bolt11 = call(
        uri, "lookup_invoice", ns.LookupInvoiceRequest(payment_hash=None, invoice=made.invoice)
    )
    assert by_bolt11.payment_hash == made.payment_hash
    listed = call(
        uri,
        "list_transactions",
        ns.ListTransactionsRequest(
            _from=None, until=None, limit=None, offset=None, unpaid=None, transaction_type=None
        ),
    )
    assert made.payment_hash in [t.payment_hash for t in listed]


def test_get_info_names_bitcoin_mainnet_as_nip47_does(home: Path, relay: Relay) -> None:
    """NIP-47's `network` is one of mainnet, testnet, signet and regtest; on
    bitcoin lnplugin said `bitcoin`, which an app checking for `mainnet`
    (to warn of a test wallet) took for something else."""
    with e2e.Server(home / "mainnet", "--nwc-relay", relay.url, "--network", "bitcoin") as srv:
        uri = connect_app(srv, relay, "invoices:read", label="mainnet app")
        assert call(uri, "get_info").network == "mainnet"


def test_relay_credentials_in_its_url_reach_no_log_and_no_status(home: Path, relay: Relay) -> None:
    secret_url = relay.url.replace("ws://", "ws://relayuser:RELAYPASS@") + "/?auth=RELAYTOKEN"
    env = {"LNPLUGIN_LOG_LEVEL": "debug"}
    with e2e.Server(home / "creds", "--nwc-relay", secret_url, env=env) as srv:
        state = e2e.wait_for(
            lambda: (
                (h := srv.request("GET", "/health").json())["nwc"]["relays"][0]["state"]
                == "connected"
                and h
            ),
            "the relay to connect",
        )
        shown = [srv.request("GET", "/health").text, srv.request("GET", "/info").text]
        assert state["nwc"]["relays"][0]["url"] == relay.url + "/"
    log = srv.stderr_text()
    assert "connected" in log  # the log does name the relay
    for text in (*shown, log):
        assert "RELAYPASS" not in text and "RELAYTOKEN" not in text


def test_list_transactions_honours_every_filter(server: e2e.Server, relay: Relay) -> None:
    uri = connect_app(server, relay, "invoices:create", "invoices:read", label="lister")
    start = int(time.time())
    hashes = [make_invoice(uri, 1000 * (i + 1), f"item {i}").payment_hash for i in range(3)]
    for h in hashes[:2]:
        e2e.cli(server.data_dir, "dev", "pay", h)

    def listing(**kw: Any) -> list[str]:
        args = {
            "_from": None,
            "until": None,
            "limit": None,
            "offset": None,
            "unpaid": None,
            "transaction_type": None,
            **kw,
        }
        return [
            t.payment_hash
            for t in call(uri, "list_transactions", ns.ListTransactionsRequest(**args))
        ]

    since = ns.Timestamp.from_secs(start)
    assert set(listing(_from=since)) == set(hashes[:2])  # settled only by default
    assert set(listing(_from=since, unpaid=True)) == set(hashes)
    assert listing(_from=since, unpaid=True, limit=1) == [hashes[2]]  # newest first
    assert listing(_from=since, unpaid=True, limit=1, offset=1) == [hashes[1]]
    assert listing(_from=ns.Timestamp.from_secs(start + 3600)) == []
    assert hashes[0] not in listing(until=ns.Timestamp.from_secs(start - 1), unpaid=True)
    assert set(listing(_from=since, transaction_type=ns.TransactionType.INCOMING)) == set(
        hashes[:2]
    )
    with pytest.raises(Exception, match=r"(?i)restricted"):  # no transactions:read
        listing(transaction_type=ns.TransactionType.OUTGOING)


def test_a_page_of_large_transactions_is_answered_cut_to_one_message(
    server: e2e.Server, relay: Relay
) -> None:
    """Twenty invoices with long descriptions and metadata near NIP-47's 4096
    characters are well over the 65,535 bytes one NIP-44 message holds: the
    page NIP-47 recommends (20) got no answer at all, so the app timed out.
    Now the page is cut to what fits, and paging on from `offset` plus what
    came back lists every one of them, once, newest first."""
    uri = connect_app(server, relay, "invoices:create", "invoices:read", label="big pages")
    start = int(time.time())
    app = Listener(relay, uri)
    try:
        made = []
        for i in range(20):
            params = {
                "amount": 1000 + i,
                "description": f"{i} " + "d" * 600,
                "metadata": {"comment": f"{i} " + "c" * 3900},
            }
            made.append(app.ask("make_invoice", params)["result"]["payment_hash"])
    finally:
        app.close()

    def page(offset: int) -> list[str]:
        request = ns.ListTransactionsRequest(
            _from=ns.Timestamp.from_secs(start),
            until=None,
            limit=20,
            offset=offset,
            unpaid=True,
            transaction_type=None,
        )
        return [t.payment_hash for t in call(uri, "list_transactions", request)]

    first = page(0)
    assert 0 < len(first) < 20
    listed = list(first)
    while len(listed) < 20:
        more = page(len(listed))
        assert more, "a page came back empty before every invoice was listed"
        listed += more
    assert listed == made[::-1]
    assert page(20) == []


def _boost_heard(
    server: e2e.Server, relay: Relay, uri: str, amount_msat: int, *records: str
) -> dict[str, Any]:
    """A dev-node keysend with `records` (TYPE=VALUE), and the app's
    `payment_received` notification of it."""
    listener = Listener(relay, uri)
    try:
        flags = [arg for record in records for arg in ("--record", record)]
        e2e.cli(server.data_dir, "dev", "keysend", "--amount-msat", str(amount_msat), *flags)
        return listener.next(23197)["body"]["notification"]
    finally:
        listener.close()


def test_a_keysend_boostagram_arrives_in_the_notification_metadata(
    server: e2e.Server, relay: Relay
) -> None:
    uri = connect_app(server, relay, "invoices:read", label="podcast app")
    paid = _boost_heard(
        server, relay, uri, 5000, '7629169={"podcast":"Pod","message":"great show"}', "34349334=hi"
    )
    assert paid["amount"] == 5000
    assert paid["metadata"]["boostagram"] == {"podcast": "Pod", "message": "great show"}
    types = {r["type"] for r in paid["metadata"]["tlv_records"]}
    assert types == {7629169, 34349334}


def test_a_long_boostagram_is_not_lost_from_the_metadata(server: e2e.Server, relay: Relay) -> None:
    """A boostagram record of ~1,400 bytes (a message of a few hundred words)
    is over 4096 characters once it is in the metadata twice, parsed and as
    hex in `tlv_records`: the podcast app got `metadata: {}`, no boostagram,
    no chat message. The parsed copy gives way first; the records stay."""
    boost = {"podcast": "Pod", "feedID": 42, "action": "boost", "message": "great show " * 120}
    record = json.dumps(boost, separators=(",", ":"))
    uri = connect_app(server, relay, "invoices:read", label="long boost")
    meta = _boost_heard(server, relay, uri, 21000, f"7629169={record}", "34349334=thanks")[
        "metadata"
    ]
    assert len(json.dumps(meta, separators=(",", ":"))) <= 4096
    assert {r["type"]: bytes.fromhex(r["value"]) for r in meta["tlv_records"]} == {
        7629169: record.encode(),
        34349334: b"thanks",
    }


def test_a_lightning_address_payment_names_the_address_its_comment_and_payer(
    home: Path, relay: Relay
) -> None:
    """NIP-47's `recipient_data.identifier` is "the lightning address of the
    recipient"; the app got the bare username (`pod`), not `pod@domain`."""
    public = "https://pod.example.com"
    with e2e.Server(home / "address", "--nwc-relay", relay.url, "--public-url", public) as srv:
        e2e.cli(
            srv.data_dir, "address", "add", "pod", "--payer-data", "name", "--public-url", public
        )
        uri = connect_app(srv, relay, "invoices:read", label="address app")
        listener = Listener(relay, uri)
        try:
            paid = srv.request(
                "GET",
                "/lnurlp/pod/callback",
                params={"amount": 21000, "comment": "love the show", "payerdata": '{"name":"Ann"}'},
            )
            assert paid.status_code == 200, paid.text
            e2e.cli(srv.data_dir, "dev", "pay", paid.json()["pr"])
            meta = listener.next(23197)["body"]["notification"]["metadata"]
        finally:
            listener.close()
    assert meta["recipient_data"] == {"identifier": "pod@pod.example.com"}
    assert meta["comment"] == "love the show" and meta["payer_data"] == {"name": "Ann"}
    assert "payerdata" not in meta  # the payer once, under NIP-47's key


def test_a_request_delivered_by_two_relays_mints_once_and_gets_one_answer(
    home: Path, relay: Relay
) -> None:
    second = Relay(home / "relay2").start()
    try:
        with e2e.Server(home / "two", "--nwc-relay", relay.url, "--nwc-relay", second.url) as srv:
            e2e.wait_for(
                lambda: all(
                    r["state"] == "connected"
                    for r in srv.request("GET", "/info").json()["nwc"]["relays"]
                ),
                "both relays",
            )
            uri = connect_app(srv, relay, "invoices:create", label="twice")
            on_first, on_second = Listener(relay, uri), Listener(second, uri)
            try:
                request = on_first.request("make_invoice", {"amount": 3000, "description": "once"})
                on_first.send(request)
                on_second.send(request)  # the same event through the other relay
                answers = [on_first.next(23195), on_second.next(23195)]
            finally:
                on_first.close()
                on_second.close()
            minted = e2e.scalar(srv.data_dir, "SELECT COUNT(*) FROM invoices WHERE source = 'nwc'")
    finally:
        second.kill()
    assert answers[0]["body"]["result"]["amount"] == 3000
    assert answers[0]["id"] == answers[1]["id"] and answers[0]["body"] == answers[1]["body"]
    assert minted[0] == 1


def test_an_expired_request_is_ignored_and_mints_nothing(server: e2e.Server, relay: Relay) -> None:
    uri = connect_app(server, relay, "invoices:create", label="late")
    listener = Listener(relay, uri)
    try:
        before = nwc_invoices(server)
        expired = listener.request(
            "make_invoice", {"amount": 4000}, [["expiration", str(int(time.time()) - 5)]]
        )
        listener.send(expired)
        # Requests are answered in arrival order on one thread: once the
        # next one is answered, the expired one was seen and ignored.
        listener.send(listener.request("get_info", {}))
        answer = listener.next(23195)
    finally:
        listener.close()
    assert answer["body"]["result_type"] == "get_info"
    assert answer["e"] != json.loads(expired)["id"]
    assert nwc_invoices(server) == before


def test_an_app_whose_clock_is_minutes_slow_is_heard(home: Path, relay: Relay) -> None:
    """Relays apply a subscription's `since` to live events too (NIP-01), and
    lnplugin subscribed from two minutes before its last answer: a request
    from a phone whose clock is ten minutes slow never reached it, though
    lnplugin takes requests dated up to days back. Now up to an hour back
    (`CLOCK_SKEW`, the hour it takes ahead) gets through."""
    with e2e.Server(home / "slow", "--nwc-relay", relay.url) as srv:
        uri = connect_app(srv, relay, "invoices:read", label="slow clock")
        app = Listener(relay, uri)
        try:
            content = app.keys.nip44_encrypt(
                app.service, json.dumps({"method": "get_info", "params": {}})
            )
            tags = [["p", app.service.to_hex()], ["encryption", "nip44_v2"]]
            builder = (
                ns.EventBuilder(ns.Kind(23194), content)
                .tags([ns.Tag.parse(t) for t in tags])
                .custom_created_at(ns.Timestamp.from_secs(int(time.time()) - 600))
            )
            request = app.keys.sign_event(builder.finalize_unsigned(app.keys.public_key()))
            app.send(request.as_json())
            answer = app.answer_to(request.as_json())["body"]
        finally:
            app.close()
    assert answer["result_type"] == "get_info" and answer["error"] is None


def test_a_revoked_connection_is_unauthorized_and_others_keep_working(
    server: e2e.Server, relay: Relay
) -> None:
    kept = connect_app(server, relay, "invoices:read", label="kept")
    gone = connect_app(server, relay, "invoices:create", label="gone")
    gone_id = e2e.cli(server.data_dir, "nwc", "list").strip().splitlines()[-1].split("\t")[0]
    e2e.cli(server.data_dir, "nwc", "revoke", gone_id)
    before = nwc_invoices(server)
    with pytest.raises(Exception, match=r"(?i)unauthorized"):
        make_invoice(gone, 1000, "nope")
    assert nwc_invoices(server) == before
    assert call(kept, "get_info").network == "regtest"


def test_unknown_scopes_and_methods_lnplugin_does_not_offer_are_refused(
    server: e2e.Server, relay: Relay
) -> None:
    proc = e2e.run(server.data_dir, "nwc", "connect", "--scope", "admin", "--nwc-relay", relay.url)
    assert proc.returncode != 0 and "unknown scope admin" in proc.stderr
    uri = connect_app(server, relay, "invoices:read", label="payer")
    with pytest.raises(Exception, match=r"(?i)not_?implemented"):
        call(uri, "get_balance")
    with pytest.raises(Exception, match=r"(?i)restricted"):
        make_invoice(uri, 1000, "not allowed")


def _restart(server: e2e.Server, relay: Relay) -> None:
    """Kill the relay, see lnplugin notice, start it again, see it reconnect."""

    def relay_state() -> dict[str, Any]:
        return server.request("GET", "/info").json()["nwc"]["relays"][0]

    connects = relay_state()["connects"]
    relay.kill()
    e2e.wait_for(lambda: relay_state()["state"] != "connected", "the drop to be noticed")
    relay.start()
    e2e.wait_for(lambda: relay_state()["connects"] > connects, "a reconnect")


def test_the_relay_killed_and_restarted_is_reconnected(server: e2e.Server, relay: Relay) -> None:
    uri = connect_app(server, relay, "invoices:create", label="restart")

    _restart(server, relay)
    assert make_invoice(uri, 2000, "after restart").amount == 2000


def test_a_relay_restart_republishes_info_events_of_live_connections_only(
    server: e2e.Server, relay: Relay
) -> None:
    """The relay forgot every event in its restart; lnplugin publishes the
    info events again on reconnecting, but not revoked connections': it sent
    one per connection ever made on each reconnect, which apps that come and
    go grew until the relay turned the burst away every time."""
    kept = connect_app(server, relay, "invoices:create", label="stays")
    revoked = [connect_app(server, relay, "invoices:read", label=f"leaves {i}") for i in range(3)]
    for line in e2e.cli(server.data_dir, "nwc", "list").strip().splitlines():
        if line.split("\t")[2].startswith("leaves"):
            e2e.cli(server.data_dir, "nwc", "revoke", line.split("\t")[0])
    wallet = [ns.NostrWalletConnectUri.parse(u).public_key().to_hex() for u in (kept, *revoked)]

    _restart(server, relay)
    # One batch, sent together: once the live key's is there, the rest went with it.
    e2e.wait_for(lambda: info_of(relay, wallet[0]), "the live connection's info event")
    assert [info_of(relay, key) for key in wallet[1:]] == [None, None, None]
    with pytest.raises(Exception, match=r"(?i)unauthorized"):
        call(revoked[0], "get_info")  # still listened on, so its app is told
    assert make_invoice(kept, 2000, "after restart").amount == 2000


def test_a_payment_while_lnplugin_is_down_is_notified_after_its_restart(
    tmp: Path, relay: Relay
) -> None:
    data = tmp / "killed"
    srv = e2e.Server(data, "--nwc-relay", relay.url).start()
    uri = connect_app(srv, relay, "invoices:create", "invoices:read", label="kill")
    made = make_invoice(uri, 7000, "across a crash")
    srv.stop(signal.SIGKILL)
    listener = Listener(relay, uri)
    try:
        e2e.cli(data, "dev", "pay", made.payment_hash)  # settles on the dev node alone
        with e2e.Server(data, "--nwc-relay", relay.url) as again:
            paid = listener.next(23197)["body"]["notification"]
            backlog = e2e.wait_for(
                lambda: again.health()["nwc"]["notification_backlog"] == 0 or None,
                "the backlog to drain",
            )
    finally:
        listener.close()
    assert paid["payment_hash"] == made.payment_hash and backlog


def test_the_admin_route_makes_lists_and_revokes_connections(
    server: e2e.Server, relay: Relay
) -> None:
    made = server.request(
        "POST", "/nwc/connections", json={"scopes": ["invoices:read"], "label": "dashboard"}
    )
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["uri"].startswith("nostr+walletconnect://") and body["scopes"] == ["invoices:read"]
    uri = ns.NostrWalletConnectUri.parse(body["uri"])
    assert body["wallet_pubkey"] == uri.public_key().to_hex()
    assert call(body["uri"], "get_info").network == "regtest"
    listed = server.request("GET", "/nwc/connections").json()
    mine = [c for c in listed if c["id"] == body["id"]]
    assert mine and "uri" not in mine[0]
    stored = e2e.scalar(server.data_dir, "SELECT * FROM nwc_connections WHERE id = ?", body["id"])
    secret = body["uri"].rsplit("secret=", 1)[1]
    assert secret not in json.dumps(list(stored))  # only the public key is kept
    bad = server.request("POST", "/nwc/connections", json={"scopes": ["admin"]})
    assert bad.status_code == 400 and "scopes" in json.dumps(bad.json())
    gone = server.request("DELETE", f"/nwc/connections/{body['id']}")
    assert gone.status_code == 200 and gone.json()["revoked_at"]
    assert server.request("DELETE", f"/nwc/connections/{body['id']}").status_code == 404
    with pytest.raises(Exception, match=r"(?i)unauthorized"):
        call(body["uri"], "get_info")


def test_the_readme_nwc_walkthrough_works_as_shown(tmp_path: Path, relay: Relay) -> None:
    """The README's ```sh nwc-walkthrough blocks, after the main walk-through's
    setup, against a server with `--nwc-relay` (see tests/test_readme_walkthrough.py)."""
    from tests import test_readme_walkthrough as walk

    setup = walk.COMMANDS[:3]
    assert [c.text.split()[0] for c in setup] == [".", "export", "field()"]
    commands = walk.parse_commands(walk.README, "nwc-walkthrough")
    assert commands, "README.md has no ```sh nwc-walkthrough blocks"
    walked = walk.run_walkthrough(tmp_path, setup + commands, ("--nwc-relay", relay.url))
    for n in range(len(walked)):
        walk.test_each_command_works_and_prints_what_the_readme_shows(walked, n)


# -- hold invoices (NIP-47 make/settle/cancel_hold_invoice, hold_invoice_accepted) --


def hold_pair() -> tuple[str, str]:
    preimage = secrets.token_bytes(32)
    return preimage.hex(), hashlib.sha256(preimage).hexdigest()


def info_event(relay: Relay, uri: str) -> ns.Event:
    """The wallet's kind 13194 info event, as the relay keeps it."""
    event = info_of(relay, ns.NostrWalletConnectUri.parse(uri).public_key().to_hex())
    assert event is not None, "the relay has no info event"
    return event


def info_of(relay: Relay, wallet_key: str) -> ns.Event | None:
    """The info event of one wallet key, or None when the relay has none (yet)."""
    with connect(relay.url) as ws:
        ws.send(json.dumps(["REQ", "info", {"kinds": [13194], "authors": [wallet_key]}]))
        while (msg := json.loads(ws.recv(timeout=WAIT)))[0] != "EVENT":
            if msg[0] == "EOSE":
                return None
    event = ns.Event.from_json(json.dumps(msg[2]))
    assert event.verify()
    return event


def test_each_connections_info_event_offers_what_its_scopes_allow(
    server: e2e.Server, relay: Relay
) -> None:
    """Each connection has its own wallet key, so its info event can say what
    it may do: a create-only connection's listed `lookup_invoice` and
    `notifications` (none ever came), a read-only one's `make_invoice` (only
    ever RESTRICTED). What Alby's SDK reads as the wallet's capabilities."""
    create_only = connect_app(server, relay, "invoices:create", label="till")
    read_only = connect_app(server, relay, "invoices:read", label="ledger")

    def offer(uri: str) -> tuple[list[str], dict[str, str]]:
        event = info_event(relay, uri)
        return event.content().split(), {t.to_vec()[0]: t.to_vec()[1] for t in event.tags()}

    hold = ["make_hold_invoice", "settle_hold_invoice", "cancel_hold_invoice"]
    wanted = ["get_info", "make_invoice", *hold]
    _, tags = e2e.wait_for(
        lambda: got if (got := offer(create_only))[0] == wanted else None, "the scoped info event"
    )
    assert "notifications" not in tags and tags["encryption"] == "nip44_v2 nip04"
    wanted = ["get_info", "lookup_invoice", "list_transactions", "notifications"]
    _, tags = e2e.wait_for(
        lambda: got if (got := offer(read_only))[0] == wanted else None, "the scoped info event"
    )
    assert tags["notifications"] == "payment_received hold_invoice_accepted"
    # get_info says the same as the info event.
    assert [str(m) for m in call(read_only, "get_info").methods] == [
        "Method.GET_INFO()",
        "Method.LOOKUP_INVOICE()",
        "Method.LIST_TRANSACTIONS()",
    ]


def test_an_app_makes_a_hold_invoice_hears_it_held_and_settles_it(
    server: e2e.Server, relay: Relay
) -> None:
    uri = connect_app(server, relay, "invoices:create", "invoices:read", label="escrow")
    info = info_event(relay, uri)
    assert {"make_hold_invoice", "settle_hold_invoice", "cancel_hold_invoice"} <= set(
        info.content().split()
    )
    tags = {t.to_vec()[0]: t.to_vec()[1:] for t in info.tags()}
    assert tags["notifications"] == ["payment_received hold_invoice_accepted"]
    preimage, payment_hash = hold_pair()
    listener = Listener(relay, uri)
    try:
        made = listener.ask(
            "make_hold_invoice",
            {"amount": 42_000, "payment_hash": payment_hash, "description": "escrow"},
        )
        assert made["error"] is None and made["result_type"] == "make_hold_invoice"
        invoice = made["result"]["invoice"]
        assert made["result"]["payment_hash"] == payment_hash and invoice.startswith("lnbcrt")
        paid = json.loads(e2e.cli(server.data_dir, "dev", "pay", invoice))
        assert paid["state"] == "ACCEPTED"
        note = listener.next(23197)["body"]
        assert note["notification_type"] == "hold_invoice_accepted"
        held = note["notification"]
        assert (held["payment_hash"], held["amount"], held["state"]) == (
            payment_hash,
            42_000,
            "accepted",
        )
        assert held["settle_deadline"] > 0 and held["invoice"] == invoice
        assert "preimage" not in held

        wrong, _ = hold_pair()
        refused = listener.ask("settle_hold_invoice", {"preimage": wrong})
        assert refused["error"]["code"] == "NOT_FOUND"
        settled = listener.ask("settle_hold_invoice", {"preimage": preimage})
        assert settled == {"result_type": "settle_hold_invoice", "error": None, "result": {}}
        received = listener.next(23197)["body"]
        assert received["notification_type"] == "payment_received"
        assert received["notification"]["preimage"] == preimage
    finally:
        listener.close()
    found = call(
        uri, "lookup_invoice", ns.LookupInvoiceRequest(payment_hash=payment_hash, invoice=None)
    )
    assert found.amount == 42_000 and found.preimage == preimage
    assert e2e.scalar(
        server.data_dir, "SELECT state FROM invoices WHERE payment_hash = ?", payment_hash
    ) == ("SETTLED",)


def test_a_held_payment_shows_the_amount_held_in_lookups_as_in_its_notification(
    server: e2e.Server, relay: Relay
) -> None:
    """`hold_invoice_accepted` carried the amount held, but `lookup_invoice`
    and `list_transactions` the amount asked until settlement: `0` for an
    any-amount hold invoice. An app deciding from a lookup (after a missed
    notification, as docs/nwc.md advises) saw nothing paid, or too little."""
    uri = connect_app(server, relay, "invoices:create", "invoices:read", label="tips held")
    start = int(time.time())
    listener = Listener(relay, uri)
    try:
        held = {}
        for asked, paid in ((0, 5000), (2000, 2500)):
            _, payment_hash = hold_pair()
            made = listener.ask(
                "make_hold_invoice", {"amount": asked, "payment_hash": payment_hash}
            )
            assert made["error"] is None, made
            e2e.cli(server.data_dir, "dev", "pay", payment_hash, "--amount-msat", str(paid))
            note = listener.next(23197)["body"]
            assert note["notification_type"] == "hold_invoice_accepted"
            assert note["notification"]["amount"] == paid
            found = listener.ask("lookup_invoice", {"payment_hash": payment_hash})["result"]
            assert (found["state"], found["amount"]) == ("accepted", paid)
            held[payment_hash] = paid
        listed = listener.ask("list_transactions", {"from": start, "unpaid": True})["result"]
    finally:
        listener.close()
    # (the module's other tests share the server: only this test's invoices)
    amounts = {t["payment_hash"]: t["amount"] for t in listed["transactions"]}
    assert {h: a for h, a in amounts.items() if h in held} == held


def test_an_app_cancels_a_held_hold_invoice_and_an_unknown_hash_is_not_found(
    server: e2e.Server, relay: Relay
) -> None:
    uri = connect_app(server, relay, "invoices:create", "invoices:read", label="refund")
    preimage, payment_hash = hold_pair()
    listener = Listener(relay, uri)
    try:
        made = listener.ask("make_hold_invoice", {"amount": 9000, "payment_hash": payment_hash})
        assert made["error"] is None
        e2e.cli(server.data_dir, "dev", "pay", payment_hash)
        assert listener.next(23197)["body"]["notification_type"] == "hold_invoice_accepted"
        canceled = listener.ask("cancel_hold_invoice", {"payment_hash": payment_hash})
        assert canceled == {"result_type": "cancel_hold_invoice", "error": None, "result": {}}
        late = listener.ask("settle_hold_invoice", {"preimage": preimage})
        assert late["error"]["code"] == "OTHER"
        unknown = listener.ask("cancel_hold_invoice", {"payment_hash": "cd" * 32})
        assert unknown["error"]["code"] == "NOT_FOUND"
    finally:
        listener.close()
    found = call(
        uri, "lookup_invoice", ns.LookupInvoiceRequest(payment_hash=payment_hash, invoice=None)
    )
    assert found.state == ns.TransactionState.FAILED and found.preimage is None
    assert e2e.scalar(
        server.data_dir,
        "SELECT state, cancel_reason FROM invoices WHERE payment_hash = ?",
        payment_hash,
    ) == ("CANCELED", "canceled through Nostr Wallet Connect")
    # The node refuses a payment after the cancel.
    again = e2e.run(server.data_dir, "dev", "pay", payment_hash)
    assert again.returncode != 0


def test_a_make_hold_invoice_delivered_twice_mints_once_and_gets_the_same_answer(
    server: e2e.Server, relay: Relay
) -> None:
    uri = connect_app(server, relay, "invoices:create", label="hold twice")
    _, payment_hash = hold_pair()
    listener = Listener(relay, uri)
    try:
        request = listener.request(
            "make_hold_invoice", {"amount": 3000, "payment_hash": payment_hash}
        )
        listener.send(request)
        first = listener.answer_to(request)
        listener.send(request)  # the relay hands it over again
        # Requests are answered in arrival order on one thread: once the
        # next one is answered, the repeat was seen.
        sentinel = listener.request("get_info", {})
        listener.send(sentinel)
        answers = [first]
        while (event := listener.next(23195))["e"] != json.loads(sentinel)["id"]:
            answers.append(event)
    finally:
        listener.close()
    assert first["body"]["result"]["payment_hash"] == payment_hash
    assert all(a["id"] == first["id"] and a["body"] == first["body"] for a in answers)
    assert e2e.scalar(
        server.data_dir, "SELECT COUNT(*) FROM invoices WHERE payment_hash = ?", payment_hash
    ) == (1,)


def test_a_hold_accepted_while_lnplugin_is_down_is_notified_after_its_restart(
    tmp: Path, relay: Relay
) -> None:
    data = tmp / "held"
    srv = e2e.Server(data, "--nwc-relay", relay.url).start()
    uri = connect_app(srv, relay, "invoices:create", "invoices:read", label="held across a crash")
    preimage, payment_hash = hold_pair()
    listener = Listener(relay, uri)
    try:
        assert (
            listener.ask("make_hold_invoice", {"amount": 6000, "payment_hash": payment_hash})[
                "error"
            ]
            is None
        )
        srv.stop(signal.SIGKILL)
        e2e.cli(data, "dev", "pay", payment_hash)  # held on the dev node alone
        with e2e.Server(data, "--nwc-relay", relay.url):
            note = listener.next(23197)["body"]
            assert note["notification_type"] == "hold_invoice_accepted"
            assert note["notification"]["payment_hash"] == payment_hash
            settled = listener.ask("settle_hold_invoice", {"preimage": preimage})
            assert settled["error"] is None
            assert listener.next(23197)["body"]["notification_type"] == "payment_received"
    finally:
        listener.close()


def test_connections_made_in_a_burst_each_get_a_wallet_key_that_answers(
    server: e2e.Server, relay: Relay
) -> None:
    """Each connection has its own wallet key. More connections made at once
    (by another process, as `lnplugin nwc connect` is) than the server keeps
    spare keys for: those past the spares get fresh keys, which the running
    server subscribes to (a new REQ on the same relay connection) and
    publishes an info event for within its key poll."""
    from lnplugin.nwc.connections import connect as make
    from lnplugin.store import Store
    from lnplugin.store import nwc as db

    store = Store(server.data_dir / "lnplugin.sqlite")
    try:
        uris = [
            make(store, ["invoices:create"], f"burst {i}", [relay.url])[1]
            for i in range(db.SPARES + 2)
        ]
        wallets = [ns.NostrWalletConnectUri.parse(u).public_key().to_hex() for u in uris]
        shared = server.request("GET", "/health").json()["nwc"]["pubkey"]
        assert len({*wallets, shared}) == len(uris) + 1
        first = Listener(relay, uris[0])  # a spare key: heard at once
        try:
            assert first.ask("get_info", {})["result"]["methods"][0] == "get_info"
        finally:
            first.close()
        e2e.wait_for(lambda: info_of(relay, wallets[-1]), "the new key's info event")
        assert make_invoice(uris[-1], 3000, "a fresh wallet key").amount == 3000
        # Spares again for the next connection, each listened on already.
        e2e.wait_for(lambda: db.spare_count(store.conn) == db.SPARES, "the spares to be made")
        revoked = db.revoked_keys(store.conn, 0)  # by earlier tests: not announced again
        for pubkey, _ in db.wallet_keys(store.conn):
            assert pubkey in revoked or info_of(relay, pubkey) is not None
    finally:
        store.close()


# Requests an app may send with a parameter of the wrong type or out of
# range: each is answered with NIP-47's `OTHER` and a message naming the
# parameter, never `INTERNAL` (which tells the app the wallet broke) and
# never with an invoice.
BAD_PARAMS: list[tuple[str, dict[str, Any], str]] = [
    ("make_invoice", {"amount": "1000"}, "amount"),
    ("make_invoice", {"amount": 10**20}, "amount"),
    ("make_invoice", {"amount": 1000, "expiry": True}, "expiry"),
    ("make_invoice", {"amount": 1000, "expiry": -5}, "expiry"),
    ("make_invoice", {"amount": 1000, "description": 5}, "description"),
    ("make_invoice", {"amount": 1000, "description": "a" * 640}, "description"),
    ("make_invoice", {"amount": 1000, "description": "\ud800"}, "description"),
    ("make_invoice", {"amount": 1000, "description_hash": "zz"}, "description_hash"),
    # JSON.stringify'd by mistake: dropped without a word, the app never saw why
    # its metadata did not come back.
    ("make_invoice", {"amount": 1000, "metadata": '{"comment":"hi"}'}, "metadata"),
    ("make_hold_invoice", {"amount": 1000, "payment_hash": "ab" * 32, "metadata": []}, "metadata"),
    ("make_hold_invoice", {"amount": 10**20, "payment_hash": "ab" * 32}, "amount"),
    ("make_hold_invoice", {"amount": 1000, "payment_hash": "ab" * 32, "expiry": True}, "expiry"),
    ("lookup_invoice", {"payment_hash": 5}, "payment_hash"),
    ("lookup_invoice", {"invoice": ["lnbc1"]}, "invoice"),
    ("list_transactions", {"from": 10**30}, "from"),
    ("list_transactions", {"until": 10**30}, "until"),
    ("list_transactions", {"limit": 10**30}, "limit"),
    ("list_transactions", {"offset": 10**30}, "offset"),
    ("list_transactions", {"limit": "5"}, "limit"),
    ("list_transactions", {"unpaid": "false"}, "unpaid"),
    ("list_transactions", {"type": 1}, "type"),
]


def test_a_parameter_of_the_wrong_type_or_range_is_other_and_mints_nothing(
    server: e2e.Server, relay: Relay
) -> None:
    uri = connect_app(server, relay, "invoices:create", "invoices:read", label="sloppy app")
    listener = Listener(relay, uri)
    try:
        before = nwc_invoices(server)
        answers = [(m, params, name, listener.ask(m, params)) for m, params, name in BAD_PARAMS]
    finally:
        listener.close()
    for method, params, name, body in answers:
        assert body["result_type"] == method
        assert body["result"] is None, (method, params)
        assert body["error"]["code"] == "OTHER", (method, params, body["error"])
        assert name in body["error"]["message"], (method, params, body["error"])
    assert nwc_invoices(server) == before


def test_lookup_invoice_finds_an_invoice_given_in_upper_case(
    server: e2e.Server, relay: Relay
) -> None:
    # BOLT11 (bech32) may be written all in upper case, as QR codes carry it,
    # and a hash in hex in either case; both name the same invoice.
    uri = connect_app(server, relay, "invoices:create", "invoices:read", label="scanner")
    made = make_invoice(uri, 2000, "scanned")
    listener = Listener(relay, uri)
    try:
        by_invoice = listener.ask("lookup_invoice", {"invoice": made.invoice.upper()})
        by_hash = listener.ask("lookup_invoice", {"payment_hash": made.payment_hash.upper()})
    finally:
        listener.close()
    for body in (by_invoice, by_hash):
        assert body["error"] is None, body
        assert body["result"]["payment_hash"] == made.payment_hash
        assert body["result"]["invoice"] == made.invoice


def test_lookup_invoice_takes_the_lightning_uri_lnplugins_own_qr_codes_carry(
    server: e2e.Server, relay: Relay
) -> None:
    """The checkout page's QR code is `LIGHTNING:<BOLT11>` (docs/checkout.md),
    and a `lightning:` URI is what most QR codes and links carry: an app that
    scanned one and looked it up was told NOT_FOUND."""
    uri = connect_app(server, relay, "invoices:create", "invoices:read", label="qr scanner")
    made = make_invoice(uri, 2100, "scanned from a QR code")
    for scanned in (f"LIGHTNING:{made.invoice.upper()}", f"lightning:{made.invoice}"):
        found = call(
            uri, "lookup_invoice", ns.LookupInvoiceRequest(payment_hash=None, invoice=scanned)
        )
        assert found.payment_hash == made.payment_hash


def test_list_transactions_from_finds_an_older_invoice_paid_since(
    server: e2e.Server, relay: Relay
) -> None:
    """An app that missed notifications catches up with `list_transactions`
    `from` the last time it knows of (docs/nwc.md): an invoice made before
    that time and paid after it is one it has not heard of. `from` and
    `until` apply to when a transaction settled (Alby Hub: its last update),
    to its creation while it is unpaid."""
    uri = connect_app(server, relay, "invoices:create", "invoices:read", label="catching up")
    made = make_invoice(uri, 3000, "made before the outage")
    created = int(time.time())
    e2e.wait_for(lambda: int(time.time()) > created, "the clock to pass the creation second")
    last_known = int(time.time())
    e2e.cli(server.data_dir, "dev", "pay", made.payment_hash)
    listener = Listener(relay, uri)
    try:
        since = listener.ask("list_transactions", {"from": last_known})
        before = listener.ask("list_transactions", {"until": last_known - 1})
    finally:
        listener.close()
    assert made.payment_hash in [t["payment_hash"] for t in since["result"]["transactions"]]
    assert made.payment_hash not in [t["payment_hash"] for t in before["result"]["transactions"]]


def test_the_lightning_address_a_connection_was_given_is_listed(home: Path, relay: Relay) -> None:
    """The address put in the URI (shown once) is stored with the connection:
    `nwc list` (its last column) and `GET /nwc/connections` name it, so the
    operator can tell which address an app was given; `-` / null when none."""
    public = "https://pay.example.com"
    flags = ("--nwc-relay", relay.url, "--public-url", public)

    def made(*args: str) -> tuple[int, str]:
        proc = e2e.run(srv.data_dir, "nwc", "connect", "--scope", "invoices:read", *flags, *args)
        assert proc.returncode == 0, proc.stderr
        ident = int(proc.stderr.split("wallet connection ", 1)[1].split()[0])
        return ident, proc.stdout.strip().splitlines()[-1]

    with e2e.Server(home / "lud16-stored", *flags) as srv:
        none_served, _ = made()
        e2e.cli(srv.data_dir, "address", "add", "alice", "--public-url", public)
        alone, _ = made()  # the only address, put in unasked
        e2e.cli(srv.data_dir, "address", "add", "bob", "--public-url", public)
        asked, uri = made("--lud16", "bob")
        assert ns.NostrWalletConnectUri.parse(uri).lud16() == "bob@pay.example.com"
        several, _ = made()  # several served, none asked: none in the URI
        answer = srv.request(
            "POST", "/nwc/connections", json={"scopes": ["invoices:read"], "lud16": "alice"}
        )
        assert answer.status_code == 201, answer.text
        assert answer.json()["lud16"] == "alice@pay.example.com"
        by_api = answer.json()["id"]

        expected = {
            none_served: None,
            alone: "alice@pay.example.com",
            asked: "bob@pay.example.com",
            several: None,
            by_api: "alice@pay.example.com",
        }
        listed = srv.request("GET", "/nwc/connections").json()
        assert {c["id"]: c["lud16"] for c in listed} == expected
        lines = e2e.cli(srv.data_dir, "nwc", "list").strip().splitlines()
        assert {int(ln.split("\t")[0]): ln.split("\t")[-1] for ln in lines} == {
            k: v or "-" for k, v in expected.items()
        }


def test_the_uri_carries_the_lightning_address_of_the_connection(home: Path, relay: Relay) -> None:
    """NIP-47: `lud16` "Recommended. A lightning address that clients can use
    to automatically setup the `lud16` field on the user's profile". The one
    address lnplugin serves goes in by itself; of several, the one asked for
    with `--lud16` (or `lud16` in the admin route's body)."""
    public = "https://pay.example.com"
    flags = ("--nwc-relay", relay.url, "--public-url", public)

    def made(*args: str) -> ns.NostrWalletConnectUri:
        out = e2e.cli(srv.data_dir, "nwc", "connect", "--scope", "invoices:read", *flags, *args)
        return ns.NostrWalletConnectUri.parse(out.strip().splitlines()[-1])

    with e2e.Server(home / "lud16", "--nwc-relay", relay.url, "--public-url", public) as srv:
        assert made().lud16() is None  # no address served yet
        e2e.cli(srv.data_dir, "address", "add", "alice", "--public-url", public)
        alone = made()
        assert alone.lud16() == "alice@pay.example.com"
        e2e.wait_for(lambda: srv.request("GET", "/health").ok, "the server")
        # The URI still works as a connection, read by nostr-sdk's client.
        line = e2e.cli(srv.data_dir, "nwc", "connect", "--scope", "invoices:read", *flags)
        uri = line.strip().splitlines()[-1]
        assert "&lud16=alice%40pay.example.com" in uri  # URL-encoded, as NIP-47 asks
        assert call(uri, "get_info").network == "regtest"
        e2e.cli(srv.data_dir, "address", "add", "bob", "--public-url", public)
        several = e2e.run(srv.data_dir, "nwc", "connect", "--scope", "invoices:read", *flags)
        assert several.returncode == 0 and "--lud16" in several.stderr
        assert ns.NostrWalletConnectUri.parse(several.stdout.strip()).lud16() is None
        assert made("--lud16", "bob").lud16() == "bob@pay.example.com"
        assert made("--lud16", "bob@pay.example.com").lud16() == "bob@pay.example.com"
        for wrong in ("carol", "bob@elsewhere.example"):
            refused = e2e.run(
                srv.data_dir, "nwc", "connect", "--scope", "invoices:read", *flags, "--lud16", wrong
            )
            assert refused.returncode == 2 and refused.stdout == ""
            assert "--lud16" in refused.stderr and "Traceback" not in refused.stderr
        # The admin route: the same choice, `lud16` in its body.
        body = {"scopes": ["invoices:read"], "lud16": "bob"}
        answer = srv.request("POST", "/nwc/connections", json=body)
        assert answer.status_code == 201, answer.text
        assert ns.NostrWalletConnectUri.parse(answer.json()["uri"]).lud16() == "bob@pay.example.com"
        plain = srv.request("POST", "/nwc/connections", json={"scopes": ["invoices:read"]})
        assert ns.NostrWalletConnectUri.parse(plain.json()["uri"]).lud16() is None
        bad = srv.request("POST", "/nwc/connections", json={**body, "lud16": "carol"})
        assert bad.status_code == 400 and "lud16" in json.dumps(bad.json())
        assert bad.json()["error"] is True  # the Alby error shape
