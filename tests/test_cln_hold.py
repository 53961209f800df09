"""Hold invoices on Core Lightning through lnplugin's plugin, driven the way
lightningd drives it (`PluginDriver` over the simulator's socket).

The invoice is signed by the node (`signinvoice`) for the client's hash; each
HTLC's `htlc_accepted` answer is held until the invoice is settled
(`resolve` with the preimage) or canceled (`fail`). A SIGKILL while
ACCEPTED: lightningd replays the held HTLCs, and the invoice is ACCEPTED and
settleable again.
"""

from __future__ import annotations

import base64
import gc
import hashlib
import linecache
import queue
import secrets
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import bolt11 as reference
import pytest

from lnplugin import invoicing
from lnplugin.follower import Follower
from lnplugin.nodes.base import InvoiceNotOpen, InvoiceRequest, InvoiceUpdate, NodeInvoice
from lnplugin.nodes.cln.hold import (
    HOLD_CLTV_DELTA,
    NOT_REPLAYED,
    PLUGIN_RESTARTED,
    REPLAY_INCOMPLETE,
    ClnHoldNode,
)
from lnplugin.nodes.cln.tlv import encode_payload
from lnplugin.store import Store, events, holds, invoices
from lnplugin.store.models import StoredInvoice
from lnplugin_sim.cln_plugin_driver import PluginDriver, PluginError, Reply
from lnplugin_sim.cln_sim import ClnSim, RpcFailure
from tests import e2e
from tests.e2e import BOOST, BOOST_BYTES, Api, wait_for
from tests.helpers_present import present

tmp = e2e.fixture_tmp


@pytest.fixture
def sim(tmp: Path) -> Iterator[ClnSim]:
    with ClnSim(tmp / "sim", tmp / "rpc") as s:
        yield s


@pytest.fixture
def plugin(sim: ClnSim, tmp: Path) -> Iterator[PluginDriver]:
    driver = PluginDriver(sim, tmp / "lnp")
    driver.start()
    yield driver
    driver.shutdown()


@pytest.fixture
def api(plugin: PluginDriver) -> Iterator[Api]:
    client = Api(plugin.url, plugin.admin_token)
    yield client
    client.close()


def _pair() -> tuple[str, str]:
    preimage = secrets.token_bytes(32)
    return preimage.hex(), hashlib.sha256(preimage).hexdigest()


def _tu(value: int) -> bytes:
    return value.to_bytes(8, "big").lstrip(b"\0")


def part(
    plugin: PluginDriver,
    sim: ClnSim,
    invoice: dict[str, Any],
    amount: int,
    n: int,
    records: dict[int, bytes] | None = None,
) -> dict:
    """`htlc_accepted` params for one part of a payment of the whole invoice,
    with any custom `records` the payer added."""
    total = invoice["amount_msat"]
    secret = present(reference.decode(invoice["payment_request"]).payment_secret)
    payload = encode_payload(
        {
            2: _tu(amount),
            4: _tu(sim.blockheight + 80),
            8: bytes.fromhex(secret) + _tu(total),
            **(records or {}),
        }
    )
    params = plugin.hook_params(invoice["payment_hash"], payload, htlc_id=n)
    expires(params, sim, sim.blockheight + 80 + n)  # each part its own route
    return params


def expires(params: dict[str, Any], sim: ClnSim, cltv_expiry: int) -> None:
    """Give the hook's HTLC this `cltv_expiry`, with `cltv_expiry_relative`
    from the node's height, as lightningd sends them."""
    params["htlc"]["cltv_expiry"] = cltv_expiry
    params["htlc"]["cltv_expiry_relative"] = cltv_expiry - sim.blockheight


def state(api: Api, payment_hash: str) -> dict[str, Any]:
    return api.get(f"/invoices/{payment_hash}")


def hold_invoice(api: Api, sim: ClnSim, payment_hash: str) -> dict[str, Any]:
    inv = api.post("/invoices", {"amount": 60, "payment_hash": payment_hash, "memo": "escrow"})
    decoded = reference.decode(inv["payment_request"])
    assert decoded.payment_hash == payment_hash
    assert decoded.payee == sim.node_id  # signed by the node, via signinvoice
    return inv


def test_multi_part_hold_is_accepted_then_settled(
    plugin: PluginDriver, sim: ClnSim, api: Api
) -> None:
    preimage, payment_hash = _pair()
    inv = hold_invoice(api, sim, payment_hash)
    replies: list[Reply] = [
        plugin.call_later("htlc_accepted", part(plugin, sim, inv, 20_000, 1)),
        plugin.call_later("htlc_accepted", part(plugin, sim, inv, 40_000, 2)),
    ]
    got = wait_for(lambda: (i := state(api, payment_hash))["state"] == "ACCEPTED" and i, "ACCEPTED")
    assert got["amount_received_msat"] == 60_000
    assert got["settle_deadline"] == sim.blockheight + 80 + 1  # the earliest part's expiry
    r = api.session.post(
        f"{api.url}/invoices/{payment_hash}/settle", json={"preimage": preimage}, timeout=10
    )
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "SETTLED" and r.json()["preimage"] == preimage
    for reply in replies:
        assert reply.result() == {"result": "resolve", "payment_key": preimage}


