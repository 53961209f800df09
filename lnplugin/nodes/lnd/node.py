"""`LndNode`: the `Node` interface over lnd's gRPC API (TLS + macaroon).

The settlement feed follows PROTOCOLS.md A.5 exactly. lnd's SubscribeInvoices
treats settle_index=0 as "no backlog", so a fresh install (cursor 0) opens the
subscription first and then backfills with ListInvoices; anything settling
during the backfill arrives on the already-open stream. Because the backfill is
ordered by add_index, not settle_index, it is sorted before being yielded and an
update only carries a cursor when every settlement up to it has been seen: the
follower persists that cursor, and a cursor past an unseen settlement would lose
it on the next restart.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import grpc.experimental

from lnplugin import bolt11
from lnplugin.nodes.base import (
    InvoiceNotFound,
    InvoiceRequest,
    InvoiceState,
    InvoiceUpdate,
    Node,
    NodeError,
    NodeInfo,
    NodeInvoice,
    NodeMisconfigured,
    NodePermissionDenied,
    NodeUnavailable,
    OutgoingPayment,
)
from lnplugin.nodes.lnd.rpc import lightning_pb2 as ln
from lnplugin.nodes.lnd.rpc import lightning_pb2_grpc

if TYPE_CHECKING:
    from lnplugin.config import Settings

log = logging.getLogger(__name__)

# lnd's GetInfo spells bitcoin mainnet "mainnet"; lnplugin says "bitcoin".
NETWORK_FROM_LND = {"mainnet": "bitcoin"}
MAX_MESSAGE = 256 * 1024 * 1024  # big ListInvoices/ListPayments pages exceed grpc's 4 MiB
CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    # Notice a silently dead connection on a quiet stream (lnd allows >= 5 s).
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    # After lnd restarts, reconnect within seconds rather than grpc's 2 minutes.
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 5_000),
    # SubscribeInvoices is read on the thread that iterates it rather than
    # handed over from grpc's polling thread: one GIL hand-off less per
    # settlement, which is most of a catch-up's transport cost while the
    # follower's other thread is writing. (Experimental in grpc; were it
    # removed, the unknown option would be ignored and streams work as before.)
    (grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1),
]

# lnd answers these with status UNKNOWN and a plain message rather than a code.
_UNAVAILABLE_TEXTS = (
    "wallet locked",
    "in the process of starting up",
    "waiting to start",
    "server is still in the process",
    "not yet ready",
)
_AUTH_TEXTS = ("macaroon", "verification failed", "cannot get macaroon")
_UNAVAILABLE_CODES = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
)


class NetworkMismatch(NodeError):
    """The node runs on a different network than lnplugin is configured for."""


def translate(exc: grpc.RpcError) -> NodeError:
    """Map a gRPC failure to the node error the follower and API understand."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else None) or str(code)
    text = details.lower()
    if code == grpc.StatusCode.PERMISSION_DENIED or "permission denied" in text:
        return NodePermissionDenied(f"LND macaroon lacks a permission: {details}")
    if code == grpc.StatusCode.UNAUTHENTICATED or (
        code == grpc.StatusCode.UNKNOWN and any(t in text for t in _AUTH_TEXTS)
    ):
        return NodePermissionDenied(f"LND rejected the macaroon: {details}")
    if code in _UNAVAILABLE_CODES or any(t in text for t in _UNAVAILABLE_TEXTS):
        return NodeUnavailable(f"LND unavailable: {details}")
    if code == grpc.StatusCode.NOT_FOUND:
        return InvoiceNotFound(details)
    return NodeError(f"LND error: {details}")


def load_macaroon(value: str | bytes | Path | None) -> str | None:
    """A macaroon as lnd wants it in metadata: hex. Accepts a file path or hex."""
    if value is None or value == "":
        return None
    if isinstance(value, bytes):
        return value.hex()
    path = Path(value).expanduser()
    if path.is_file():
        return path.read_bytes().hex()
    text = str(value).strip()
    try:
        bytes.fromhex(text)
    except ValueError:
        raise NodeMisconfigured(
            "invalid setting lnd_macaroon (--lnd-macaroon / LNPLUGIN_LND_MACAROON): "
            f"{text[:40]!r} is neither a readable file nor hex"
        ) from None
    return text.lower()


