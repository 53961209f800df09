"""The one seam between lnplugin and a Lightning node.

Every node (the embedded dev node, LND, Core Lightning) implements `Node`. The
follower only ever sees these types, so a new node kind plugs in without
touching the follower, the store or the API: what differs between nodes is
either a method of `Node`, a documented class attribute (`cursor_kind`,
`outgoing_poll_interval`) or a `Feature` the node declares. Callers ask
`has_feature()` rather than probing for methods with `getattr`, so what a
node can do is visible in one line of its class.

The settlement feed is resumable: `settlements(cursor)` yields every invoice
state change *after* `cursor`, backlog first, then live. The follower persists
the cursor of each applied update in the same transaction as the update, so a
crash or a dropped connection resumes exactly where it stopped. (LNbits' feed
yields bare hashes from "now" on, which is why it misses payments.)
"""

from __future__ import annotations

import abc
import enum
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from lnplugin.networks import CURRENCY_BY_NETWORK, NETWORKS

# ACCEPTED: a hold invoice whose HTLCs for the full amount are locked in,
# waiting for lnplugin to settle (with the preimage) or cancel it.
InvoiceState = Literal["OPEN", "ACCEPTED", "SETTLED", "CANCELED", "EXPIRED"]


class Feature(enum.Enum):
    """An optional ability a node declares in `Node.features`.

    Only abilities lnplugin uses are listed; a node declares exactly the ones
    it implements, and `tests/test_node_features.py` holds each node to that.
    """

    # Settled keysend invoices carry the payment's custom TLV records
    # (boostagrams, messages) in the node's own listing.
    KEYSEND_RECORDS = "keysend_records"
    # The node's listing never shows keysend TLVs; they reach lnplugin out of
    # band (CLN plugin mode's `htlc_accepted` hook) and are stored with
    # `store.captured_records`, which the follower joins by payment hash.
    CAPTURED_RECORDS = "captured_records"
    # `outgoing_payments` lists the node's settled outgoing payments.
    OUTGOING_HISTORY = "outgoing_history"
    # The node decodes payment requests itself (CLN `decode`); see `NodeDecode`.
    NODE_DECODE = "node_decode"
    # Simulated payments (`POST /dev/pay`, `/dev/keysend`); see `DevPayments`.
    DEV_PAYMENTS = "dev_payments"
    # The node tells its current feed position without listing; see `FeedHead`.
    FEED_HEAD = "feed_head"
    # Hold invoices: minted for a payment hash without the preimage, held
    # ACCEPTED until settled or canceled, and cancel of any open invoice;
    # see `HoldInvoices`.
    HOLD_INVOICES = "hold_invoices"


class NodeError(Exception):
    """A node refused a request; the message is safe to show to API clients."""

    # The node's own numeric error code when it reports one (Core Lightning's
    # JSON-RPC codes), kept so a caller can tell refusals apart without parsing text.
    code: int | None = None


class NodeUnavailable(NodeError):
    """The node cannot be reached right now; callers retry or answer 503."""


class NodeNotTrusted(NodeUnavailable):
    """The node answered, but could not prove it is the node lnplugin was
    told to trust (lnd's TLS certificate does not verify against --lnd-cert).

    Waiting does not mend it, so `serve` refuses to start on it. Once running
    it is still "unavailable" (calls answer 503, the follower retries): lnd
    may be given its old certificate back. The message is one line naming
    the setting."""


class NodeCredentialsRejected(NodeUnavailable):
    """The node refused the credentials themselves, whatever was asked: none
    were sent, or they are not the node's (lnd: a macaroon it cannot verify,
    whose root key it lacks, expired, or locked to another IP address).
    Unlike `NodePermissionDenied` (valid credentials that lack one
    permission), nothing works with them.

    As `NodeNotTrusted`: waiting does not mend it, so `serve` refuses to
    start on it; once running it is still "unavailable" (calls answer 503,
    the follower retries): the operator may put the right file back. The
    message is one line naming the setting."""


class NodeMisconfigured(NodeError):
    """A node setting that cannot work (missing file, unreadable credentials):
    lnplugin must not start with it, unlike a node that is merely unreachable.
    The message is one line naming the setting."""


class NodePermissionDenied(NodeError):
    """The credentials lack a permission (e.g. LND's invoice.macaroon has no info:read)."""


class InvoiceNotFound(NodeError):
    """The node has no invoice with that payment hash."""