def test_a_boost_paid_to_a_hold_invoice_keeps_its_records(
    plugin: PluginDriver, sim: ClnSim, api: Api
) -> None:
    """As on lnd, the custom records of the parts that pay a hold invoice are
    the invoice's: shown once it is ACCEPTED, kept once SETTLED."""
    preimage, payment_hash = _pair()
    inv = hold_invoice(api, sim, payment_hash)
    boost = {7629169: BOOST_BYTES}
    replies = [
        plugin.call_later("htlc_accepted", part(plugin, sim, inv, 20_000, 1, boost)),
        plugin.call_later("htlc_accepted", part(plugin, sim, inv, 40_000, 2, boost)),
    ]
    got = wait_for(lambda: (i := state(api, payment_hash))["state"] == "ACCEPTED" and i, "ACCEPTED")
    assert got["boostagram"] is not None and got["boostagram"]["message"] == BOOST["message"]
    assert got["custom_records"] == {"7629169": base64.b64encode(BOOST_BYTES).decode()}
    r = api.session.post(
        f"{api.url}/invoices/{payment_hash}/settle", json={"preimage": preimage}, timeout=10
    )
    assert r.status_code == 200, r.text
    for reply in replies:
        assert reply.result() == {"result": "resolve", "payment_key": preimage}
    boosts = api.get("/invoices/incoming", params={"q[boostagram]": "true"})
    assert [(i["payment_hash"], i["boostagram"]) for i in boosts] == [
        (payment_hash, got["boostagram"])
    ]


def test_cancel_fails_the_held_htlcs_and_later_ones(
    plugin: PluginDriver, sim: ClnSim, api: Api
) -> None:
    _, payment_hash = _pair()
    inv = hold_invoice(api, sim, payment_hash)
    held = plugin.call_later("htlc_accepted", part(plugin, sim, inv, 60_000, 1))
    wait_for(lambda: state(api, payment_hash)["state"] == "ACCEPTED", "ACCEPTED")
    r = api.session.post(f"{api.url}/invoices/{payment_hash}/cancel", timeout=10)
    assert r.status_code == 200 and r.json()["state"] == "CANCELED"
    answer = held.result()
    assert answer["result"] == "fail" and answer["failure_message"].startswith("400f")
    late = plugin.call("htlc_accepted", part(plugin, sim, inv, 60_000, 2))
    assert late["result"] == "fail"


def test_a_wrong_payment_secret_is_refused(plugin: PluginDriver, sim: ClnSim, api: Api) -> None:
    _, payment_hash = _pair()
    inv = hold_invoice(api, sim, payment_hash)
    params = part(plugin, sim, inv, 60_000, 1)
    params["onion"]["payment_secret"] = "11" * 32
    assert plugin.call("htlc_accepted", params)["result"] == "fail"
    assert state(api, payment_hash)["state"] == "CREATED"


def test_forwards_with_the_same_hash_are_left_to_lightningd(
    plugin: PluginDriver, sim: ClnSim, api: Api
) -> None:
    _, payment_hash = _pair()
    inv = hold_invoice(api, sim, payment_hash)
    for hop in ({"short_channel_id": "1x2x3"}, {"next_node_id": "02" + "33" * 32}):
        params = part(plugin, sim, inv, 60_000, 1)
        params["onion"] |= hop  # to be forwarded (a blinded route names the next node)
        assert plugin.call("htlc_accepted", params) == {"result": "continue"}
    assert state(api, payment_hash)["state"] == "CREATED"


def test_other_htlcs_still_continue_while_one_is_held(
    plugin: PluginDriver, sim: ClnSim, api: Api
) -> None:
    _, payment_hash = _pair()
    inv = hold_invoice(api, sim, payment_hash)
    plugin.call_later("htlc_accepted", part(plugin, sim, inv, 60_000, 1))
    regular = api.post("/invoices", {"amount": 5})
    sim.pay(regular["payment_request"])
    plugin.htlc_accepted(regular["payment_hash"])  # answered at once: continue


def test_cancel_of_a_regular_invoice_deletes_it_on_the_node(
    plugin: PluginDriver, sim: ClnSim, api: Api
) -> None:
    regular = api.post("/invoices", {"amount": 5})
    r = api.session.post(f"{api.url}/invoices/{regular['payment_hash']}/cancel", timeout=10)
    assert r.status_code == 200 and r.json()["state"] == "CANCELED"
    with pytest.raises(Exception):  # noqa: B017 - the sim refuses: no such invoice
        sim.pay(regular["payment_request"])


def test_a_payment_landing_while_a_regular_invoice_is_canceled_is_a_409(
    plugin: PluginDriver, sim: ClnSim, api: Api
) -> None:
    """The payment comes between lnplugin's listing and its `delinvoice`:
    lightningd refuses the delete (906, the status changed), and the answer
    is the one a cancel of a paid invoice gets, not the node's error."""
    regular = api.post("/invoices", {"amount": 5})
    sim.before["delinvoice"] = lambda: sim.pay(regular["payment_request"]) and None
    r = api.session.post(f"{api.url}/invoices/{regular['payment_hash']}/cancel", timeout=10)
    assert r.status_code == 409, r.text
    assert r.json()["error"] is True
    wait_for(lambda: state(api, regular["payment_hash"])["state"] == "SETTLED", "SETTLED")


def test_sigkill_while_accepted_then_replayed_and_settled(
    plugin: PluginDriver, sim: ClnSim, api: Api
) -> None:
    preimage, payment_hash = _pair()
    inv = hold_invoice(api, sim, payment_hash)
    params = part(plugin, sim, inv, 60_000, 1)
    plugin.call_later("htlc_accepted", params)
    wait_for(lambda: state(api, payment_hash)["state"] == "ACCEPTED", "ACCEPTED")
    token = plugin.admin_token
    plugin.restart(replay=False, clean=False)  # SIGKILL; lightningd replays what was held
    replayed = plugin.call_later("htlc_accepted", params)
    again = Api(plugin.url, token)
    try:
        got = state(again, payment_hash)
        assert got["state"] == "ACCEPTED"

        def settle() -> Any:
            # 409 ("not paid yet") until the plugin has taken the replayed HTLC.
            reply = again.session.post(
                f"{again.url}/invoices/{payment_hash}/settle",
                json={"preimage": preimage},
                timeout=10,
            )
            assert reply.status_code in (200, 409), reply.text
            return reply.status_code == 200

        wait_for(settle, "the replayed HTLC to be held again and settled")
        assert replayed.result() == {"result": "resolve", "payment_key": preimage}
        # Replayed once more (lightningd restarting before it heard): same answer.
        assert plugin.call("htlc_accepted", params)["payment_key"] == preimage
    finally:
        again.close()


