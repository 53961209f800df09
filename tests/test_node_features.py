"""What each node declares it can do, and that callers go by the declaration.

A node's optional abilities are `Node.features`; callers ask `has_feature`
instead of probing with `getattr`, so these lists are the contract.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from lnplugin.follower import Follower
from lnplugin.nodes.base import (
    DevPayments,
    Feature,
    FeedHead,
    HoldInvoices,
    NetworkMismatch,
    Node,
    NodeDecode,
    NodeError,
    Unsupported,
)
from lnplugin.nodes.cln import ClnNode
from lnplugin.nodes.cln.hold import ClnHoldNode
from lnplugin.nodes.dev import DevNode
from lnplugin.nodes.lnd import LndNode
from lnplugin.store import Store
from lnplugin_sim.lnd_sim import ADMIN_PERMISSIONS, INVOICE_PERMISSIONS, mint_macaroon


def test_each_node_declares_exactly_its_features() -> None:
    assert DevNode.features == {
        Feature.KEYSEND_RECORDS,
        Feature.DEV_PAYMENTS,
        Feature.HOLD_INVOICES,
        Feature.FEED_HEAD,
    }
    assert LndNode.features == {
        Feature.KEYSEND_RECORDS,
        Feature.OUTGOING_HISTORY,
        Feature.HOLD_INVOICES,
        Feature.FEED_HEAD,
    }
    assert ClnNode.features == {
        Feature.CAPTURED_RECORDS,
        Feature.OUTGOING_HISTORY,
        Feature.NODE_DECODE,
        Feature.FEED_HEAD,
    }
    # Plugin mode sees every HTLC, so it can hold them; standalone cannot.
    assert ClnHoldNode.features == ClnNode.features | {Feature.HOLD_INVOICES}


_HOLD_RPCS = [
    f"uri:/invoicesrpc.Invoices/{m}" for m in ("AddHoldInvoice", "SettleInvoice", "CancelInvoice")
]


@pytest.mark.parametrize(
    ("permissions", "lacking"),
    [
        (ADMIN_PERMISSIONS, []),
        (INVOICE_PERMISSIONS, []),  # lnd's stock invoice.macaroon
        ({"invoices:read", "uri:/lnrpc.Lightning/AddInvoice", *_HOLD_RPCS}, []),
        ({"invoices:read", "uri:/lnrpc.Lightning/AddInvoice"}, _HOLD_RPCS),
        ({"invoices:read", *_HOLD_RPCS[:2]}, _HOLD_RPCS[2:]),
    ],
)
def test_an_lnd_macaroon_without_the_hold_methods_rules_hold_invoices_out(
    tmp_path: Path, permissions: set[str], lacking: list[str]
) -> None:
    """Read from the macaroon lnplugin is given (no node needed): all three
    hold methods, or no hold invoices, with the reason naming each one missing."""
    path = tmp_path / "lnplugin.macaroon"
    path.write_bytes(mint_macaroon(frozenset(permissions)))
    node = LndNode("127.0.0.1:1", cert=None, macaroon=path)
    try:
        assert node.has_feature(Feature.HOLD_INVOICES) == (not lacking)
        assert node.features | {Feature.HOLD_INVOICES} == LndNode.features
        reason = node.unavailable.get(Feature.HOLD_INVOICES)
        if lacking:
            assert reason is not None
            for method in lacking:
                assert method in reason
            assert all(m in lacking or m not in reason for m in _HOLD_RPCS)
        else:
            assert reason is None
    finally:
        node.close()
    assert LndNode.features == {  # the class's declaration is untouched
        Feature.KEYSEND_RECORDS,
        Feature.OUTGOING_HISTORY,
        Feature.HOLD_INVOICES,
        Feature.FEED_HEAD,
    }


def test_a_macaroon_lnplugin_cannot_read_leaves_hold_invoices_to_lnd() -> None:
    """No macaroon, or one not in lnd's format: lnd decides, call by call."""
    for macaroon in (None, "00" * 40):
        node = LndNode("127.0.0.1:1", cert=None, macaroon=macaroon)
        assert node.has_feature(Feature.HOLD_INVOICES) and not node.unavailable
        node.close()


def test_a_node_without_hold_invoices_says_why() -> None:
    assert "run lnplugin as a CLN plugin" in ClnNode.unavailable[Feature.HOLD_INVOICES]
    assert not ClnHoldNode.unavailable and not DevNode.unavailable


def test_declared_protocols_are_implemented() -> None:
    for cls in (DevNode, LndNode, ClnNode, ClnHoldNode):
        assert (Feature.DEV_PAYMENTS in cls.features) == issubclass(cls, DevPayments), cls
        assert (Feature.NODE_DECODE in cls.features) == issubclass(cls, NodeDecode), cls
        assert (Feature.FEED_HEAD in cls.features) == issubclass(cls, FeedHead), cls
        assert (Feature.HOLD_INVOICES in cls.features) == issubclass(cls, HoldInvoices), cls
        declares_outgoing = Feature.OUTGOING_HISTORY in cls.features
        assert declares_outgoing == (cls.outgoing_payments is not Node.outgoing_payments), cls


def test_the_interface_stays_small() -> None:
    methods = [
        name
        for name, member in inspect.getmembers(Node, inspect.isfunction)
        if not name.startswith("_")
    ]
    assert sorted(methods) == [
        "check_network",
        "close",
        "create_invoice",
        "get_info",
        "has_feature",
        "lookup_invoice",
        "node_alias",
        "outgoing_payments",
        "settled_since",
        "settlements",
    ]


def test_a_node_without_outgoing_history_is_not_asked(tmp_path: Path) -> None:
    node = DevNode(tmp_path / "dev")
    with pytest.raises(Unsupported):
        node.outgoing_payments(0)
    store = Store(tmp_path / "store.sqlite")
    follower = Follower(node, store)
    follower.sweep()  # would raise Unsupported if the follower asked anyway
    assert follower.status.outgoing == "ok"
    assert follower.status.last_sweep_at is not None
    node.close()
    store.close()


def test_one_network_mismatch_for_every_node(tmp_path: Path) -> None:
    node = DevNode(tmp_path / "dev", "regtest")
    assert node.check_network().network == "regtest"
    with pytest.raises(NetworkMismatch, match=r"dev node is on regtest .* configured for signet"):
        node.check_network("signet")
    assert issubclass(NetworkMismatch, NodeError)
    node.close()


def test_cursor_kind_defaults_to_untracked(tmp_path: Path) -> None:
    node = DevNode(tmp_path / "dev")
    assert node.cursor_kind is None  # one meaning: the follower records nothing
    store = Store(tmp_path / "store.sqlite")
    Follower(node, store).sweep()
    assert store.conn.execute("SELECT COUNT(*) FROM cursor_kinds").fetchone()[0] == 0
    node.close()
    store.close()