class InvoiceNotOpen(NodeError):
    """The invoice exists but can no longer be paid (settled, expired or canceled)."""


class RequestNotSupported(NodeError):
    """The node cannot make what the request asks (a parameter it has no way
    to honour), so the client must ask differently: callers answer a 400
    naming `field`, not a node failure a retry could cure (502)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class NetworkMismatch(NodeError):
    """The node runs on a different network than lnplugin is configured for."""


class Unsupported(NodeError):
    """The node does not have the `Feature` the call needs."""


@dataclass(frozen=True, slots=True)
class NodeInfo:
    kind: str  # "dev" | "lnd" | "cln"
    pubkey: str | None
    alias: str | None = None
    network: str | None = None  # None when the node would not tell us (permissions)
    version: str | None = None
    # False for the embedded dev node: it is not connected to any Lightning network.
    connected_to_network: bool = True
    block_height: int | None = None


@dataclass(frozen=True, slots=True)
class InvoiceRequest:
    """What lnplugin asks a node to mint. Amounts are integer msat."""

    amount_msat: int | None  # None = any amount
    description: str | None = None
    # Hex SHA-256 for the BOLT11 `h`. Given alone, the node puts it as is (the
    # dev node, LND; CLN refuses). Given with `description`, it must be the
    # hash of that text, which nodes that can only hash a description
    # themselves (CLN's `deschashonly`) use; the others ignore the text.
    description_hash: str | None = None
    expiry: int = 86400
    private_route_hints: bool = False
    # The final CLTV delta the invoice asks for (for a hold invoice: how many
    # blocks a payment may be held). None = the node's own default (hold
    # invoices: 80; regular ones: the node's, e.g. 18 on the dev node).
    min_final_cltv_expiry_delta: int | None = None


@dataclass(frozen=True, slots=True)
class NodeInvoice:
    """An invoice as the node sees it. Amounts are integer msat, times unix seconds."""

    payment_hash: str
    payment_request: str  # "" for keysend payments that have no BOLT11
    state: InvoiceState
    amount_msat: int | None  # None = any amount
    created_at: int
    expiry: int
    description: str | None = None
    description_hash: str | None = None
    amount_received_msat: int = 0
    settled_at: int | None = None
    preimage: str | None = None  # hex; exposed by the API only once settled
    payment_secret: str | None = None
    custom_records: Mapping[int, bytes] = field(default_factory=dict)
    is_keysend: bool = False
    # ACCEPTED hold invoices: the block height at which the earliest held HTLC
    # expires. The invoice must be settled or canceled before it, or the
    # node's peer force-closes the channel to claim the HTLC back on chain.
    settle_deadline: int | None = None
    # CANCELED by lnplugin's own node code rather than asked for (Core
    # Lightning plugin mode: the held HTLCs are gone): why, for the invoice
    # and its event. None: "canceled on the node", or the caller's reason.
    cancel_reason: str | None = None

    @property
    def expires_at(self) -> int:
        return self.created_at + self.expiry


@dataclass(frozen=True, slots=True)
class InvoiceUpdate:
    """One entry of the node's settlement feed.

    `cursor` is the node's own monotonically increasing feed position (LND
    settle_index, CLN updated_index or pay_index, the dev node's settle_index).
    The follower stores it with the update; 0 means "not a feed position" (a
    reconciliation lookup) and never moves the cursor.
    """

    invoice: NodeInvoice
    cursor: int


@dataclass(frozen=True, slots=True)
class OutgoingPayment:
    """A settled outgoing payment. `cursor` is the node's payment index."""

    payment_hash: str
    amount_msat: int
    fee_msat: int
    created_at: int
    settled_at: int | None
    cursor: int
    preimage: str | None = None
    payment_request: str = ""
    destination: str | None = None
    description: str | None = None
    custom_records: Mapping[int, bytes] = field(default_factory=dict)