def test_a_hold_invoice_asks_for_the_cltv_delta_it_is_given(sim: ClnSim) -> None:
    """`min_cltv_expiry_delta` (NWC, POST /invoices) goes into the invoice the node signs."""
    node = ClnHoldNode(sim.socket_path, network="regtest")
    try:
        _, payment_hash = _pair()
        minted = node.create_hold_invoice(
            InvoiceRequest(amount_msat=1000, min_final_cltv_expiry_delta=144), payment_hash
        )
        decoded = reference.decode(minted.payment_request)
        assert decoded.min_final_cltv_expiry == 144 and decoded.payee == sim.node_id
        default = node.create_hold_invoice(InvoiceRequest(amount_msat=1000), _pair()[1])
        assert reference.decode(default.payment_request).min_final_cltv_expiry == HOLD_CLTV_DELTA
        # A regular invoice's goes to `invoice`'s `cltv` (POST /invoices sends it).
        regular = node.create_invoice(
            InvoiceRequest(amount_msat=1000, min_final_cltv_expiry_delta=40)
        )
        assert reference.decode(regular.payment_request).min_final_cltv_expiry == 40
    finally:
        node.close()


def settle_when_held(api: Api, payment_hash: str, preimage: str) -> None:
    """Settle once the plugin holds the (replayed) HTLCs: 409 ("not paid
    yet") until it has taken them."""

    def settle() -> bool:
        reply = api.session.post(
            f"{api.url}/invoices/{payment_hash}/settle", json={"preimage": preimage}, timeout=10
        )
        assert reply.status_code in (200, 409), reply.text
        return reply.status_code == 200

    wait_for(settle, "the HTLC to be held and settled")


def test_a_held_invoice_replayed_after_its_expiry_is_held_again(
    plugin: PluginDriver, sim: ClnSim, api: Api
) -> None:
    """The expiry bounds when a payment may start, not how long it is held:
    HTLCs taken before it and replayed after a restart past it are held again."""
    preimage, payment_hash = _pair()
    inv = api.post("/invoices", {"amount": 60, "payment_hash": payment_hash, "expiry": 2})
    params = part(plugin, sim, inv, 60_000, 1)
    plugin.call_later("htlc_accepted", params)
    wait_for(lambda: state(api, payment_hash)["state"] == "ACCEPTED", "ACCEPTED")
    token = plugin.admin_token
    plugin.kill()
    while time.time() <= inv["creation_date"] + 2:  # the expiry passes while it is down
        time.sleep(0.1)
    plugin.start()
    replayed = plugin.call_later("htlc_accepted", params)
    with pytest.raises(PluginError, match="no answer"):
        replayed.result(timeout=1)  # held, not failed as a payment after the expiry
    again = Api(plugin.url, token)
    try:
        settle_when_held(again, payment_hash, preimage)
        assert replayed.result() == {"result": "resolve", "payment_key": preimage}
        assert state(again, payment_hash)["state"] == "SETTLED"
    finally:
        again.close()


def test_a_second_payment_of_a_settled_hold_invoice_is_failed(
    plugin: PluginDriver, sim: ClnSim, api: Api
) -> None:
    """A settle answers the HTLCs it was made for, replayed or not, and no
    other: a second payment would hand the preimage over for money lnplugin
    never counts (a node fails a payment to a paid invoice too)."""
    preimage, payment_hash = _pair()
    inv = hold_invoice(api, sim, payment_hash)
    first = part(plugin, sim, inv, 60_000, 1)
    held = plugin.call_later("htlc_accepted", first)
    wait_for(lambda: state(api, payment_hash)["state"] == "ACCEPTED", "ACCEPTED")
    settle_when_held(api, payment_hash, preimage)
    resolved = {"result": "resolve", "payment_key": preimage}
    assert held.result() == resolved
    second = part(plugin, sim, inv, 60_000, 2)
    assert plugin.call("htlc_accepted", second)["result"] == "fail"
    token = plugin.admin_token
    plugin.restart(replay=False, clean=False)  # the decision is read from the store now
    assert plugin.call("htlc_accepted", first) == resolved
    assert plugin.call("htlc_accepted", second)["result"] == "fail"
    again = Api(plugin.url, token)
    try:
        got = state(again, payment_hash)
        assert (got["state"], got["amount_received_msat"]) == ("SETTLED", 60_000)
    finally:
        again.close()


def test_a_part_arriving_once_the_set_is_complete_is_failed(
    plugin: PluginDriver, sim: ClnSim, api: Api
) -> None:
    """A second payment while the first is held would be taken by the settle
    and never counted; lnd fails HTLCs to an invoice that is not open too."""
    preimage, payment_hash = _pair()
    inv = hold_invoice(api, sim, payment_hash)
    held = plugin.call_later("htlc_accepted", part(plugin, sim, inv, 60_000, 1))
    wait_for(lambda: state(api, payment_hash)["state"] == "ACCEPTED", "ACCEPTED")
    extra = plugin.call("htlc_accepted", part(plugin, sim, inv, 60_000, 2))
    assert extra["result"] == "fail" and extra["failure_message"].startswith("400f")
    settle_when_held(api, payment_hash, preimage)
    assert held.result() == {"result": "resolve", "payment_key": preimage}
    assert state(api, payment_hash)["amount_received_msat"] == 60_000


def test_an_htlc_leaving_less_than_the_cltv_delta_is_failed(
    plugin: PluginDriver, sim: ClnSim, api: Api
) -> None:
    """Held with fewer blocks than the invoice asked for, the payer's peer
    could take the HTLC back on chain before lnplugin settles it."""
    _, payment_hash = _pair()
    inv = hold_invoice(api, sim, payment_hash)
    short = part(plugin, sim, inv, 60_000, 1)
    expires(short, sim, sim.blockheight + HOLD_CLTV_DELTA - 1)
    assert plugin.call("htlc_accepted", short)["result"] == "fail"
    enough = part(plugin, sim, inv, 60_000, 2)
    expires(enough, sim, sim.blockheight + HOLD_CLTV_DELTA)
    plugin.call_later("htlc_accepted", enough)
    wait_for(lambda: state(api, payment_hash)["state"] == "ACCEPTED", "ACCEPTED")


