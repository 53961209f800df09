"""The one seam between lnplugin and a Lightning node.

Every node (the embedded dev node, LND, Core Lightning) implements `Node`. The
follower only ever sees these types, so a new node kind plugs in without
touching the follower, the store or the API.

The settlement feed is resumable: `settlements(cursor)` yields every invoice
state change *after* `cursor`, backlog first, then live. The follower persists
the cursor of each applied update in the same transaction as the update, so a
crash or a dropped connection resumes exactly where it stopped. (LNbits' feed
yields bare hashes from "now" on, which is why it misses payments.)
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

InvoiceState = Literal["OPEN", "SETTLED", "CANCELED", "EXPIRED"]

# BOLT11 currency prefix per network (testnet4 shares testnet's `tb`).
CURRENCY_BY_NETWORK = {
    "bitcoin": "bc",
    "testnet": "tb",
    "testnet4": "tb",
    "signet": "tbs",
    "regtest": "bcrt",
}
NETWORKS = tuple(CURRENCY_BY_NETWORK)


class NodeError(Exception):
    """A node refused a request; the message is safe to show to API clients."""


class NodeUnavailable(NodeError):
    """The node cannot be reached right now; callers retry or answer 503."""


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
    description_hash: str | None = None  # hex sha256; mutually exclusive with description
    expiry: int = 86400
    private_route_hints: bool = False


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
    # How often the follower asks `outgoing_payments` for new payments. Nodes
    # list them incrementally from a cursor, so asking often is cheap and a
    # payment made while lnplugin runs shows up within seconds.
    outgoing_poll_interval: float = 5.0

    @abc.abstractmethod
    def get_info(self) -> NodeInfo: ...

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
        """Settled outgoing payments after `cursor`, oldest first (finite)."""
        return iter(())

    def node_alias(self, pubkey: str) -> str | None:
        """The alias of another node, for decoded invoices; None when unknown."""
        return None

    def close(self) -> None:
        """Release connections and wake any blocked `settlements` iterator."""
