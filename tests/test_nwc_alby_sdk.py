"""Nostr Wallet Connect with the client apps actually ship: `@getalby/sdk`.

`tests/test_nwc_e2e.py` plays the app with rust-nostr's client; most apps
that "connect a wallet" (and Alby's own examples) use Alby's JavaScript SDK
instead, whose `NWCClient` reads the info event, picks the encryption,
and has calls for the hold invoice methods and for notifications. Here that
client, unchanged, runs in Node (`tests/js/nwc_app.mjs`) against a real relay
and a real `lnplugin serve`, with the connection string `lnplugin nwc
connect` prints: what an operator pastes into an app.

The SDK comes from npm (`tests/js/package-lock.json`), installed by
`make test` when `npm` is on the PATH. Without Node or the install these
tests skip, unless LNPLUGIN_REQUIRE_NODE=1 (CI sets it, and installs Node),
which makes the skip a failure.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lnplugin import bolt11
from tests import e2e
from tests.nwc_relay import Relay

JS = Path(__file__).resolve().parent / "js"
REQUIRE = os.environ.get("LNPLUGIN_REQUIRE_NODE") == "1"
WAIT = e2e.WAIT  # a liveness bound, not a timing assertion


def _node() -> str:
    node = shutil.which("node")
    why = None
    if node is None:
        why = "no node (apt-get install nodejs npm)"
    elif not (JS / "node_modules" / "@getalby" / "sdk").is_dir():
        why = "tests/js has no node_modules (npm ci --prefix tests/js, which make test runs)"
    if why is not None:
        if REQUIRE:
            pytest.fail(f"LNPLUGIN_REQUIRE_NODE=1 but {why}")
        pytest.skip(why)
    assert node is not None
    return node


class SdkError(Exception):
    """An NWC error as the SDK hands it to the app: its code and message."""

    def __init__(self, code: str | None, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class AlbyApp:
    """`tests/js/nwc_app.mjs`: @getalby/sdk's NWCClient on one connection string."""

    def __init__(self, node: str, uri: str) -> None:
        self.proc = subprocess.Popen(
            [node, str(JS / "nwc_app.mjs"), uri],
            cwd=JS,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.answers: queue.Queue[dict[str, Any]] = queue.Queue()
        self.notifications: queue.Queue[dict[str, Any]] = queue.Queue()
        self.ids = itertools.count(1)
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            message = json.loads(line)
            if "notification" in message:
                self.notifications.put(message["notification"])
            elif "paid" in message:
                self.notifications.put({"onPaid": message["paid"]})
            else:
                self.answers.put(message)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        self.stderr.extend(self.proc.stderr)

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """One SDK call; its result, or SdkError with the code the SDK saw."""
        assert self.proc.stdin is not None
        ident = next(self.ids)
        self.proc.stdin.write(json.dumps({"id": ident, "method": method, "params": params}) + "\n")
        self.proc.stdin.flush()
        try:
            answer = self.answers.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(
                f"no answer to {method}; the SDK said: {''.join(self.stderr)[-2000:]}"
            ) from None
        assert answer["id"] == ident
        if "error" in answer:
            raise SdkError(answer["error"]["code"], answer["error"]["message"])
        return answer["result"]

    def next_notification(self) -> dict[str, Any]:
        try:
            return self.notifications.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError("no notification reached the app") from None

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def node() -> str:
    return _node()


@pytest.fixture(scope="module")
def wallet() -> Iterator[tuple[Relay, e2e.Server]]:
    """A relay process, and `lnplugin serve --nwc-relay` on it, for the module."""
    home = Path(tempfile.mkdtemp(dir="/tmp", prefix="nwc-sdk-"))
    relay = Relay(home / "relay").start()
    try:
        with e2e.Server(home / "data", "--nwc-relay", relay.url) as server:
            yield relay, server
    finally:
        relay.kill()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def server(wallet: tuple[Relay, e2e.Server]) -> e2e.Server:
    return wallet[1]


def app_for(node: str, wallet: tuple[Relay, e2e.Server], *scopes: str) -> AlbyApp:
    """The SDK on a new connection string, as `lnplugin nwc connect` prints it."""
    relay, server = wallet
    flags = [arg for scope in scopes for arg in ("--scope", scope)]
    out = e2e.cli(
        server.data_dir, "nwc", "connect", *flags, "--label", "alby sdk", "--nwc-relay", relay.url
    )
    return AlbyApp(node, out.strip().splitlines()[-1])


@pytest.fixture
def app(node: str, wallet: tuple[Relay, e2e.Server]) -> Iterator[AlbyApp]:
    app = app_for(node, wallet, "invoices:create", "invoices:read")
    yield app
    app.close()


def test_the_sdk_reads_what_the_wallet_offers_and_picks_nip44(app: AlbyApp) -> None:
    offered = app.call("getWalletServiceInfo")
    assert offered["encryptions"] == ["nip44_v2", "nip04"]
    assert offered["notifications"] == ["payment_received", "hold_invoice_accepted"]
    info = app.call("getInfo")
    assert info["network"] == "regtest" and len(info["pubkey"]) == 66
    # The dev node holds invoices, so the hold methods are offered too.
    hold = ("make_hold_invoice", "settle_hold_invoice", "cancel_hold_invoice")
    assert info["methods"] == [
        "get_info",
        "make_invoice",
        "lookup_invoice",
        "list_transactions",
        *hold,
    ]
    assert offered["capabilities"] == [*info["methods"], "notifications"]
    assert "pay_invoice" not in info["methods"]
    assert app.call("encryptionType") == "nip44_v2"


def test_the_sdk_makes_an_invoice_hears_it_paid_looks_it_up_and_lists_it(
    app: AlbyApp, server: e2e.Server
) -> None:
    app.call("subscribeNotifications")
    made = app.call(
        "makeInvoice",
        {"amount": 21_000, "description": "coffee", "metadata": {"comment": "for the host"}},
    )
    assert (made["type"], made["state"], made["amount"]) == ("incoming", "pending", 21_000)
    decoded = bolt11.decode(made["invoice"])
    assert (decoded.amount_msat, decoded.payment_hash) == (21_000, made["payment_hash"])
    pending = app.call("listTransactions", {"unpaid": True, "type": "incoming"})
    assert made["payment_hash"] in [t["payment_hash"] for t in pending["transactions"]]

    e2e.cli(server.data_dir, "dev", "pay", made["invoice"])
    note = app.next_notification()
    assert note["notification_type"] == "payment_received"
    paid = note["notification"]
    assert (paid["payment_hash"], paid["amount"], paid["state"]) == (
        made["payment_hash"],
        21_000,
        "settled",
    )
    assert hashlib.sha256(bytes.fromhex(paid["preimage"])).hexdigest() == made["payment_hash"]
    assert paid["metadata"] == {"comment": "for the host"}

    by_hash = app.call("lookupInvoice", {"payment_hash": made["payment_hash"]})
    by_invoice = app.call("lookupInvoice", {"invoice": made["invoice"]})
    assert by_hash == by_invoice
    assert by_hash["state"] == "settled" and by_hash["preimage"] == paid["preimage"]
    window = {"from": made["created_at"], "until": paid["settled_at"] + 1, "limit": 50}
    settled = app.call("listTransactions", window)["transactions"]
    assert made["payment_hash"] in [t["payment_hash"] for t in settled]
    with pytest.raises(SdkError) as outgoing:  # invoices:read is incoming only
        app.call("listTransactions", {"type": "outgoing"})
    assert outgoing.value.code == "RESTRICTED"


def test_the_sdks_request_payment_and_on_paid_work_as_its_readme_shows(
    app: AlbyApp, server: e2e.Server
) -> None:
    """`new LN(url).requestPayment(SATS(21)).onPaid(…)`: the SDK's first
    example. It decodes the invoice itself and waits for the notification."""
    asked = app.call("requestPayment", {"sats": 21, "description": "a tip"})
    made = asked["transaction"]
    assert asked["decoded"] == {
        "paymentHash": made["payment_hash"],
        "satoshi": 21,
        "description": "a tip",
    }
    e2e.cli(server.data_dir, "dev", "pay", made["invoice"])
    paid = app.next_notification()["onPaid"]
    assert (paid["payment_hash"], paid["amount"], paid["state"]) == (
        made["payment_hash"],
        21_000,
        "settled",
    )


def test_the_sdk_hears_a_keysend_boostagram_in_the_metadata(
    app: AlbyApp, server: e2e.Server
) -> None:
    app.call("subscribeNotifications", {"types": ["payment_received"]})
    boost = {"app_name": "Fountain", "podcast": "Tests", "message": "great show"}
    record = f"7629169={json.dumps(boost)}"
    e2e.cli(server.data_dir, "dev", "keysend", "--amount-msat", "5000", "--record", record)
    note = app.next_notification()
    assert note["notification_type"] == "payment_received"
    assert note["notification"]["amount"] == 5000
    assert note["notification"]["metadata"]["boostagram"] == boost


def test_the_sdk_holds_an_invoice_hears_it_accepted_and_settles_it(
    app: AlbyApp, server: e2e.Server
) -> None:
    app.call("subscribeNotifications")
    preimage, payment_hash = e2e.hold_pair()
    made = app.call(
        "makeHoldInvoice", {"amount": 42_000, "payment_hash": payment_hash, "description": "escrow"}
    )
    assert made["payment_hash"] == payment_hash and made["state"] == "pending"
    paid = json.loads(e2e.cli(server.data_dir, "dev", "pay", made["invoice"]))
    assert paid["state"] == "ACCEPTED"
    held = app.next_notification()
    assert held["notification_type"] == "hold_invoice_accepted"
    assert held["notification"]["payment_hash"] == payment_hash
    assert held["notification"]["settle_deadline"] > 0

    with pytest.raises(SdkError) as wrong:
        app.call("settleHoldInvoice", {"preimage": e2e.hold_pair()[0]})
    assert wrong.value.code == "NOT_FOUND"
    assert app.call("settleHoldInvoice", {"preimage": preimage}) == {}
    received = app.next_notification()
    assert received["notification_type"] == "payment_received"
    assert received["notification"]["preimage"] == preimage
    assert app.call("lookupInvoice", {"payment_hash": payment_hash})["state"] == "settled"


def test_the_sdk_cancels_a_held_invoice(app: AlbyApp, server: e2e.Server) -> None:
    _, payment_hash = e2e.hold_pair()
    app.call("makeHoldInvoice", {"amount": 9000, "payment_hash": payment_hash})
    e2e.cli(server.data_dir, "dev", "pay", payment_hash)
    e2e.wait_for(
        lambda: (
            app.call("lookupInvoice", {"payment_hash": payment_hash})["state"] == "accepted" or None
        ),
        "the hold invoice to be held",
    )
    assert app.call("cancelHoldInvoice", {"payment_hash": payment_hash}) == {}
    assert app.call("lookupInvoice", {"payment_hash": payment_hash})["state"] == "failed"
    assert e2e.run(server.data_dir, "dev", "pay", payment_hash).returncode != 0


def test_what_a_connection_may_not_do_reaches_the_sdk_as_nip47_error_codes(
    node: str, wallet: tuple[Relay, e2e.Server], server: e2e.Server
) -> None:
    reader = app_for(node, wallet, "invoices:read")
    try:
        with pytest.raises(SdkError) as restricted:
            reader.call("makeInvoice", {"amount": 1000})
        assert restricted.value.code == "RESTRICTED"
        with pytest.raises(SdkError) as absent:
            reader.call("getBalance")
        assert absent.value.code == "NOT_IMPLEMENTED"
        with pytest.raises(SdkError) as unknown:
            reader.call("lookupInvoice", {"payment_hash": "ab" * 32})
        assert unknown.value.code == "NOT_FOUND"
        ident = e2e.cli(server.data_dir, "nwc", "list").strip().splitlines()[-1].split()[0]
        e2e.cli(server.data_dir, "nwc", "revoke", ident)
        with pytest.raises(SdkError) as revoked:
            reader.call("lookupInvoice", {"payment_hash": "ab" * 32})
        assert revoked.value.code == "UNAUTHORIZED"
    finally:
        reader.close()


def test_the_sdk_reads_the_lightning_address_in_the_connection_string(
    node: str, wallet: tuple[Relay, e2e.Server]
) -> None:
    """NIP-47's `lud16`, as `lnplugin nwc connect` writes it (URL-encoded),
    read by the SDK's own parser; the connection still works."""
    relay, server = wallet
    public = "https://sdk.example.com"
    e2e.cli(server.data_dir, "address", "add", "satoshi", "--public-url", public)
    out = e2e.cli(
        server.data_dir,
        "nwc",
        "connect",
        "--scope",
        "invoices:read",
        "--nwc-relay",
        relay.url,
        "--public-url",
        public,
        "--lud16",
        "satoshi",
    )
    app = AlbyApp(node, out.strip().splitlines()[-1])
    try:
        assert app.call("lud16") == "satoshi@sdk.example.com"
        assert app.call("getInfo")["network"] == "regtest"
    finally:
        app.close()