def _with_total(
    plugin: PluginDriver, sim: ClnSim, inv: dict[str, Any], amount: int, total: int, n: int
) -> dict[str, Any]:
    params = part(plugin, sim, inv, amount, n)
    params["onion"]["total_msat"] = total
    return params


def test_parts_are_held_until_the_total_their_onions_name(
    plugin: PluginDriver, sim: ClnSim, api: Api
) -> None:
    """A payer may pay more than the amount (up to twice, BOLT 4): the set
    is complete at the total its onions name, not at the invoice's amount."""
    preimage, payment_hash = _pair()
    inv = hold_invoice(api, sim, payment_hash)
    first = plugin.call_later("htlc_accepted", _with_total(plugin, sim, inv, 60_000, 70_000, 1))
    with pytest.raises(PluginError, match="no answer"):
        first.result(timeout=0.5)
    assert state(api, payment_hash)["state"] == "CREATED"
    second = plugin.call_later("htlc_accepted", _with_total(plugin, sim, inv, 10_000, 70_000, 2))
    got = wait_for(lambda: (i := state(api, payment_hash))["state"] == "ACCEPTED" and i, "ACCEPTED")
    assert got["amount_received_msat"] == 70_000
    settle_when_held(api, payment_hash, preimage)
    assert first.result() == second.result() == {"result": "resolve", "payment_key": preimage}


@pytest.mark.parametrize(
    "totals",
    [
        pytest.param((30_000,), id="total below the amount"),
        pytest.param((120_001,), id="total over twice the amount"),
        pytest.param((60_000, 61_000), id="parts naming different totals"),
    ],
)
def test_a_part_naming_a_wrong_total_is_failed(
    plugin: PluginDriver, sim: ClnSim, api: Api, totals: tuple[int, ...]
) -> None:
    _, payment_hash = _pair()
    inv = hold_invoice(api, sim, payment_hash)
    *kept, wrong = totals
    for n, total in enumerate(kept, start=1):
        plugin.call_later("htlc_accepted", _with_total(plugin, sim, inv, 20_000, total, n))
    answer = plugin.call("htlc_accepted", _with_total(plugin, sim, inv, 20_000, wrong, 9))
    assert answer["result"] == "fail" and answer["failure_message"].startswith("400f")
    assert state(api, payment_hash)["state"] == "CREATED"


# -- settle, cancel and a payment at once, in one process -----------------------
#
# Each decision is made under the node's hold lock, and the store's writer
# lock is taken inside it (`holds.decide`). A test that holds the writer lock
# stops the first call inside its decision; the second then reads the
# invoice undecided and waits for the hold lock: the interleaving of two
# requests (or a request and lightningd's hook) that crossed, made to happen.


@pytest.fixture
def in_process(sim: ClnSim, tmp: Path) -> Iterator[tuple[ClnHoldNode, Store]]:
    store = Store(tmp / "store.sqlite")
    node = ClnHoldNode(sim.socket_path, network="regtest")
    node.attach(store)
    yield node, store
    node.close()
    store.close()


def minted_hold(node: ClnHoldNode, store: Store) -> tuple[str, NodeInvoice]:
    """A hold invoice made and stored as `POST /invoices` does; its preimage."""
    preimage, payment_hash = _pair()
    minted = node.create_hold_invoice(InvoiceRequest(amount_msat=60_000), payment_hash)
    with store.transaction() as tx:
        invoicing.insert(tx, invoicing.node_fields(minted, hold=True, source="api"))
    return preimage, minted


def paying_htlc(sim: ClnSim, minted: NodeInvoice, n: int) -> tuple[dict, dict]:
    """`htlc_accepted`'s onion and htlc for a whole payment of `minted`."""
    onion = {"payment_secret": minted.payment_secret, "total_msat": minted.amount_msat}
    htlc = {
        "payment_hash": minted.payment_hash,
        "amount_msat": minted.amount_msat,
        "cltv_expiry": sim.blockheight + HOLD_CLTV_DELTA + 10,
        "short_channel_id": "103x1x0",
        "id": n,
    }
    return onion, htlc


