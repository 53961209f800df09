"""The embedded dev node on its own: key, invoices, simulated payments and the settlement feed."""

from __future__ import annotations

import hashlib
import itertools
import os
import stat
import threading

import bolt11 as pypi_bolt11
import pytest

from lnplugin import bolt11
from lnplugin.nodes.base import InvoiceNotFound, InvoiceNotOpen, InvoiceRequest, NodeError
from lnplugin.nodes.dev import KEY_FILE, DevNode
from lnplugin.nodes.dev.node import CHANGES_AFTER


@pytest.fixture
def node(tmp_path):
    node = DevNode(tmp_path / "dev")
    yield node
    node.close()


def mint(node: DevNode, amount_msat: int | None = 5000, **kw) -> str:
    return node.create_invoice(InvoiceRequest(amount_msat=amount_msat, **kw)).payment_request


def age(node: DevNode, payment_hash: str, seconds: int) -> None:
    """Pretend the invoice was created `seconds` earlier."""
    node._conn.execute(
        "UPDATE dev_invoices SET created_at = created_at - ? WHERE payment_hash = ?",
        (seconds, payment_hash),
    )


# -- identity --------------------------------------------------------------------------------


def test_node_key_persists_across_instances(tmp_path):
    first = DevNode(tmp_path / "dev")
    second = DevNode(tmp_path / "dev")
    assert first.pubkey == second.pubkey
    assert DevNode(tmp_path / "other").pubkey != first.pubkey


def test_node_key_file_is_readable_by_the_owner_only(node):
    mode = stat.S_IMODE(os.stat(node.data_dir / KEY_FILE).st_mode)
    assert mode == 0o600


def test_get_info_says_it_is_not_connected_to_any_network(node):
    info = node.get_info()
    assert info.kind == "dev" and info.network == "regtest"
    assert info.pubkey == node.pubkey and len(info.pubkey) == 66
    assert info.connected_to_network is False


# -- minting -----------------------------------------------------------------------------------


def test_invoices_are_signed_by_the_node_key_and_decode_with_the_bolt11_package(node):
    pr = mint(node, 5000, description="dev", expiry=600)
    assert pr.startswith("lnbcrt50n1")
    for decoded in (bolt11.decode(pr), pypi_bolt11.decode(pr)):
        assert decoded.payee == node.pubkey
        assert decoded.amount_msat == 5000
        assert decoded.description == "dev"
        assert decoded.expiry == 600
        assert decoded.payment_secret


@pytest.mark.parametrize(
    ("network", "prefix"),
    [("regtest", "lnbcrt"), ("bitcoin", "lnbc"), ("testnet", "lntb"), ("signet", "lntbs")],
)
def test_invoice_prefix_follows_the_configured_network(tmp_path, network, prefix):
    pr = mint(DevNode(tmp_path, network=network), 1000)
    assert pr.startswith(prefix + "10n1")
    assert bolt11.decode(pr).network == network


def test_each_invoice_has_its_own_preimage_kept_by_the_node(node):
    a = node.create_invoice(InvoiceRequest(amount_msat=1000))
    b = node.create_invoice(InvoiceRequest(amount_msat=1000))
    assert a.payment_hash != b.payment_hash
    assert a.preimage is None  # not revealed before settlement
    paid = node.pay(a.payment_hash)
    assert hashlib.sha256(bytes.fromhex(paid.preimage)).hexdigest() == a.payment_hash


# -- paying ------------------------------------------------------------------------------------


def test_pay_by_payment_hash_settles_the_invoice(node):
    inv = node.create_invoice(InvoiceRequest(amount_msat=5000))
    paid = node.pay(inv.payment_hash)
    assert paid.state == "SETTLED"
    assert paid.amount_received_msat == 5000
    assert paid.settled_at is not None
    assert node.lookup_invoice(inv.payment_hash).state == "SETTLED"


def test_pay_by_bolt11_settles_the_invoice(node):
    pr = mint(node, 5000)
    assert node.pay(pr).state == "SETTLED"


def test_pay_accepts_a_lightning_prefix_and_surrounding_spaces(node):
    pr = mint(node, 5000)
    assert node.pay(f"  lightning:{pr}\n").state == "SETTLED"


def test_an_amountless_invoice_needs_an_amount(node):
    pr = mint(node, None)
    with pytest.raises(NodeError, match="amount"):
        node.pay(pr)
    assert node.pay(pr, 1234).amount_received_msat == 1234


def test_paying_less_than_the_invoice_amount_is_refused(node):
    pr = mint(node, 5000)
    with pytest.raises(NodeError, match="less than"):
        node.pay(pr, 4999)
    assert node.pay(pr, 6000).amount_received_msat == 6000  # overpaying is allowed


