"""Nostr Wallet Connect on an LND node whose macaroon may not hold invoices.

A real relay process, the LND simulator over real gRPC (which grants each
RPC as lnd does: its entity:action or `uri:<method>`), lnplugin as a process
with `--node lnd` and a baked per-method macaroon, and as the app nostr-sdk
(signing, encrypting, decrypting; `Listener` of `test_nwc_e2e`).

What a wallet advertises must be what it can do: the info event (kind
13194) and `get_info` list the hold methods and `hold_invoice_accepted` only
when the macaroon lnplugin was started with allows AddHoldInvoice,
SettleInvoice and CancelInvoice. A hold method called anyway is
`NOT_IMPLEMENTED` (NIP-47: "intentionally not implemented"; `RESTRICTED`
would tell the app its own key lacks a permission) with a message naming
the missing permission, and nothing is minted on the node.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lnplugin_sim.lnd_sim import LndSim
from tests import e2e
from tests.nwc_relay import Relay
from tests.test_lnd_e2e import serve_args
from tests.test_lnd_hold import REQUIRED_METHODS
from tests.test_nwc_e2e import Listener, connect_app, hold_pair, info_event

HOLD = {"make_hold_invoice", "settle_hold_invoice", "cancel_hold_invoice"}
ADD, SETTLE, CANCEL, SINGLE = (
    f"uri:/invoicesrpc.Invoices/{m}"
    for m in ("AddHoldInvoice", "SettleInvoice", "CancelInvoice", "SubscribeSingleInvoice")
)
# Everything but the hold methods: invoices, settlements, payments, node info.
NO_HOLD = [*REQUIRED_METHODS, "uri:/lnrpc.Lightning/ListPayments", "uri:/lnrpc.Lightning/GetInfo"]


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(dir="/tmp", prefix="nwcperm-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


relay = e2e.fixture_relay  # a relay process for the module, in `home`


@pytest.fixture(scope="module")
def sim(home: Path) -> Iterator[LndSim]:
    with LndSim(home / "lnd", network="regtest", port=0) as s:
        yield s


def _serve(home: Path, sim: LndSim, relay: Relay, name: str, permissions: list[str]) -> e2e.Server:
    macaroon = sim.bake(permissions, f"{name}.macaroon")
    return e2e.Server(home / name, *serve_args(sim, macaroon), "--nwc-relay", relay.url)


def _offered(relay: Relay, uri: str) -> tuple[set[str], list[str]]:
    """The info event's methods and its notifications tag."""
    info = info_event(relay, uri)
    tags = {t.to_vec()[0]: t.to_vec()[1:] for t in info.tags()}
    return set(info.content().split()), tags["notifications"]


def _on_node(sim: LndSim, payment_hash: str) -> bool:
    return sim.ledger.get(bytes.fromhex(payment_hash)) is not None


def test_without_the_hold_methods_none_is_offered_and_each_is_refused_naming_it(
    home: Path, sim: LndSim, relay: Relay
) -> None:
    with _serve(home, sim, relay, "no-hold", NO_HOLD) as server:
        uri = connect_app(server, relay, "invoices:create", "invoices:read", label="escrow")
        methods, notifications = _offered(relay, uri)
        assert not methods & HOLD and "make_invoice" in methods
        assert notifications == ["payment_received"]
        listener = Listener(relay, uri)
        try:
            info = listener.ask("get_info", {})["result"]
            assert not set(info["methods"]) & HOLD and "make_invoice" in info["methods"]
            assert info["notifications"] == ["payment_received"]

            preimage, payment_hash = hold_pair()
            made = listener.ask("make_hold_invoice", {"amount": 5000, "payment_hash": payment_hash})
            assert made["result"] is None and made["error"]["code"] == "NOT_IMPLEMENTED"
            message = made["error"]["message"]
            for lacking in (ADD, SETTLE, CANCEL):
                assert lacking in message, message
            assert not _on_node(sim, payment_hash)
            for method, params in (
                ("settle_hold_invoice", {"preimage": preimage}),
                ("cancel_hold_invoice", {"payment_hash": payment_hash}),
            ):
                refused = listener.ask(method, params)["error"]
                assert refused["code"] == "NOT_IMPLEMENTED" and ADD in refused["message"], method

            # Regular invoices are unaffected.
            regular = listener.ask("make_invoice", {"amount": 2000})
            assert regular["error"] is None and _on_node(sim, regular["result"]["payment_hash"])
        finally:
            listener.close()
        assert e2e.scalar(server.data_dir, "SELECT COUNT(*) FROM invoices WHERE hold = 1") == (0,)
        # Over HTTP the same: 501 naming the permissions, nothing minted.
        _, payment_hash = hold_pair()
        r = server.request("POST", "/invoices", json={"amount": 5, "payment_hash": payment_hash})
        assert r.status_code == 501 and SETTLE in r.json()["message"], r.text
        assert not _on_node(sim, payment_hash)


def test_a_macaroon_that_may_hold_but_not_settle_offers_no_hold_invoices(
    home: Path, sim: LndSim, relay: Relay
) -> None:
    """An invoice the app could make but lnplugin never settle would lock the
    payer's funds until lnd gives them back: so none is made."""
    with _serve(home, sim, relay, "no-settle", [*NO_HOLD, ADD, CANCEL, SINGLE]) as server:
        uri = connect_app(server, relay, "invoices:create", "invoices:read", label="escrow")
        methods, notifications = _offered(relay, uri)
        assert not methods & HOLD and notifications == ["payment_received"]
        listener = Listener(relay, uri)
        try:
            _, payment_hash = hold_pair()
            made = listener.ask("make_hold_invoice", {"amount": 5000, "payment_hash": payment_hash})
            assert made["error"]["code"] == "NOT_IMPLEMENTED"
            assert SETTLE in made["error"]["message"] and ADD not in made["error"]["message"]
            assert not _on_node(sim, payment_hash)
        finally:
            listener.close()


def test_a_per_method_macaroon_with_the_hold_methods_offers_and_makes_them(
    home: Path, sim: LndSim, relay: Relay
) -> None:
    """docs/lnd.md's per-method bake: every hold method and notification is
    offered, and a hold invoice is made on lnd."""
    with _serve(home, sim, relay, "per-method", [*NO_HOLD, ADD, SETTLE, CANCEL, SINGLE]) as server:
        uri = connect_app(server, relay, "invoices:create", "invoices:read", label="escrow")
        methods, notifications = _offered(relay, uri)
        assert methods >= HOLD
        assert notifications == ["payment_received hold_invoice_accepted"]
        listener = Listener(relay, uri)
        try:
            _, payment_hash = hold_pair()
            made = listener.ask("make_hold_invoice", {"amount": 5000, "payment_hash": payment_hash})
            assert made["error"] is None and _on_node(sim, payment_hash)
            sim.pay_invoice(payment_hash)
            note = listener.next(23197)["body"]
            assert note["notification_type"] == "hold_invoice_accepted"
            canceled = listener.ask("cancel_hold_invoice", {"payment_hash": payment_hash})
            assert canceled["error"] is None
        finally:
            listener.close()