def waits_for_hold_lock(thread: threading.Thread, function: str) -> bool:
    """Whether `thread` waits at `function`'s `with self._held_lock`.

    Garbage collection is held off for `sys._current_frames()`: in CPython
    3.11 it holds the runtime's thread-list lock while it allocates, and a
    collection started there whose finalizers need that lock (a thread's
    state being freed) deadlocks the process with the GIL held, where not
    even pytest-timeout's thread can run (python/cpython#106883, fixed in
    3.12). It hung this test module about once in a few hundred calls."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        frames = sys._current_frames()
    finally:
        if collecting:
            gc.enable()
    frame = frames.get(thread.ident or 0)
    return (
        frame is not None
        and frame.f_code.co_name == function
        and "self._held_lock" in linecache.getline(frame.f_code.co_filename, frame.f_lineno)
    )


def crossing(
    node: ClnHoldNode, store: Store, first: Any, second: Any, second_name: str
) -> dict[str, Any]:
    """Run `first` until it is inside its decision, then `second` until it
    waits for the hold lock, then let both finish; their results (or the
    InvoiceNotOpen raised) by "first" and "second"."""
    results: dict[str, Any] = {}

    def run(name: str, call: Any) -> None:
        try:
            results[name] = call()
        except InvoiceNotOpen as exc:
            results[name] = exc

    threads = [threading.Thread(target=run, args=("first", first))]
    with store.transaction():
        threads[0].start()
        wait_for(node._held_lock.locked, "the first call to decide")
        threads.append(threading.Thread(target=run, args=("second", second)))
        threads[1].start()
        wait_for(lambda: waits_for_hold_lock(threads[1], second_name), "the second to wait")
    for thread in threads:
        thread.join(10)
    return results


def test_a_cancel_crossing_a_settle_is_refused_not_answered_canceled(
    in_process: tuple[ClnHoldNode, Store], sim: ClnSim
) -> None:
    """The settle released the preimage; a cancel that read the invoice
    before must not answer CANCELED (stored, it would say the payer kept
    money that was taken, with a `canceled` event)."""
    node, store = in_process
    preimage, minted = minted_hold(node, store)
    answers: list[dict] = []
    assert node.on_htlc(*paying_htlc(sim, minted, 1), answers.append)
    assert present(node.lookup_invoice(minted.payment_hash)).state == "ACCEPTED"
    results = crossing(
        node,
        store,
        lambda: node.settle_invoice(preimage),
        lambda: node.cancel_invoice(minted.payment_hash),
        "cancel_invoice",
    )
    assert results["first"].state == "SETTLED"
    assert answers == [{"result": "resolve", "payment_key": preimage}]
    assert isinstance(results["second"], InvoiceNotOpen), results["second"]
    assert "settled" in str(results["second"])
    with store.snapshot() as conn:
        assert present(holds.decision(conn, minted.payment_hash)).state == "SETTLED"


def test_a_settle_crossing_a_cancel_says_canceled(
    in_process: tuple[ClnHoldNode, Store], sim: ClnSim
) -> None:
    node, store = in_process
    preimage, minted = minted_hold(node, store)
    answers: list[dict] = []
    assert node.on_htlc(*paying_htlc(sim, minted, 1), answers.append)
    results = crossing(
        node,
        store,
        lambda: node.cancel_invoice(minted.payment_hash),
        lambda: node.settle_invoice(preimage),
        "settle_invoice",
    )
    assert results["first"].state == "CANCELED"
    assert [a["result"] for a in answers] == ["fail"]
    assert isinstance(results["second"], InvoiceNotOpen)
    assert "canceled" in str(results["second"])  # not "still open (not paid yet)"


def test_a_payment_crossing_a_cancel_is_failed_not_held_forever(
    in_process: tuple[ClnHoldNode, Store], sim: ClnSim
) -> None:
    """An HTLC that came as the invoice was canceled: held, it would wait
    for an answer no settle or cancel is left to give, until the payer's
    peer closes the channel to take it back."""
    node, store = in_process
    _, minted = minted_hold(node, store)
    answers: list[dict] = []
    results = crossing(
        node,
        store,
        lambda: node.cancel_invoice(minted.payment_hash),
        lambda: node.on_htlc(*paying_htlc(sim, minted, 1), answers.append),
        "on_htlc",
    )
    assert results["first"].state == "CANCELED" and results["second"] is True
    assert [a["result"] for a in answers] == ["fail"]
    assert minted.payment_hash not in node._held


def test_a_lookup_crossing_a_settle_finds_it_settled(
    in_process: tuple[ClnHoldNode, Store], sim: ClnSim
) -> None:
    """Not "no payment yet" (None), which the expiry sweep would take for
    an invoice nobody paid."""
    node, store = in_process
    preimage, minted = minted_hold(node, store)
    assert node.on_htlc(*paying_htlc(sim, minted, 1), lambda _: None)
    results = crossing(
        node,
        store,
        lambda: node.settle_invoice(preimage),
        lambda: node.lookup_invoice(minted.payment_hash),
        "lookup_invoice",
    )
    assert results["first"].state == "SETTLED"
    assert results["second"] is not None and results["second"].state == "SETTLED"


def test_an_incomplete_multi_part_set_is_failed_after_the_mpp_timeout(
    in_process: tuple[ClnHoldNode, Store], sim: ClnSim
) -> None:
    """As lightningd fails its own invoices' incomplete sets (BOLT 4's
    mpp_timeout): held on, a part would wait until its CLTV expiry, and the
    peer that sent it would close the channel to take it back."""
    node, store = in_process
    node.mpp_timeout = 0.2
    preimage, minted = minted_hold(node, store)
    onion, htlc = paying_htlc(sim, minted, 1)
    first: list[dict] = []
    assert node.on_htlc(onion, {**htlc, "amount_msat": 20_000}, first.append)
    wait_for(lambda: first, "the part to be failed")
    assert first == [{"result": "fail", "failure_message": "0017"}]
    assert minted.payment_hash not in node._held
    assert node.lookup_invoice(minted.payment_hash) is None  # still unpaid, payable again
    # A set that completes in time is held for the settle, whatever the timer does.
    answers: list[dict] = []
    assert node.on_htlc(onion, {**htlc, "id": 2, "amount_msat": 20_000}, answers.append)
    timer = node._held[minted.payment_hash].timer
    assert node.on_htlc(onion, {**htlc, "id": 3, "amount_msat": 40_000}, answers.append)
    assert timer is not None
    timer.join(10)
    assert answers == []
    assert present(node.lookup_invoice(minted.payment_hash)).state == "ACCEPTED"
    node.settle_invoice(preimage)
    assert answers == [{"result": "resolve", "payment_key": preimage}] * 2


def test_a_hold_invoice_lets_the_payer_pay_in_parts(
    in_process: tuple[ClnHoldNode, Store], sim: ClnSim
) -> None:
    """It takes multi-part payments, so it says so (basic_mpp, bit 17), as
    lightningd's own invoices do: a payer splits only an invoice that does."""
    node, store = in_process
    _, minted = minted_hold(node, store)
    decoded = node.decode(minted.payment_request)
    own = int(node.decode(sim.dispatch("invoice", ["any", "own", "own"])["bolt11"])["features"], 16)
    bits = int(decoded["features"], 16)
    assert [b for b in (8, 14, 17) if bits >> b & 1 and own >> b & 1] == [8, 14, 17]
    assert decoded["payee"] == sim.node_id