def test_paying_twice_is_refused_and_counted_once(node):
    inv = node.create_invoice(InvoiceRequest(amount_msat=5000))
    node.pay(inv.payment_hash)
    with pytest.raises(InvoiceNotOpen, match="settled"):
        node.pay(inv.payment_hash)
    settled = list(node.settled_since(0))
    assert [u.invoice.payment_hash for u in settled] == [inv.payment_hash]


def test_paying_an_expired_invoice_is_refused(node):
    inv = node.create_invoice(InvoiceRequest(amount_msat=5000, expiry=60))
    age(node, inv.payment_hash, 61)
    with pytest.raises(InvoiceNotOpen, match="expired"):
        node.pay(inv.payment_hash)
    assert list(node.settled_since(0)) == []


def test_paying_an_unknown_invoice_is_not_found(node, tmp_path):
    with pytest.raises(InvoiceNotFound):
        node.pay("ab" * 32)
    stranger = mint(DevNode(tmp_path / "stranger"), 1000)
    with pytest.raises(InvoiceNotFound):
        node.pay(stranger)


def test_paying_garbage_says_what_was_expected(node):
    with pytest.raises(NodeError, match="not a payment hash or a valid BOLT11"):
        node.pay("nonsense")


def test_a_payment_made_by_another_process_is_visible(tmp_path):
    server_side = DevNode(tmp_path)
    inv = server_side.create_invoice(InvoiceRequest(amount_msat=1000))
    DevNode(tmp_path).pay(inv.payment_hash)  # like `lnplugin dev pay` from a shell
    seen = server_side.lookup_invoice(inv.payment_hash)
    assert seen is not None and seen.state == "SETTLED"


# -- keysend -----------------------------------------------------------------------------------


def test_keysend_creates_a_settled_invoice_with_its_records(node):
    records = {7629169: b'{"action":"boost"}', 34349334: b"hi", 696969: b"\x00\x01"}
    paid = node.keysend(21_000, records)
    assert paid.state == "SETTLED" and paid.is_keysend
    assert paid.payment_request == ""
    assert paid.amount_received_msat == 21_000
    assert dict(paid.custom_records) == records
    assert hashlib.sha256(bytes.fromhex(paid.preimage)).hexdigest() == paid.payment_hash


def test_keysend_needs_a_positive_amount(node):
    with pytest.raises(NodeError):
        node.keysend(0, {})


# -- the feed ----------------------------------------------------------------------------------


def test_settle_index_increases_by_one_per_settlement(node):
    for _ in range(3):
        node.pay(mint(node))
    node.keysend(1000, {})
    assert [u.cursor for u in node.settled_since(0)] == [1, 2, 3, 4]


def test_the_feed_resumes_after_a_cursor(node):
    hashes = [node.pay(mint(node)).payment_hash for _ in range(5)]
    resumed = list(node.settled_since(2))
    assert [u.invoice.payment_hash for u in resumed] == hashes[2:]
    assert [u.cursor for u in resumed] == [3, 4, 5]
    assert list(node.settled_since(5)) == []


def test_the_live_feed_yields_the_backlog_then_new_payments(node):
    first = node.pay(mint(node)).payment_hash
    feed = node.settlements(0)
    assert next(feed).invoice.payment_hash == first
    second = node.pay(mint(node)).payment_hash
    update = next(feed)
    assert (update.invoice.payment_hash, update.cursor) == (second, 2)
    assert update.invoice.preimage is not None


def test_the_live_feed_from_a_cursor_skips_what_was_applied(node):
    for _ in range(3):
        node.pay(mint(node))
    feed = node.settlements(2)
    assert next(feed).cursor == 3


def test_the_live_feed_ends_when_the_node_closes(node):
    feed = node.settlements(0)
    node.close()
    assert list(itertools.islice(feed, 5)) == []


def test_open_invoices_are_not_in_the_feed(node):
    mint(node)
    assert list(node.settled_since(0)) == []


def test_threads_minting_at_once_queue_on_the_nodes_lock_not_in_sqlites_busy_handler(node):
    # Each thread's connection gets no busy timeout: two INSERTs meeting in
    # SQLite would fail with "database is locked" at once, so only the node's
    # own write lock lets all of them through.
    errors: list[BaseException] = []
    minted: list[str] = []

    def mint_many() -> None:
        try:
            node._conn.execute("PRAGMA busy_timeout = 0")
            for _ in range(40):
                minted.append(mint(node))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=mint_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(minted)) == 8 * 40


def test_the_hold_feed_reads_changes_through_an_index(node: DevNode) -> None:
    """The hold feed asks for changes past its position every 50 ms; a scan
    of every invoice each time cost a busy dev node more than a request did."""
    plan = " ".join(
        row[3] for row in node._conn.execute(f"EXPLAIN QUERY PLAN {CHANGES_AFTER}", (0,))
    )
    assert "USING INDEX dev_invoices_change_index" in plan, plan