class Node(abc.ABC):
    """A Lightning node lnplugin runs beside.

    Methods raise `NodeUnavailable` when the node cannot be reached and
    `NodePermissionDenied` when the credentials do not allow the call.
    """

    kind: str = "abstract"
    # The optional abilities this node has (see `Feature`); none by default.
    # A node whose credentials or mode rule one out declares it without it
    # (an instance may narrow its class's set) and says why in `unavailable`.
    features: frozenset[Feature] = frozenset()
    # Why a feature other nodes of this kind can have is missing here, one
    # line naming what to change (a permission to bake, a mode to run in):
    # callers put it in their refusals, so an operator is told the fix.
    unavailable: Mapping[Feature, str] = {}
    # The network lnplugin is configured for; `check_network` compares with it.
    network: str | None = None
    # How often the follower asks `outgoing_payments` for new payments. Nodes
    # list them incrementally from a cursor, so asking often is cheap and a
    # payment made while lnplugin runs shows up within seconds.
    outgoing_poll_interval: float = 5.0

    def has_feature(self, feature: Feature) -> bool:
        return feature in self.features

    @property
    def cursor_kind(self) -> str | None:
        """What the feed position (`InvoiceUpdate.cursor`) counts, when that can change.

        A node whose cursor meaning can change (CLN before/after 23.08: pay_index
        or updated_index) says which one it uses now; the follower stores it and
        re-reads the feed from 0 when it changes (duplicates are harmless,
        misses are not). Default None: the cursor has one meaning, nothing to track.
        """
        return None

    @property
    def outgoing_cursor_kind(self) -> str | None:
        """What the outgoing cursor (`OutgoingPayment.cursor`) counts, as
        `cursor_kind` for the settlement feed: the follower re-reads the
        outgoing history from 0 when it differs from the one recorded (or none
        is, and the cursor is not 0). Default None: nothing to track."""
        return None

    @abc.abstractmethod
    def get_info(self) -> NodeInfo: ...

    def check_network(self, expected: str | None = None) -> NodeInfo:
        """`get_info`, raising `NetworkMismatch` when the node is on another
        network than `expected` (default: the configured `network`).

        A node that does not say its network passes; `get_info` raises
        `NodePermissionDenied` when the credentials may not ask (LND's stock
        invoice.macaroon), and the caller logs that the check was skipped.
        """
        expected = expected or self.network
        info = self.get_info()
        if expected is not None and info.network is not None and info.network != expected:
            raise NetworkMismatch(
                f"the {self.kind} node is on {info.network} but lnplugin is configured for "
                f"{expected}; set --network {info.network} (LNPLUGIN_NETWORK) or point "
                f"lnplugin at a {expected} node"
            )
        return info

    @abc.abstractmethod
    def create_invoice(self, request: InvoiceRequest) -> NodeInvoice: ...

    @abc.abstractmethod
    def lookup_invoice(self, payment_hash: str) -> NodeInvoice | None: ...

    @abc.abstractmethod
    def settlements(self, cursor: int) -> Iterator[InvoiceUpdate]:
        """Yield every state change after `cursor`: backlog first, then live.

        Blocks waiting for live events; ends (or raises `NodeUnavailable`) when
        the connection drops, and the follower calls it again with its
        persisted cursor. Duplicates are allowed; the store deduplicates.
        Implementations must return promptly after `close()`.
        """

    @abc.abstractmethod
    def settled_since(self, cursor: int) -> Iterator[InvoiceUpdate]:
        """A finite listing of settled invoices after `cursor`, for the sweep."""

    def outgoing_payments(self, cursor: int) -> Iterator[OutgoingPayment]:
        """Settled outgoing payments after `cursor`, oldest first (finite).

        Only called on nodes with `Feature.OUTGOING_HISTORY`."""
        raise Unsupported(f"the {self.kind} node has no outgoing payment history")

    def node_alias(self, pubkey: str) -> str | None:
        """The alias of another node, for decoded invoices; None when unknown."""
        return None

    def close(self) -> None:
        """Release connections and wake any blocked `settlements` iterator."""


@runtime_checkable
class DevPayments(Protocol):
    """Simulated payments, on nodes with `Feature.DEV_PAYMENTS` (the dev node).

    A protocol rather than `Node` methods: no real node can pay itself, so
    the interface every node implements stays free of them.
    """

    def pay(self, target: str, amount_msat: int | None = None) -> NodeInvoice:
        """Pay an open invoice given its BOLT11 or payment hash: it settles, or
        (a hold invoice) becomes ACCEPTED.

        Raises `InvoiceNotFound`, `InvoiceNotOpen` or `NodeError` (amount)."""
        ...

    def keysend(self, amount_msat: int, records: Mapping[int, bytes]) -> NodeInvoice:
        """Receive a spontaneous payment carrying custom TLV records."""
        ...