def test_the_cltv_check_uses_the_height_the_hook_gives(
    in_process: tuple[ClnHoldNode, Store], sim: ClnSim
) -> None:
    """`cltv_expiry_relative` is lightningd's height subtracted from the
    HTLC's expiry: the check needs no `getinfo`, which may fail (the HTLC
    was then taken with no check at all)."""
    node, store = in_process
    _, minted = minted_hold(node, store)
    onion, htlc = paying_htlc(sim, minted, 1)  # 10 blocks to spare at the sim's height
    short = {**htlc, "cltv_expiry_relative": HOLD_CLTV_DELTA - 1}  # one block too few

    def refuse() -> None:
        raise RpcFailure(-1, "getinfo unavailable")

    sim.before["getinfo"] = refuse
    answers: list[dict] = []
    assert node.on_htlc(onion, short, answers.append)
    assert [a["result"] for a in answers] == ["fail"]
    assert minted.payment_hash not in node._held
    enough = {**htlc, "id": 2, "cltv_expiry_relative": HOLD_CLTV_DELTA}
    assert node.on_htlc(onion, enough, answers.append) and len(answers) == 1  # held
    assert sim.calls["getinfo"] == 0  # no call per HTLC


def hold_events(store: Store, payment_hash: str) -> list[str]:
    with store.snapshot() as conn:
        rows = conn.execute(
            "SELECT type FROM events WHERE payment_hash = ? ORDER BY seq", (payment_hash,)
        ).fetchall()
    return [r[0] for r in rows]


def new_plugin_process(node: ClnHoldNode, store: Store, sim: ClnSim) -> ClnHoldNode:
    """The plugin process after lightningd restarted: `node` closed, a new
    one on the same store, with a short `mpp_timeout`."""
    node.close()
    again = ClnHoldNode(sim.socket_path, network="regtest")
    again.attach(store)
    again.mpp_timeout = 0.2
    return again


def apply_next(node: ClnHoldNode, follower: Follower) -> NodeInvoice:
    """Apply the node's next hold update as the follower's hold feed does
    (read from the queue `hold_updates` reads, to fail rather than wait on)."""
    try:
        update = node._updates.get(timeout=30)
    except queue.Empty:
        pytest.fail("no hold update from the node")
    follower.apply([update])
    return update.invoice


def test_replayed_parts_that_never_add_up_cancel_the_invoice(
    in_process: tuple[ClnHoldNode, Store], sim: ClnSim
) -> None:
    """An invoice stored ACCEPTED whose replayed parts (lightningd restarted)
    do not add up: they are failed with mpp_timeout, so it can no longer be
    settled, and it is CANCELED (once, with its event), as lnd never turns
    an ACCEPTED invoice back to OPEN; later HTLCs to the hash are failed."""
    node, store = in_process
    follower = Follower(node, store)
    preimage, minted = minted_hold(node, store)
    onion, htlc = paying_htlc(sim, minted, 1)
    parts = [{**htlc, "amount_msat": 20_000}, {**htlc, "id": 2, "amount_msat": 40_000}]
    for part_htlc in parts:
        assert node.on_htlc(onion, part_htlc, lambda _: None)
    assert apply_next(node, follower).state == "ACCEPTED"
    # lightningd restarts: a new plugin process, and only the first part replayed.
    again = new_plugin_process(node, store, sim)
    try:
        answers: list[dict] = []
        assert again.on_htlc(onion, parts[0], answers.append)
        canceled = apply_next(again, follower)
        assert answers == [{"result": "fail", "failure_message": "0017"}]
        assert canceled.state == "CANCELED"
        with store.snapshot() as conn:
            row = invoices.by_hash(conn, minted.payment_hash, "incoming")
        assert row is not None and row.state == "CANCELED" and row.amount_received_msat == 0
        assert row.cancel_reason == REPLAY_INCOMPLETE.format(timeout=0.2)
        # The sweep's look finds the same, and adds nothing.
        looked = again.lookup_invoice(minted.payment_hash)
        assert looked is not None and looked.state == "CANCELED"
        assert follower.apply([InvoiceUpdate(looked, 0)]) == 0
        assert hold_events(store, minted.payment_hash).count(events.INCOMING_CANCELED) == 1
        with pytest.raises(InvoiceNotOpen, match="canceled"):
            again.settle_invoice(preimage)
        late: list[dict] = []
        assert again.on_htlc(onion, parts[1], late.append)  # the other part, late
        assert again.on_htlc(onion, {**htlc, "id": 9}, late.append)  # a new payment
        assert [a["result"] for a in late] == ["fail", "fail"]
    finally:
        again.close()


@contextmanager
def timer_canceled(
    node: ClnHoldNode, store: Store, sim: ClnSim
) -> Iterator[tuple[ClnHoldNode, StoredInvoice, InvoiceUpdate]]:
    """A hold invoice stored ACCEPTED whose parts lightningd, restarted,
    replays only in part: the new plugin process (yielded) has decided
    CANCELED on its timer and reported it on the hold feed (the update
    yielded), which nothing has stored yet (the row yielded: ACCEPTED)."""
    _, minted = minted_hold(node, store)
    onion, htlc = paying_htlc(sim, minted, 1)
    parts = [{**htlc, "amount_msat": 20_000}, {**htlc, "id": 2, "amount_msat": 40_000}]
    for part_htlc in parts:
        assert node.on_htlc(onion, part_htlc, lambda _: None)
    assert apply_next(node, Follower(node, store)).state == "ACCEPTED"
    again = new_plugin_process(node, store, sim)
    try:
        assert again.on_htlc(onion, parts[0], lambda _: None)
        reported = again._updates.get(timeout=30)
        assert reported.invoice.cancel_reason == REPLAY_INCOMPLETE.format(timeout=0.2)
        with store.snapshot() as conn:
            found = present(invoices.by_hash(conn, minted.payment_hash, "incoming"))
        assert found.state == "ACCEPTED"
        yield again, found, reported
    finally:
        again.close()