def _load_cert(value: bytes | str | Path | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    try:
        return Path(value).expanduser().read_bytes()
    except OSError as exc:
        raise NodeMisconfigured(
            f"invalid setting lnd_cert (--lnd-cert / LNPLUGIN_LND_CERT): cannot read {value}: "
            f"{exc.strerror}"
        ) from None


class LndNode(Node):
    """lnd over gRPC. Thread-safe: one channel shared by all calls."""

    kind = "lnd"

    def __init__(
        self,
        host: str,
        *,
        cert: bytes | str | Path | None,
        macaroon: str | bytes | Path | None,
        network: str = "bitcoin",
        timeout: float = 30.0,
        page_size: int = 1000,
    ) -> None:
        # lnd's cert is ECDSA; its docs set this before the first TLS channel.
        os.environ.setdefault("GRPC_SSL_CIPHER_SUITES", "HIGH+ECDSA")
        self.host = host
        self.network = network
        self.timeout = timeout
        self.page_size = page_size
        mac = load_macaroon(macaroon)
        self._metadata: tuple[tuple[str, str], ...] = (("macaroon", mac),) if mac else ()
        self._channel = grpc.secure_channel(
            host,
            grpc.ssl_channel_credentials(root_certificates=_load_cert(cert)),
            options=CHANNEL_OPTIONS,
        )
        self._ln = lightning_pb2_grpc.LightningStub(self._channel)
        self._lock = threading.Lock()
        self._streams: set[Any] = set()
        self._closed = threading.Event()
        self._sweep_from = 0  # see _settled_sorted

    @classmethod
    def from_settings(cls, settings: Settings) -> LndNode:
        return cls(
            settings.lnd_host,
            cert=settings.lnd_cert,
            macaroon=settings.lnd_macaroon,
            network=settings.effective_network,
        )

    # -- plumbing --

    def _call(self, method: Any, request: Any, timeout: float | None = None) -> Any:
        if self._closed.is_set():
            raise NodeUnavailable("LND connection closed")
        try:
            return method(request, metadata=self._metadata, timeout=timeout or self.timeout)
        except grpc.RpcError as exc:
            raise translate(exc) from None

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            streams = list(self._streams)
        for call in streams:
            call.cancel()
        self._channel.close()

    # -- info --

    def get_info(self) -> NodeInfo:
        return to_node_info(self._call(self._ln.GetInfo, ln.GetInfoRequest()))

    def check_network(self, expected: str | None = None) -> NodeInfo:
        """GetInfo, raising `NetworkMismatch` when the node is on another network.

        Raises `NodePermissionDenied` when the macaroon lacks info:read (the
        stock invoice.macaroon): the caller logs that the check was skipped.
        """
        expected = expected or self.network
        info = self.get_info()
        if info.network is not None and info.network != expected:
            raise NetworkMismatch(
                f"LND node is on {info.network} but lnplugin is configured for {expected}; "
                f"set --network {info.network} or point --lnd-host at a {expected} node"
            )
        return info

    # -- invoices --

    def create_invoice(self, request: InvoiceRequest) -> NodeInvoice:
        inv = ln.Invoice(
            value_msat=request.amount_msat or 0,
            memo=request.description or "",
            expiry=request.expiry,
            private=request.private_route_hints,
        )
        if request.description_hash:
            inv.description_hash = bytes.fromhex(request.description_hash)
        resp = self._call(self._ln.AddInvoice, inv)
        found = self.lookup_invoice(resp.r_hash.hex())
        if found is None:  # pragma: no cover - lnd just created it
            raise NodeError("LND lost the invoice it just created")
        return found

    def lookup_invoice(self, payment_hash: str) -> NodeInvoice | None:
        try:
            r_hash = bytes.fromhex(payment_hash)
        except ValueError:
            return None  # not a payment hash, so no such invoice
        if len(r_hash) != 32:
            return None
        try:
            inv = self._call(self._ln.LookupInvoice, ln.PaymentHash(r_hash=r_hash))
        except InvoiceNotFound:
            return None
        return to_node_invoice(inv)

    def _list_invoices(self, offset: int = 0) -> Iterator[Any]:
        """Every invoice after add_index `offset`, oldest first, page by page."""
        while True:
            req = ln.ListInvoiceRequest(index_offset=offset, num_max_invoices=self.page_size)
            resp = self._call(self._ln.ListInvoices, req)
            if not resp.invoices:
                return
            yield from resp.invoices
            if resp.last_index_offset <= offset:
                return
            offset = resp.last_index_offset

    def _settled_sorted(self, after: int) -> list[Any]:
        """Settled invoices with settle_index > `after`, in settle order.

        lnd lists by add_index only, so this would read the node's whole
        history on every sweep. It starts instead at `_sweep_from`: below it,
        a previous listing found every invoice final (canceled, or settled at
        or below the cursor it was given, so already stored). Final states
        never change and the cursor never goes back, so that stays true and
        each sweep reads only from the oldest invoice still open on.
        """
        start = self._sweep_from
        found = []
        floor: int | None = None  # the lowest add_index this listing cannot rule out
        last = start
        for inv in self._list_invoices(start):
            last = inv.add_index
            if inv.state == ln.Invoice.SETTLED:
                if inv.settle_index <= after:
                    continue
                found.append(inv)
            elif inv.state == ln.Invoice.CANCELED:
                continue
            if floor is None:
                floor = inv.add_index
        with self._lock:
            self._sweep_from = max(self._sweep_from, last if floor is None else floor - 1)
        found.sort(key=lambda inv: inv.settle_index)
        return found

    def settled_since(self, cursor: int) -> Iterator[InvoiceUpdate]:
        """Settled invoices with settle_index > cursor, in settle order.

        An update carries its settle_index as cursor only while the indexes
        are contiguous from `cursor`; after a gap (an invoice settling during
        the sweep) it carries 0, so a persisted cursor never skips anything.
        """
        floor = cursor
        for inv in self._settled_sorted(cursor):
            if inv.settle_index == floor + 1:
                floor = inv.settle_index
                yield InvoiceUpdate(to_node_invoice(inv), inv.settle_index)
            else:
                yield InvoiceUpdate(to_node_invoice(inv), 0)

    def settlements(self, cursor: int) -> Iterator[InvoiceUpdate]:
        call = self._ln.SubscribeInvoices(
            ln.InvoiceSubscription(settle_index=cursor), metadata=self._metadata
        )
        with self._lock:
            self._streams.add(call)
        if self._closed.is_set():
            call.cancel()
        feed = _Feed(cursor)
        try:
            if cursor == 0:
                # The stream is open (requested) before this sweep starts, so a
                # settlement during the sweep is delivered live (A.5 recipe).
                for inv in self._settled_sorted(0):
                    update = feed.accept(inv)
                    if update is not None:
                        yield update
                feed.bootstrapped()
            for inv in call:
                update = feed.accept(inv)
                if update is not None:
                    yield update
        except grpc.RpcError as exc:
            if self._closed.is_set():
                return
            raise translate(exc) from None
        except NodeError:
            if self._closed.is_set():
                return
            raise
        finally:
            call.cancel()
            with self._lock:
                self._streams.discard(call)

    # -- payments --

    def outgoing_payments(self, cursor: int) -> Iterator[OutgoingPayment]:
        """SUCCEEDED payments after `cursor`, oldest first.

        Asks for incomplete payments too and stops at the first one still in
        flight: yielding a later payment would let the persisted cursor pass
        it, and it would never be listed once it succeeds.
        """
        offset = cursor
        while True:
            req = ln.ListPaymentsRequest(
                include_incomplete=True, index_offset=offset, max_payments=self.page_size
            )
            resp = self._call(self._ln.ListPayments, req)
            if not resp.payments:
                return
            for pay in resp.payments:
                if pay.status == ln.Payment.SUCCEEDED:
                    yield to_outgoing(pay)
                elif pay.status != ln.Payment.FAILED:
                    return  # IN_FLIGHT / INITIATED: wait for it to resolve
            if resp.last_index_offset <= offset:
                return
            offset = resp.last_index_offset


class _Feed:
    """Dedupe and cursor bookkeeping for one SubscribeInvoices connection.

    lnd may send a settlement twice (backlog and live, or backfill and live).
    Resuming from a cursor, settlements arrive in settle_index order, so a
    high-water mark dedupes them and each update's cursor is its settle_index.
    During a cursor-0 bootstrap the backfill can leave gaps (an invoice the
    sweep passed while open, settled since, arrives live later), so until the
    gaps close an update carries `floor` (every settlement up to it seen) or 0.
    """

    def __init__(self, cursor: int) -> None:
        self.floor = cursor
        self.high = cursor
        self.seen: set[int] = set()  # strict mode: seen indexes above floor
        self.strict = cursor == 0
        self.strict_until: int | None = None

    def bootstrapped(self) -> None:
        self.strict_until = self.high
        self._relax()

    def _relax(self) -> None:
        if self.strict and self.strict_until is not None and self.floor >= self.strict_until:
            self.strict = False
            self.seen.clear()

    def accept(self, inv: Any) -> InvoiceUpdate | None:
        if inv.state == ln.Invoice.CANCELED:
            return InvoiceUpdate(to_node_invoice(inv), 0)
        if inv.state != ln.Invoice.SETTLED:
            return None  # OPEN "added" events (incl. keysend's first event)
        idx = inv.settle_index
        if not self.strict:
            if idx <= self.high:
                return None
            self.high = idx
            return InvoiceUpdate(to_node_invoice(inv), idx)
        if idx <= self.floor or idx in self.seen:
            return None
        self.seen.add(idx)
        self.high = max(self.high, idx)
        while self.floor + 1 in self.seen:
            self.floor += 1
            self.seen.discard(self.floor)
        cursor = self.floor if self.floor >= idx else 0
        self._relax()
        return InvoiceUpdate(to_node_invoice(inv), cursor)


# ---------------------------------------------------------------------------
# Message mapping


def to_node_info(resp: Any) -> NodeInfo:
    """lnrpc.GetInfoResponse -> NodeInfo, the network in lnplugin's spelling."""
    raw = resp.chains[0].network if resp.chains else ""
    return NodeInfo(
        kind="lnd",
        pubkey=resp.identity_pubkey or None,
        alias=resp.alias or None,
        network=NETWORK_FROM_LND.get(raw, raw) or None,
        version=resp.version or None,
        block_height=resp.block_height or None,
    )


def _state(inv: Any) -> InvoiceState:
    if inv.state == ln.Invoice.SETTLED:
        return "SETTLED"
    if inv.state == ln.Invoice.CANCELED:
        return "CANCELED"
    if inv.creation_date + (inv.expiry or 86400) <= time.time():
        return "EXPIRED"
    return "OPEN"  # OPEN and ACCEPTED (held HTLCs): not paid yet


def merge_records(record_maps: Iterable[Any]) -> dict[int, bytes]:
    """Union of TLV maps; the first HTLC wins when two carry the same type."""
    merged: dict[int, bytes] = {}
    for records in record_maps:
        for key, value in sorted(records.items()):
            merged.setdefault(int(key), bytes(value))
    return merged


def to_node_invoice(inv: Any) -> NodeInvoice:
    """lnrpc.Invoice -> NodeInvoice (msat amounts, hex hashes)."""
    settled = inv.state == ln.Invoice.SETTLED
    live = [h for h in inv.htlcs if h.state != ln.CANCELED]
    live.sort(key=lambda h: h.htlc_index)
    return NodeInvoice(
        payment_hash=inv.r_hash.hex(),
        payment_request=inv.payment_request,
        state=_state(inv),
        amount_msat=inv.value_msat or None,
        created_at=inv.creation_date,
        expiry=inv.expiry or 86400,
        description=inv.memo or None,
        description_hash=inv.description_hash.hex() or None,
        amount_received_msat=inv.amt_paid_msat if settled else 0,
        settled_at=(inv.settle_date or None) if settled else None,
        preimage=inv.r_preimage.hex() if settled and inv.r_preimage else None,
        payment_secret=inv.payment_addr.hex() or None,
        custom_records=merge_records(h.custom_records for h in live),
        is_keysend=inv.is_keysend,
    )


def to_outgoing(pay: Any) -> OutgoingPayment:
    """lnrpc.Payment -> OutgoingPayment; destination and records from the last hop."""
    won = [h for h in pay.htlcs if h.status == ln.HTLCAttempt.SUCCEEDED] or list(pay.htlcs)
    last_hops = [h.route.hops[-1] for h in won if h.route.hops]
    resolved = [h.resolve_time_ns for h in won if h.resolve_time_ns]
    created_ns = pay.creation_time_ns or pay.creation_date * 10**9
    return OutgoingPayment(
        payment_hash=pay.payment_hash,
        amount_msat=pay.value_msat,
        fee_msat=pay.fee_msat,
        created_at=created_ns // 10**9,
        settled_at=max(resolved) // 10**9 if resolved else None,
        cursor=pay.payment_index,
        preimage=pay.payment_preimage or None,
        payment_request=pay.payment_request,
        destination=last_hops[0].pub_key if last_hops else None,
        description=_description(pay.payment_request),
        custom_records=merge_records(h.custom_records for h in last_hops),
    )


def _description(payment_request: str) -> str | None:
    if not payment_request:
        return None
    try:
        return bolt11.decode(payment_request).description
    except bolt11.Bolt11Error:  # an unparseable or foreign invoice has no description for us
        return None