@runtime_checkable
class HoldInvoices(Protocol):
    """Hold invoices and cancel, on nodes with `Feature.HOLD_INVOICES`.

    A protocol rather than `Node` methods: standalone Core Lightning cannot
    hold an HTLC, so those nodes declare nothing and the API answers 501.
    Settlements of hold invoices come through `Node.settlements` like any
    other; ACCEPTED (with `settle_deadline`) and CANCELED come through
    `hold_updates`, because nodes do not put them on their settlement feed
    (LND's SubscribeInvoices leaves them out), and through `lookup_invoice`,
    which the follower's sweep asks for every invoice it holds.
    """

    def create_hold_invoice(self, request: InvoiceRequest, payment_hash: str) -> NodeInvoice:
        """Mint an invoice for `payment_hash`; the node never learns the preimage
        until `settle_invoice`."""
        ...

    def settle_invoice(self, preimage: str) -> NodeInvoice:
        """Settle the ACCEPTED hold invoice of sha256(preimage).

        Raises `InvoiceNotFound`, or `InvoiceNotOpen` when it is not ACCEPTED."""
        ...

    def cancel_invoice(self, payment_hash: str, reason: str | None = None) -> NodeInvoice:
        """Cancel an open (hold or regular) or ACCEPTED invoice; held HTLCs
        are failed back and later payments are refused. Canceling a canceled
        invoice is a no-op. `reason` (why lnplugin cancels it) is kept with
        the cancel by a node whose hold decisions lnplugin stores (Core
        Lightning plugin mode), so its lookup still tells it after a restart;
        the others keep none (the follower notes it on the invoice's row
        before it asks, `Follower.cancel`). Raises `InvoiceNotFound`, or `InvoiceNotOpen`
        when settled."""
        ...

    def hold_updates(self) -> Iterator[InvoiceUpdate]:
        """Live ACCEPTED and CANCELED changes (cursor 0), from now on.

        Blocks waiting for them; ends or raises `NodeUnavailable` when the
        connection drops, and the follower calls it again. What changed while
        nobody listened is found by the sweep (`lookup_invoice`). Returns
        promptly after `close()`."""
        ...


def queued_updates(
    updates: queue.Queue[InvoiceUpdate],
    closed: threading.Event,
    check: Callable[[], None] | None = None,
) -> Iterator[InvoiceUpdate]:
    """`HoldInvoices.hold_updates` for a node whose own threads put them on
    `updates`: each as it comes, until `closed` is set. The queue is polled,
    so the stream ends within half a second of `close()`; `check` runs after
    each update or poll, and ends the stream by raising (a broken
    subscription the caller must hear of)."""
    while not closed.is_set():
        try:
            item: InvoiceUpdate | None = updates.get(timeout=0.5)
        except queue.Empty:
            item = None
        if item is not None:
            yield item
        if check is not None:
            check()


@runtime_checkable
class NodeDecode(Protocol):
    """Decoding by the node itself, on nodes with `Feature.NODE_DECODE`."""

    def decode(self, invstring: str) -> dict[str, object]: ...


__all__ = [
    "CURRENCY_BY_NETWORK",
    "NETWORKS",
    "DevPayments",
    "Feature",
    "HoldInvoices",
    "InvoiceNotFound",
    "InvoiceNotOpen",
    "InvoiceRequest",
    "InvoiceState",
    "InvoiceUpdate",
    "NetworkMismatch",
    "Node",
    "NodeCredentialsRejected",
    "NodeDecode",
    "NodeError",
    "NodeInfo",
    "NodeInvoice",
    "NodeNotTrusted",
    "NodePermissionDenied",
    "NodeUnavailable",
    "OutgoingPayment",
    "RequestNotSupported",
    "Unsupported",
]


@runtime_checkable
class FeedHead(Protocol):
    """The node's current feed position, on nodes with `Feature.FEED_HEAD`.

    What `settlements` would reach if it read everything now, in the same
    units as `InvoiceUpdate.cursor`, so `head - cursor` is the real backlog
    (`/info`, `/metrics`, the backfill ETA) instead of the end of the page
    read so far. None when the node cannot tell at the moment.
    """

    def feed_head(self) -> int | None: ...

    def history_replaced(self) -> bool:
        """Whether the node found, since it was last asked, that its invoice
        history is not the one it showed before (lnd: a settled invoice it
        listed is no longer at its place), so its positions count afresh.

        Asked by the follower when it checks the node again after the feed's
        connection ended; True makes it re-read from the start even when the
        new history's head is already past the stored cursor. A node whose
        head is asked afresh each time, and can tell no more, answers False:
        its head shows a reset once it is behind the cursor.
        """
        ...