def assert_canceled_once(store: Store, payment_hash: str, reason: str) -> None:
    """Stored CANCELED with `reason`, with one canceled event."""
    with store.snapshot() as conn:
        row = present(invoices.by_hash(conn, payment_hash, "incoming"))
    assert (row.state, row.cancel_reason) == ("CANCELED", reason)
    assert hold_events(store, payment_hash).count(events.INCOMING_CANCELED) == 1


def test_an_api_cancel_after_the_timer_decided_one_stores_the_api_reason(
    in_process: tuple[ClnHoldNode, Store], sim: ClnSim
) -> None:
    """Replayed parts that never add up: the timer decides CANCELED with its
    reason and reports it on the hold feed. An API cancel with another
    reason, before the follower has stored that report, is answered CANCELED
    at once (the decision stands, no HTLC is failed twice) and the invoice
    is stored with the API's reason, the one `Follower.cancel` was given;
    the timer's report, applied later, changes nothing."""
    node, store = in_process
    with timer_canceled(node, store, sim) as (again, found, reported):
        follower = Follower(again, store)
        canceled = invoicing.cancel(follower, found, "canceled through the API")
        assert (canceled.state, canceled.cancel_reason) == (
            "CANCELED",
            "canceled through the API",
        )
        assert follower.apply([reported]) == 0
    assert_canceled_once(store, found.payment_hash, "canceled through the API")


def test_the_timers_cancel_applied_while_an_api_cancel_runs_takes_the_api_reason(
    in_process: tuple[ClnHoldNode, Store], sim: ClnSim
) -> None:
    """As above, but the hold feed stores the timer's report while the API
    cancel's node call is in flight (after lnplugin noted its reason): the
    invoice is stored with the API's reason all the same (`Follower.cancel`
    keeps the reason of a cancel in flight, by hash, for this)."""
    node, store = in_process
    with timer_canceled(node, store, sim) as (again, found, reported):
        follower = Follower(again, store)
        results: list[StoredInvoice] = []
        cancel = threading.Thread(
            target=lambda: results.append(
                invoicing.cancel(follower, found, "canceled through the API")
            )
        )
        with again._held_lock:
            cancel.start()
            wait_for(lambda: waits_for_hold_lock(cancel, "cancel_invoice"), "the node call")
            assert follower.apply([reported]) == 1  # the hold feed, meanwhile
        cancel.join(10)
    assert [r.cancel_reason for r in results] == ["canceled through the API"]
    assert_canceled_once(store, found.payment_hash, "canceled through the API")


def test_a_replayed_set_that_completes_stays_accepted(
    in_process: tuple[ClnHoldNode, Store], sim: ClnSim
) -> None:
    """The cancel is for replayed parts that never add up: a replayed set
    that does (all its parts replayed) is held and settled as before."""
    node, store = in_process
    follower = Follower(node, store)
    preimage, minted = minted_hold(node, store)
    onion, htlc = paying_htlc(sim, minted, 1)
    parts = [{**htlc, "amount_msat": 20_000}, {**htlc, "id": 2, "amount_msat": 40_000}]
    for part_htlc in parts:
        assert node.on_htlc(onion, part_htlc, lambda _: None)
    apply_next(node, follower)
    again = new_plugin_process(node, store, sim)
    try:
        answers: list[dict] = []
        assert again.on_htlc(onion, parts[0], answers.append)
        timer = again._held[minted.payment_hash].timer
        assert again.on_htlc(onion, parts[1], answers.append)
        assert timer is not None
        timer.join(10)
        assert answers == []
        again.settle_invoice(preimage)
        assert answers == [{"result": "resolve", "payment_key": preimage}] * 2
        assert events.INCOMING_CANCELED not in hold_events(store, minted.payment_hash)
    finally:
        again.close()


def test_a_plugin_restarted_while_lightningd_runs_cancels_what_it_held(
    plugin: PluginDriver, sim: ClnSim, api: Api
) -> None:
    """lightningd answers the hook calls of a plugin that dies while it runs
    on (PLUGIN_TERMINATED), fails those HTLCs itself (it has no invoice for
    the hash) and never replays them: the invoice stored ACCEPTED is
    CANCELED when the plugin is started again, not left ACCEPTED with
    nothing held, which a shop would take for paid and could not settle."""
    preimage, payment_hash = _pair()
    inv = hold_invoice(api, sim, payment_hash)
    held = plugin.call_later("htlc_accepted", part(plugin, sim, inv, 60_000, 1))
    wait_for(lambda: state(api, payment_hash)["state"] == "ACCEPTED", "ACCEPTED")
    token = plugin.admin_token
    plugin.kill()  # the plugin alone: lightningd runs on
    with pytest.raises(PluginError, match="'code': -4"):
        held.result()
    plugin.start(startup=False)  # `lightning-cli plugin start`
    again = Api(plugin.url, token)
    try:

        def canceled_invoice() -> dict[str, Any] | None:
            reply = again.session.get(f"{again.url}/invoices/{payment_hash}", timeout=10)
            found = reply.json() if reply.status_code == 200 else None
            return found if found is not None and found["state"] == "CANCELED" else None

        got = wait_for(canceled_invoice, "CANCELED")
        assert got["cancel_reason"] == PLUGIN_RESTARTED
        assert got["amount_received_msat"] == 0
        r = again.session.post(
            f"{again.url}/invoices/{payment_hash}/settle", json={"preimage": preimage}, timeout=10
        )
        assert r.status_code == 409, r.text
        canceled = e2e.scalar(
            plugin.data_dir,
            "SELECT COUNT(*) FROM events WHERE payment_hash = ? AND type = ?",
            payment_hash,
            events.INCOMING_CANCELED,
        )
        assert canceled == (1,)
    finally:
        again.close()


def test_held_invoices_lightningd_does_not_replay_are_canceled(
    in_process: tuple[ClnHoldNode, Store], sim: ClnSim
) -> None:
    """At lightningd's start the held HTLCs are replayed right after `init`;
    an ACCEPTED invoice none of whose HTLCs came within `mpp_timeout` has
    lost them (resolved while lightningd was down) and is CANCELED; one
    replayed is held and settled as before."""
    node, store = in_process
    follower = Follower(node, store)
    paid = []
    for n in (1, 2):
        preimage, minted = minted_hold(node, store)
        onion, htlc = paying_htlc(sim, minted, n)
        assert node.on_htlc(onion, htlc, lambda _: None)
        assert apply_next(node, follower).state == "ACCEPTED"
        paid.append((preimage, minted, onion, htlc))
    again = new_plugin_process(node, store, sim)
    try:
        (preimage, replayed, onion, htlc), (_, lost, _, _) = paid
        answers: list[dict] = []
        assert again.on_htlc(onion, htlc, answers.append)  # replayed (before the check runs)
        assert apply_next(again, follower).state == "ACCEPTED"  # again: no change
        again.expect_replays(startup=True)
        canceled = apply_next(again, follower)
        assert (canceled.payment_hash, canceled.state) == (lost.payment_hash, "CANCELED")
        with store.snapshot() as conn:
            row = invoices.by_hash(conn, lost.payment_hash, "incoming")
            kept = invoices.by_hash(conn, replayed.payment_hash, "incoming")
        assert row is not None and row.cancel_reason == NOT_REPLAYED.format(timeout=0.2)
        assert kept is not None and kept.state == "ACCEPTED"
        again.settle_invoice(preimage)
        assert answers == [{"result": "resolve", "payment_key": preimage}]
        assert hold_events(store, lost.payment_hash).count(events.INCOMING_CANCELED) == 1
    finally:
        again.close()


def test_why_lnplugin_canceled_survives_a_crash_before_the_invoice_is_stored(
    sim: ClnSim, tmp: Path
) -> None:
    """The decision to cancel is stored before any HTLC is failed; the
    invoice's CANCELED (with the reason) only after, by the follower. A
    crash in between left the reason in memory: the next process found the
    decision and stored "canceled on the node". Here the real hold code
    decides each kind of cancel (through the API, replays that never add up,
    replays missing after a plugin restart) and the process "dies" before
    the follower stores it; a real plugin process started on the same data
    dir then shows each invoice CANCELED with its real reason."""
    data = tmp / "lnp"
    data.mkdir()
    store = Store(data / "lnplugin.sqlite")
    node = ClnHoldNode(sim.socket_path, network="regtest")
    node.attach(store)
    follower = Follower(node, store)
    by_api_reason = "canceled through the API"
    try:
        _, by_api = minted_hold(node, store)
        _, unheld = minted_hold(node, store)
        _, partial = minted_hold(node, store)
        onion, htlc = paying_htlc(sim, partial, 3)
        parts = [{**htlc, "amount_msat": 20_000}, {**htlc, "id": 4, "amount_msat": 40_000}]
        for n, minted in ((1, by_api), (2, unheld)):
            assert node.on_htlc(*paying_htlc(sim, minted, n), lambda _: None)
        for part_htlc in parts:
            assert node.on_htlc(onion, part_htlc, lambda _: None)
        for _ in range(3):
            assert apply_next(node, follower).state == "ACCEPTED"
        # `Follower.cancel`'s node call; the process dies before its `apply`.
        assert node.cancel_invoice(by_api.payment_hash, by_api_reason).state == "CANCELED"
        # lightningd restarts with a new plugin process: it replays one part
        # of `partial` (never the rest) and nothing of `unheld`.
        again = new_plugin_process(node, store, sim)
        try:
            assert again.on_htlc(onion, parts[0], lambda _: None)
            again.expect_replays(startup=True)
            # Both cancels decided (each reported on the hold feed); the
            # process dies before the follower stores either.
            reported = {again._updates.get(timeout=30).invoice.payment_hash for _ in range(2)}
            assert reported == {unheld.payment_hash, partial.payment_hash}
        finally:
            again.close()
        with store.snapshot() as conn:
            for minted in (by_api, unheld, partial):
                row = invoices.by_hash(conn, minted.payment_hash, "incoming")
                assert row is not None and row.state == "ACCEPTED"  # as the crash left it
    finally:
        store.close()

    restarted = PluginDriver(sim, data)
    restarted.start()
    api = Api(restarted.url, restarted.admin_token)
    try:
        expected = {
            by_api.payment_hash: by_api_reason,
            unheld.payment_hash: NOT_REPLAYED.format(timeout=0.2),
            partial.payment_hash: REPLAY_INCOMPLETE.format(timeout=0.2),
        }
        for payment_hash, reason in expected.items():
            got = wait_for(
                lambda h=payment_hash: (i := state(api, h))["state"] == "CANCELED" and i,
                "CANCELED",
            )
            assert got["cancel_reason"] == reason
    finally:
        api.close()
        restarted.shutdown()


def test_close_stops_the_timers_and_waits_for_one_running(sim: ClnSim) -> None:
    """A timer still deciding a cancel when the service closed the store
    under it used the connection as it was closed: a segfault in sqlite3
    (seen once in the suite). `close` now cancels the timers not yet due
    and waits for a running one, before the service closes the store."""
    node = ClnHoldNode(sim.socket_path, network="regtest")
    started, finished, never = threading.Event(), threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        time.sleep(0.3)
        finished.set()

    node._later(0.0, slow)
    pending = node._later(3600.0, never.set)
    assert started.wait(30)
    node.close()
    assert finished.is_set()  # close returned only after the running timer
    pending.join(30)  # cancelled: its thread ends without running it
    assert not pending.is_alive() and not never.is_set()
    assert node._timers == set()
