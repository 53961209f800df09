"""`LndNode`: the `Node` interface over lnd's gRPC API (TLS + macaroon).

The settlement feed must store every settlement once whatever order lnd
replays its backlog in (docs/protocols.md, "LND: SubscribeInvoices replay").
`SubscribeInvoices(settle_index=S)` sends every invoice settled past S, but
only the bbolt store sends them in settle_index order: lnd's native SQL store
sends them by add_index, so an invoice created early and paid late comes
before one created late and paid early. (lnplugin once assumed settle order
everywhere; on a SQL node that dropped every settlement arriving below one
already seen.) S=0 means no backlog at all, and duplicates happen.

So each connection tracks which settle indexes it has handed out (`_Gaps`).
settle indexes are dense (1, 2, 3, ...), so the highest index up to which
nothing is missing is known, and that "floor" is the only cursor an update
carries: the follower persists it with the update, and a restart resumes
from it, replaying anything not yet covered. A gap normally closes before
the backlog ends. One that stays open `gap_grace` seconds is filled from
ListInvoices: the stream is cut, re-opened from the floor, and the listing
stores what it finds; an index already assigned before the listing that it
does not find belongs to no invoice lnd still has and is passed over. Cursor
0 is the same path: lnd sends
no backlog, so the listing is the backlog, run with the stream already open
so nothing settling meanwhile is missed. There is no separate mode for a
first start and a reconnect.

AMP: lnd pays an AMP invoice in payment sets, each taking a settle_index
from the same dense sequence but reporting it only in the invoice's
`amp_invoice_state[set_id]` (lnd sends the invoice with that one set, live
and in the backlog; the bbolt store with the invoice's own settle_index 0,
the SQL store's backlog with the set's). Each settled set is a settlement
of its own, stored by its set id (`amp_settlements`), and its number moves
the floor like any other.

Hold invoices (invoicesrpc AddHoldInvoice, SettleInvoice, CancelInvoice):
lnd leaves ACCEPTED and CANCELED out of SubscribeInvoices (docs/lnd.md,
"Hold invoices"), so `hold_updates` follows each open or accepted hold
invoice with its own SubscribeSingleInvoice stream. It finds them by listing
the node's pending invoices (a hold invoice is listed without a preimage until
settled), so a restart loses none; those lnplugin creates while it runs are
added as they are made.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import grpc.experimental

from lnplugin import bolt11, tls
from lnplugin.boostagram import KEYSEND_PREIMAGE
from lnplugin.nodes.base import (
    Feature,
    InvoiceNotFound,
    InvoiceNotOpen,
    InvoiceRequest,
    InvoiceState,
    InvoiceUpdate,
    Node,
    NodeCredentialsRejected,
    NodeError,
    NodeInfo,
    NodeInvoice,
    NodeMisconfigured,
    NodeNotTrusted,
    NodePermissionDenied,
    NodeUnavailable,
    OutgoingPayment,
    queued_updates,
)
from lnplugin.nodes.lnd.macaroon import (
    LND_BAKE,
    RPC_PERMISSIONS,
    MacaroonFormatError,
    permits,
)
from lnplugin.nodes.lnd.macaroon import decode as decode_macaroon
from lnplugin.nodes.lnd.rpc import invoices_pb2, invoices_pb2_grpc, lightning_pb2_grpc
from lnplugin.nodes.lnd.rpc import lightning_pb2 as ln

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


def needs(method: str) -> str:
    """What grants `method` ("/pkg.Service/Method"), for a refusal's message."""
    return f"{method.rsplit('/', 1)[1]} needs {RPC_PERMISSIONS[method]} or uri:{method}"


# What hold invoices need: making one, settling it and canceling it. One that
# could be made but never settled or canceled would keep the payer's funds
# held until lnd gives them back, so all three or none. Without
# SubscribeSingleInvoice they still work (the sweep sees ACCEPTED, later).
HOLD_RPCS = (
    "/invoicesrpc.Invoices/AddHoldInvoice",
    "/invoicesrpc.Invoices/SettleInvoice",
    "/invoicesrpc.Invoices/CancelInvoice",
)


def hold_refusal(macaroon_hex: str | None) -> str | None:
    """Why a macaroon rules out hold invoices, naming each method it lacks
    and what grants it; None when it allows them, or when its permissions
    cannot be read (no macaroon, or not one lnd baked): lnd decides then,
    and a refusal names the permission (`translate`).

    Read from the macaroon itself (lnd writes the permissions in it in
    clear), not probed: a probe would have to make, settle or cancel."""
    if macaroon_hex is None:
        return None
    try:
        granted = decode_macaroon(bytes.fromhex(macaroon_hex)).permissions
    except (MacaroonFormatError, ValueError):
        return None
    lacking = [needs(m) for m in HOLD_RPCS if not permits(granted, m)]
    if not lacking:
        return None
    return (
        f"the LND macaroon lnplugin started with does not allow them ({'; '.join(lacking)}); "
        "give it one that does (docs/lnd.md) and restart lnplugin"
    )


# lnd answers these with status UNKNOWN and a plain message rather than a code.
_UNAVAILABLE_TEXTS = (
    "wallet locked",
    "in the process of starting up",
    "waiting to start",
    "server is still in the process",
    "not yet ready",
    # lnd's macaroon service is not up yet (rpcperms/interceptor.go), or its
    # root key store is still locked (macaroons/store.go): lnd is starting.
    "unable to determine macaroon permissions",
    "macaroon store is locked",
)
# lnd refuses a macaroon outright with a plain error (status UNKNOWN):
# "expected 1 macaroon, got 0" (none sent, macaroons/service.go),
# "verification failed: ..." (not signed by this node's root key),
# "cannot retrieve macaroon: cannot get macaroon: root key with id ... doesn't
# exist" (macaroon-bakery's oven over lnd's root key store), "caveat
# \"time-before ...\" not satisfied: macaroon has expired" and "... macaroon
# locked to different IP address" (bakery's checker, macaroons/constraints.go),
# "unknown macaroon version", "invalid ID". A valid macaroon that only lacks
# the permission gets bakery's bare "permission denied" (its ErrPermissionDenied
# with no underlying error): that text alone is `NodePermissionDenied`.
_REJECTED_TEXTS = ("macaroon", "verification failed", "not satisfied", "invalid id")
# lnd's "no such invoice" errors, which only LookupInvoice and LookupInvoiceV2
# turn into NOT_FOUND (and V2 only the first): SettleInvoice and CancelInvoice
# pass them on as UNKNOWN, and on a bbolt node that has never made an invoice
# every lookup fails with the second.
_NOT_FOUND_TEXTS = ("unable to locate invoice", "there are no existing invoices")
_UNAVAILABLE_CODES = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
)
# Seconds the lowest missing settle_index may stay missing before ListInvoices
# is asked for it. A replay in add order closes its gaps as it goes, so this
# only has to outlast the pauses of a backlog, not the backlog itself.
GAP_GRACE = 5.0


def translate(
    exc: grpc.RpcError, host: str, cert: str | None, method: str | None = None
) -> NodeError:
    """Map a gRPC failure to the node error the follower and API understand.

    `host` and `cert` (the --lnd-host and --lnd-cert given; None: no
    --lnd-cert, so the system's CAs judged lnd's certificate) name what to
    fix when the TLS handshake is what failed. `method`, the RPC called,
    names the permission a refusal is about: lnd says only "permission
    denied", which leaves an operator guessing what to bake."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else None) or str(code)
    text = details.lower()
    distrust = _tls_distrust(details, host)
    if distrust is not None and cert is None:
        return NodeNotTrusted(
            "invalid setting lnd_cert (--lnd-cert / LNPLUGIN_LND_CERT): none is given, and "
            f"lnd at {host} has a certificate the system's CAs do not vouch for ({distrust}); "
            "copy lnd's tls.cert and give its path"
        )
    if distrust is not None:
        return NodeNotTrusted(
            f"invalid setting lnd_cert (--lnd-cert / LNPLUGIN_LND_CERT): lnd at {host} "
            f"does not match {cert}: {distrust}; if lnd regenerated tls.cert copy the new "
            "one (lnplugin reads it at start), or add tlsextraip/tlsextradomain for this host"
        )
    if code == grpc.StatusCode.PERMISSION_DENIED or text == "permission denied":
        lacks = f" ({needs(method)})" if method in RPC_PERMISSIONS else ""
        return NodePermissionDenied(f"LND macaroon lacks a permission: {details}{lacks}")
    if code in _UNAVAILABLE_CODES or any(t in text for t in _UNAVAILABLE_TEXTS):
        return NodeUnavailable(f"LND unavailable: {details}")
    if code == grpc.StatusCode.UNAUTHENTICATED or (
        code == grpc.StatusCode.UNKNOWN and any(t in text for t in _REJECTED_TEXTS)
    ):
        return rejected(details, host)
    if code == grpc.StatusCode.NOT_FOUND or any(t in text for t in _NOT_FOUND_TEXTS):
        return InvoiceNotFound(details)
    return NodeError(f"LND error: {details}")


def rejected(details: str, host: str) -> NodeCredentialsRejected:
    """lnd refused the macaroon itself: one line naming the setting, with
    what to do for the way it was refused (`lnplugin doctor` says the same)."""
    text = details.lower()
    setting = "invalid setting lnd_macaroon (--lnd-macaroon / LNPLUGIN_LND_MACAROON)"
    if "expected 1 macaroon, got 0" in text:
        return NodeCredentialsRejected(
            f"{setting}: none is given, and lnd at {host} requires one ({details}); "
            f"bake one with: {LND_BAKE}"
        )
    if "expired" in text:
        fix = "it has expired: bake a new one (a longer --timeout, or none)"
    elif "different ip" in text:
        fix = "it is locked to another address: bake one for this host's (--ip_address) or none"
    else:
        fix = "is it from this node? bake one there"
    return NodeCredentialsRejected(
        f"{setting}: lnd at {host} rejected it ({details}); {fix} with: {LND_BAKE}"
    )


def _tls_distrust(details: str, host: str) -> str | None:
    """Why the handshake refused lnd's certificate, from gRPC's message (it
    has no status code of its own: UNAVAILABLE, like a node that is down).
    None: the handshake did not fail on the certificate."""
    marker = "CERTIFICATE_VERIFY_FAILED"
    at = details.find(marker)
    if at >= 0:
        reason = details[at + len(marker) :].lstrip(": ").split(":", 1)[0].strip()
        return reason or "certificate verify failed"
    if "hostname verification check failed" in details.lower():
        return f"its certificate does not name {host.rsplit(':', 1)[0]}"
    return None


def is_file(value: str | Path) -> bool:
    """Whether `value` names a file. A real macaroon in hex is 500 characters or
    more, longer than a file name may be: the OS refuses to look it up
    (ENAMETOOLONG), which means "not a file", not an error."""
    try:
        return Path(value).expanduser().is_file()
    except OSError:
        return False


def load_macaroon(value: str | bytes | Path | None) -> str | None:
    """A macaroon as lnd wants it in metadata: hex. Accepts a file path or hex."""
    if value is None or value == "":
        return None
    if isinstance(value, bytes):
        return value.hex()
    if is_file(value):
        try:
            return Path(value).expanduser().read_bytes().hex()
        except OSError as exc:  # there, but not for this user (copied in 0600 by root)
            raise NodeMisconfigured(
                "invalid setting lnd_macaroon (--lnd-macaroon / LNPLUGIN_LND_MACAROON): "
                f"cannot read {value}: {exc.strerror or type(exc).__name__}"
            ) from None
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
    """lnd's certificate; without one, the CAs every other outbound TLS
    connection trusts (`tls.roots_pem`: SSL_CERT_FILE honoured), not gRPC's
    own roots, which `lnplugin doctor`'s check of the certificate does not use."""
    if value is None:
        return tls.roots_pem()
    if isinstance(value, bytes):
        return value
    try:
        data = Path(value).expanduser().read_bytes()
    except OSError as exc:
        raise NodeMisconfigured(
            f"invalid setting lnd_cert (--lnd-cert / LNPLUGIN_LND_CERT): cannot read {value}: "
            f"{exc.strerror}"
        ) from None
    # Not a PEM certificate: gRPC would only fail every handshake, forever.
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise NodeMisconfigured(
            f"invalid setting lnd_cert (--lnd-cert / LNPLUGIN_LND_CERT): {value} is not "
            "a PEM certificate (lnd's tls.cert)"
        )
    return data


class LndNode(Node):
    """lnd over gRPC. Thread-safe: one channel shared by all calls."""

    kind = "lnd"
    features = frozenset(
        {
            Feature.KEYSEND_RECORDS,
            Feature.OUTGOING_HISTORY,
            Feature.HOLD_INVOICES,
            Feature.FEED_HEAD,
        }
    )
    # lnd has no call that answers its highest settle_index, so `feed_head`
    # lists for it; it asks at most this often (seconds). Between two asks the
    # follower raises its head from the settlements it reads anyway.
    head_interval = 30.0

    def __init__(
        self,
        host: str,
        *,
        cert: bytes | str | Path | None,
        macaroon: str | bytes | Path | None,
        network: str = "bitcoin",
        timeout: float = 30.0,
        page_size: int = 1000,
        gap_grace: float = GAP_GRACE,
    ) -> None:
        # lnd's cert is ECDSA; its docs set this before the first TLS channel.
        os.environ.setdefault("GRPC_SSL_CIPHER_SUITES", "HIGH+ECDSA")
        self.host = host
        self._cert_name: str | None = (
            str(cert) if isinstance(cert, str | Path) else "the certificate given" if cert else None
        )
        self.network = network
        self.timeout = timeout
        self.page_size = page_size
        self.gap_grace = gap_grace
        mac = load_macaroon(macaroon)
        self._metadata: tuple[tuple[str, str], ...] = (("macaroon", mac),) if mac else ()
        # The macaroon is read once, here: what lnplugin declares it can do and
        # what it sends lnd come from the same bytes until it is restarted.
        refusal = hold_refusal(mac)
        if refusal is not None:
            self.features = type(self).features - {Feature.HOLD_INVOICES}
            self.unavailable = {Feature.HOLD_INVOICES: refusal}
        self._channel = grpc.secure_channel(
            host,
            grpc.ssl_channel_credentials(root_certificates=_load_cert(cert)),
            options=CHANNEL_OPTIONS,
        )
        self._ln = lightning_pb2_grpc.LightningStub(self._channel)
        self._invoices = invoices_pb2_grpc.InvoicesStub(self._channel)
        # Each stub method's path, so a refusal names what the macaroon lacks.
        self._paths: dict[Any, str] = {
            getattr(self._ln if path.startswith("/lnrpc.") else self._invoices, name): path
            for path in RPC_PERMISSIONS
            for name in (path.rsplit("/", 1)[1],)
        }
        # Hold invoices followed by a SubscribeSingleInvoice stream (by hash),
        # and what those streams report, for `hold_updates`.
        self._held: set[str] = set()
        self._held_updates: queue.Queue[InvoiceUpdate] = queue.Queue()
        # Set by a stream that broke (lnd restarting): `hold_updates` raises
        # once, however many streams broke, and re-discovers on the next call.
        self._held_broken: NodeError | None = None
        self._lock = threading.Lock()
        self._streams: set[Any] = set()
        self._closed = threading.Event()
        self._sweep_from = 0  # see _settled_sorted
        # feed_head's own listing state: below `_head_from` every invoice is
        # final, and `_head` is the highest settle_index seen so far.
        self._head_lock = threading.Lock()
        self._head_from = 0
        self._head = 0
        self._head_at: float | None = None
        # What those caches stand on (see `_verify_history`): the settled
        # invoice with the highest add_index listed, as (add_index, r_hash);
        # the highest position handed out; whether a feed connection ended
        # since the history was last verified; what `history_replaced` answers.
        self._anchor: tuple[int, bytes] | None = None
        self._handed = 0
        self._unverified = False
        self._replaced = False
        self._await_rewind = False  # replaced, and not yet asked from position 0
        self._history = 0  # counts the times the caches were dropped

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
            raise translate(exc, self.host, self._cert_name, self._paths.get(method)) from None

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

    def probe(self, rpc: str) -> Any:
        """Call one read-only RPC of `PROBES` by name, for `lnplugin doctor`.

        Returns the reply, or None for the NOT_FOUND a zero hash gets, so a
        probe never creates anything; raises the mapped `NodeError` otherwise.
        """
        zero = bytes(32)
        calls: dict[str, tuple[Any, Any]] = {
            "LookupInvoice": (self._ln.LookupInvoice, ln.PaymentHash(r_hash=zero)),
            "ListInvoices": (self._ln.ListInvoices, ln.ListInvoiceRequest(num_max_invoices=1)),
            "LookupInvoiceV2": (
                self._invoices.LookupInvoiceV2,
                invoices_pb2.LookupInvoiceMsg(payment_hash=zero),
            ),
            "ListPayments": (self._ln.ListPayments, ln.ListPaymentsRequest(max_payments=1)),
            "GetInfo": (self._ln.GetInfo, ln.GetInfoRequest()),
        }
        method, request = calls[rpc]
        try:
            return self._call(method, request, timeout=10)
        except InvoiceNotFound:
            return None

    # -- invoices --

    def create_invoice(self, request: InvoiceRequest) -> NodeInvoice:
        inv = ln.Invoice(
            value_msat=request.amount_msat or 0,
            # With a description hash the memo is not in the invoice (LND puts
            # `h`, not `d`), and LND refuses memos over 1024 bytes, which an
            # LNURL metadata string with an image exceeds: so none is sent.
            memo="" if request.description_hash else (request.description or ""),
            expiry=request.expiry,
            private=request.private_route_hints,
        )
        if request.description_hash:
            inv.description_hash = bytes.fromhex(request.description_hash)
        if request.min_final_cltv_expiry_delta is not None:
            inv.cltv_expiry = request.min_final_cltv_expiry_delta
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

    def _settled_sorted(self, after: int, *, stored: bool = True) -> list[tuple[int, NodeInvoice]]:
        """Settlements with settle_index > `after`, in settle order, as
        (settle_index, invoice): a plain invoice's, and each AMP payment set's
        (`amp_settlements`).

        lnd lists by add_index only, so this would read the node's whole
        history on every sweep. It starts instead at `_sweep_from`: below it,
        a previous listing found every invoice final (canceled, or settled at
        or below the cursor it was given, so already stored). Final states
        never change and the cursor never goes back, so that stays true and
        each sweep reads only from the oldest invoice still open on. That
        holds only when every settlement up to `after` is stored: a caller
        whose `after` is merely handed out passes `stored=False`. The cursor
        goes back only when lnd's history was replaced, and `_verify_history`
        then drops `_sweep_from`. An AMP invoice is final only once lnd
        canceled it: until then it takes more payment sets. lnd shows it
        SETTLED once a set has settled, canceled or not, so the listing does
        not tell (one shown CANCELED had no set settle); the one that would
        hold the window is asked about (`_closed_amp`).
        """
        with self._lock:
            if self._await_rewind and after == 0:
                self._await_rewind = False  # the follower re-reads the new history
            start, history = self._sweep_from, self._history
            if self._unverified or self._await_rewind:
                # lnd may have restarted with another history since `_sweep_from`
                # was found, and `feed_head` could not check yet; or it did, and
                # `after` may still be a position of the old one, whose
                # settlements at or below it are not stored: list it all, and
                # keep no conclusion about it (`_verify_history`).
                start, stored = 0, False
        found: list[tuple[int, NodeInvoice]] = []
        floor: int | None = None  # the lowest add_index this listing cannot rule out
        last = start
        for inv in self._list_invoices(start):
            last = inv.add_index
            if inv.is_amp and inv.state != ln.Invoice.CANCELED:  # CANCELED: no set settled
                closed = self._closed_amp(inv) if stored and floor is None else None
                found.extend(s for s in amp_settlements(closed or inv) if s[0] > after)
                if closed is not None:
                    continue  # takes no more sets: the window may pass it
            elif inv.state == ln.Invoice.SETTLED:
                if inv.settle_index <= after:
                    continue
                found.append((inv.settle_index, to_node_invoice(inv)))
            elif inv.state == ln.Invoice.CANCELED:
                continue
            if floor is None:
                floor = inv.add_index
        if stored:
            with self._lock:
                if history == self._history:
                    self._sweep_from = max(self._sweep_from, last if floor is None else floor - 1)
        found.sort(key=lambda pair: pair[0])
        return found

    def _closed_amp(self, inv: Any) -> Any | None:
        """The AMP invoice `inv` read again if lnd canceled it (its expiry
        watcher does, as for any open invoice: an hour after a spontaneous
        payment), else None.

        `pending_only` lists what lnd stores OPEN or ACCEPTED, which an AMP
        invoice stays until canceled, whatever its sets show; so when the
        first pending invoice from its add_index on is not it, it is canceled
        and takes no more sets. Read again after that answer, it shows every
        set it will ever have, so the sweep window may pass it: each AMP
        invoice costs these calls once, when it would hold the window."""
        before = inv.add_index - 1
        req = ln.ListInvoiceRequest(index_offset=before, num_max_invoices=1, pending_only=True)
        pending = self._call(self._ln.ListInvoices, req).invoices
        if pending and pending[0].add_index == inv.add_index:
            return None
        req = ln.ListInvoiceRequest(index_offset=before, num_max_invoices=1)
        again = self._call(self._ln.ListInvoices, req).invoices
        if not again or again[0].add_index != inv.add_index or again[0].r_hash != inv.r_hash:
            return None  # pragma: no cover - lnd deleted or replaced it meanwhile
        return again[0]

    def feed_head(self) -> int | None:
        """The highest settle_index lnd has handed out, in the cursor's units.

        lnd answers it through no call (GetInfo has no such field and
        ListInvoices orders by add_index), so this lists, as the sweep does,
        only from the oldest invoice that was still open last time: a settled
        or canceled invoice never changes, so the maximum over them is kept.
        The first call on a big node reads its whole history once, which is
        the catch-up the head is wanted for; later calls read only the open
        tail, at most every `head_interval` seconds (the cached value between).

        After a feed connection ended (lnd may have restarted with another
        history: restored from its seed, a new node behind the same address)
        the next call is never the cached value: it checks first, with one
        small call, that the history is the one listed (`_verify_history`),
        and lists everything afresh only when it is not. Never below a
        position `settlements` or `settled_since` handed out in this history,
        so a head listed before the cursor moved on cannot look like a reset.
        """
        with self._head_lock:
            now = time.monotonic()
            if self._unverified:
                self._verify_history()
                self._head_at = None
            if self._head_at is not None and now - self._head_at < self.head_interval:
                return max(self._head, self._handed)
            floor: int | None = None
            last = self._head_from
            for inv in self._list_invoices(self._head_from):
                last = inv.add_index
                if inv.is_amp and inv.state != ln.Invoice.CANCELED:
                    # Final only once canceled (`_settled_sorted`); its sets' numbers count.
                    closed = self._closed_amp(inv) if floor is None else None
                    states = (closed or inv).amp_invoice_state.values()
                    self._head = max([self._head, *(s.settle_index for s in states)])
                    if closed is None and floor is None:
                        floor = inv.add_index
                elif inv.state == ln.Invoice.SETTLED and inv.settle_index:
                    self._head = max(self._head, inv.settle_index)
                    if self._anchor is None or inv.add_index > self._anchor[0]:
                        self._anchor = (inv.add_index, bytes(inv.r_hash))
                elif inv.state != ln.Invoice.CANCELED and floor is None:
                    floor = inv.add_index
            self._head_from = last if floor is None else floor - 1
            self._head_at = now
            return max(self._head, self._handed)

    def _verify_history(self) -> None:
        """Whether lnd still has the invoice history the caches stand on
        (`_sweep_from`, `_head_from`, `_head`, `_handed`); drop them if not.

        lnd never reuses an add_index and never deletes a settled invoice
        (only canceled ones can be), so the settled invoice with the highest
        add_index listed is still there, at that add_index, unless the
        history was replaced: one ListInvoices of one invoice tells, however
        big the node. Then `history_replaced` says so, and the next listings
        start from the beginning: a cache from the old history would skip
        the new one's invoices (their add_indexes start at 1 again). With no
        settled invoice listed yet there is nothing to compare, so the caches
        (of canceled invoices at most) are dropped, which costs a listing."""
        anchor = self._anchor
        if anchor is not None:
            add_index, r_hash = anchor
            req = ln.ListInvoiceRequest(index_offset=add_index - 1, num_max_invoices=1)
            found = self._call(self._ln.ListInvoices, req).invoices
            if found and found[0].add_index == add_index and found[0].r_hash == r_hash:
                self._unverified = False
                return
            log.warning(
                "lnd no longer has invoice %s at add_index %d, which it had settled: its "
                "invoice history was replaced (restored from its seed, or another node)",
                r_hash.hex(),
                add_index,
            )
            self._replaced = True
        with self._lock:
            self._await_rewind = anchor is not None
            self._sweep_from = 0
            self._history += 1
            self._handed = 0
        self._head = self._head_from = 0
        self._anchor = None
        self._unverified = False

    def history_replaced(self) -> bool:
        """`FeedHead.history_replaced`: found by `_verify_history`."""
        with self._head_lock:
            replaced, self._replaced = self._replaced, False
        return replaced

    def _handed_out(self, update: InvoiceUpdate, history: int) -> InvoiceUpdate:
        """Note a position handed out of the history numbered `history` (for
        `feed_head`); one of a history since dropped counts for nothing."""
        if update.cursor > self._handed:
            with self._lock:
                if history == self._history:
                    self._handed = max(self._handed, update.cursor)
        return update

    def settled_since(self, cursor: int) -> Iterator[InvoiceUpdate]:
        """Settled invoices with settle_index > cursor, in settle order.

        An update carries its settle_index as cursor only while the indexes
        are contiguous from `cursor`; after a gap (an invoice settling during
        the sweep) it carries 0, so a persisted cursor never skips anything.
        """
        history = self._history  # before the listing: what it shows is of this one at least
        floor = cursor
        for index, settled in self._settled_sorted(cursor):
            if index == floor + 1:
                floor = index
                yield self._handed_out(InvoiceUpdate(settled, index), history)
            else:
                yield InvoiceUpdate(settled, 0)

    def settlements(self, cursor: int) -> Iterator[InvoiceUpdate]:
        """Every settlement past `cursor`, then live ones (see the module docstring).

        However it ends, lnd may have restarted meanwhile, perhaps with
        another invoice history: the next `feed_head` verifies it first."""
        history = self._history
        try:
            for update in self._settlements(cursor):
                yield self._handed_out(update, history)
        finally:
            if not self._closed.is_set():
                self._unverified = True

    def _settlements(self, cursor: int) -> Iterator[InvoiceUpdate]:
        gaps = _Gaps(cursor)
        fill = cursor == 0  # lnd replays nothing for 0: the listing is the backlog
        while True:
            call = self._ln.SubscribeInvoices(
                ln.InvoiceSubscription(settle_index=gaps.floor), metadata=self._metadata
            )
            with self._lock:
                self._streams.add(call)
            if self._closed.is_set():
                call.cancel()
            done, refill = threading.Event(), threading.Event()
            try:
                if fill:
                    # The stream is open (requested) before the listing starts,
                    # so whatever settles meanwhile arrives on it.
                    yield from self._fill(gaps)
                    fill = False
                threading.Thread(
                    target=self._watch, args=(gaps, call, done, refill), daemon=True
                ).start()
                for inv in call:
                    if inv.is_amp:
                        yield from gaps.take_amp(inv)
                        continue
                    update = gaps.accept(inv)
                    if update is not None:
                        yield update
                return
            except grpc.RpcError as exc:
                if self._closed.is_set():
                    return
                if not refill.is_set():
                    raise translate(
                        exc, self.host, self._cert_name, "/lnrpc.Lightning/SubscribeInvoices"
                    ) from None
                fill = True  # cut by _watch: fill the gap, then re-open from the floor
            except NodeError:
                if self._closed.is_set():
                    return
                raise
            finally:
                done.set()
                call.cancel()
                with self._lock:
                    self._streams.discard(call)

    def _fill(self, gaps: _Gaps) -> Iterator[InvoiceUpdate]:
        """Hand out what ListInvoices has past the floor; pass over indexes it lacks.

        An index at or below `gaps.high` was assigned before the listing began,
        and a settlement stays listed (a plain invoice's, or an AMP payment
        set's in its invoice's `amp_invoice_state`), so a listing that does not
        show it proves no invoice lnd still has carries it (lnd can delete a
        canceled AMP invoice, whose settled sets' numbers go with it).
        Indexes above `gaps.high` may have been assigned during the listing, so
        they prove nothing about a hole; they are handed out after the pass-over,
        when the floor has reached them, so their update carries the cursor at
        once rather than waiting for the next settlement to carry it.
        """
        known = gaps.high
        later = []
        for index, settled in self._settled_sorted(gaps.floor, stored=False):
            if index > known:
                later.append((index, settled))
                continue
            update = gaps.settled(index, settled)
            if update is not None:
                yield update
        skipped = gaps.pass_over(known)
        if skipped:
            log.info("LND settle indexes %s belong to no invoice lnd still has", skipped)
        for index, settled in later:
            update = gaps.settled(index, settled)
            if update is not None:
                yield update

    def _watch(
        self, gaps: _Gaps, call: Any, done: threading.Event, refill: threading.Event
    ) -> None:
        """Cut the stream when a gap outstays `gap_grace`, so `settlements` fills it."""
        while not done.wait(self.gap_grace / 4):
            if gaps.stuck_for() >= self.gap_grace:
                refill.set()
                call.cancel()
                return

    # -- hold invoices --

    def create_hold_invoice(self, request: InvoiceRequest, payment_hash: str) -> NodeInvoice:
        req = invoices_pb2.AddHoldInvoiceRequest(
            hash=bytes.fromhex(payment_hash),
            value_msat=request.amount_msat or 0,
            memo=request.description or "",
            expiry=request.expiry,
            private=request.private_route_hints,
        )
        if request.description_hash:
            req.description_hash = bytes.fromhex(request.description_hash)
        if request.min_final_cltv_expiry_delta is not None:
            req.cltv_expiry = request.min_final_cltv_expiry_delta
        self._call(self._invoices.AddHoldInvoice, req)
        found = self.lookup_invoice(payment_hash)
        if found is None:  # pragma: no cover - lnd just created it
            raise NodeError("LND lost the hold invoice it just created")
        self._follow_held(payment_hash)
        return found

    def settle_invoice(self, preimage: str) -> NodeInvoice:
        """SettleInvoice. lnd answers "invoice still open" before the payment
        arrived and "invoice already canceled" after a cancel; both are
        `InvoiceNotOpen`. A settled invoice settles again without error."""
        try:
            self._call(
                self._invoices.SettleInvoice,
                invoices_pb2.SettleInvoiceMsg(preimage=bytes.fromhex(preimage)),
            )
        except NodeError as exc:
            if "still open" in str(exc) or "already canceled" in str(exc):
                raise InvoiceNotOpen(str(exc)) from None
            raise
        payment_hash = hashlib.sha256(bytes.fromhex(preimage)).hexdigest()
        found = self.lookup_invoice(payment_hash)
        if found is None:  # pragma: no cover - lnd just settled it
            raise InvoiceNotFound(f"no invoice with payment hash {payment_hash}")
        return found

    def cancel_invoice(self, payment_hash: str, reason: str | None = None) -> NodeInvoice:
        """CancelInvoice, for open and accepted invoices alike (held HTLCs are
        failed back). lnd refuses a settled invoice; this says so first.
        lnd keeps no reason (`reason` is unused)."""
        current = self.lookup_invoice(payment_hash)
        if current is None:
            raise InvoiceNotFound(f"no invoice with payment hash {payment_hash}")
        if current.state == "SETTLED":
            raise InvoiceNotOpen(f"invoice {payment_hash} is settled and cannot be canceled")
        try:
            self._call(
                self._invoices.CancelInvoice,
                invoices_pb2.CancelInvoiceMsg(payment_hash=bytes.fromhex(payment_hash)),
            )
        except NodeError as exc:
            if "already settled" in str(exc):
                raise InvoiceNotOpen(str(exc)) from None
            raise
        found = self.lookup_invoice(payment_hash)
        assert found is not None
        return found

    def hold_updates(self) -> Iterator[InvoiceUpdate]:
        """ACCEPTED/CANCELED (and SETTLED) of hold invoices, from their
        SubscribeSingleInvoice streams. First re-discovers the node's pending
        hold invoices, so invoices held across a restart are followed again."""
        for inv in self._pending_holds():
            self._follow_held(inv.r_hash.hex())
        yield from queued_updates(self._held_updates, self._closed, self._raise_held_broken)

    def _raise_held_broken(self) -> None:
        """Raise the error that broke a hold invoice's subscription, once."""
        broken, self._held_broken = self._held_broken, None
        if broken is not None:
            raise broken

    def _pending_holds(self) -> Iterator[Any]:
        offset = 0
        while True:
            req = ln.ListInvoiceRequest(
                index_offset=offset, num_max_invoices=self.page_size, pending_only=True
            )
            resp = self._call(self._ln.ListInvoices, req)
            if not resp.invoices:
                return
            # A hold invoice is one lnd has no preimage for. An AMP invoice has
            # none either (each payment set brings its own) and stays pending
            # in lnd's store, but it is no hold invoice: once a set settles,
            # lnd shows it SETTLED without a preimage, and following it as one
            # would record that as a settlement (docs/lnd.md).
            yield from (
                i for i in resp.invoices if not i.r_preimage and not i.is_keysend and not i.is_amp
            )
            if resp.last_index_offset <= offset:
                return
            offset = resp.last_index_offset

    def _follow_held(self, payment_hash: str) -> None:
        """One SubscribeSingleInvoice stream per hold invoice, until it is final."""
        with self._lock:
            if payment_hash in self._held or self._closed.is_set():
                return
            self._held.add(payment_hash)
        threading.Thread(
            target=self._read_held, args=(payment_hash,), name="lnd-hold", daemon=True
        ).start()

    def _read_held(self, payment_hash: str) -> None:
        call = self._invoices.SubscribeSingleInvoice(
            invoices_pb2.SubscribeSingleInvoiceRequest(r_hash=bytes.fromhex(payment_hash)),
            metadata=self._metadata,
        )
        with self._lock:
            self._streams.add(call)
        if self._closed.is_set():
            call.cancel()
        try:
            for inv in call:
                update = to_node_invoice(inv)
                if update.state in ("ACCEPTED", "CANCELED", "SETTLED"):
                    self._held_updates.put(InvoiceUpdate(update, 0))
                if update.state in ("CANCELED", "SETTLED") or inv.state == ln.Invoice.CANCELED:
                    return  # final; lnplugin marks an expired one (lnd canceled it) itself
            # lnd shutting down ends the stream cleanly (status OK) although
            # the invoice is still open: `hold_updates` must find it again.
            if not self._closed.is_set():
                self._held_broken = NodeUnavailable(
                    f"LND ended the stream of hold invoice {payment_hash} (restarting?)"
                )
        except grpc.RpcError as exc:
            if not self._closed.is_set():
                self._held_broken = translate(
                    exc, self.host, self._cert_name, "/invoicesrpc.Invoices/SubscribeSingleInvoice"
                )
        finally:
            call.cancel()
            with self._lock:
                self._streams.discard(call)
                self._held.discard(payment_hash)

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


class _Gaps:
    """Which settle indexes one `settlements` call has handed out.

    `floor`: every index up to it was handed out (or was below the starting
    cursor, so already stored). `seen`: handed out, above the floor. An update
    carries the floor when the floor moved since the last update that carried
    one, else 0, so the persisted cursor never passes an index not yet handed
    out, whatever order the indexes come in. Anything at or below the floor,
    or in `seen`, is a duplicate.
    """

    __slots__ = ("carried", "floor", "high", "seen", "stuck_since")

    def __init__(self, cursor: int) -> None:
        self.floor = self.high = self.carried = cursor
        self.seen: set[int] = set()
        self.stuck_since: float | None = None  # when the floor last stopped below `high`

    def accept(self, inv: Any) -> InvoiceUpdate | None:
        if inv.state == ln.Invoice.CANCELED:
            return InvoiceUpdate(to_node_invoice(inv), 0)
        if inv.state != ln.Invoice.SETTLED:
            return None  # OPEN "added" events (incl. keysend's first event)
        idx = inv.settle_index
        if idx == self.floor + 1 and not self.seen:  # in order: the common case
            self.floor = self.high = self.carried = idx
            return InvoiceUpdate(to_node_invoice(inv), idx)
        if idx <= self.floor or idx in self.seen:
            return None
        return self._out_of_order(idx, to_node_invoice(inv))

    def take_amp(self, inv: Any) -> Iterator[InvoiceUpdate]:
        """An AMP invoice as SubscribeInvoices sends it: one update per
        settled payment set it shows (lnd sends one set's settlement at a
        time), each at the set's own settle_index. Its OPEN "added" event,
        and a cancel (it may hold settled sets), show no new set."""
        if inv.state != ln.Invoice.SETTLED:
            return
        for idx, settled in amp_settlements(inv):
            update = self.settled(idx, settled)
            if update is not None:
                yield update

    def settled(self, idx: int, settled: NodeInvoice) -> InvoiceUpdate | None:
        """A settlement at settle index `idx`: its update, or None for a duplicate."""
        if idx == self.floor + 1 and not self.seen:
            self.floor = self.high = self.carried = idx
            return InvoiceUpdate(settled, idx)
        if idx <= self.floor or idx in self.seen:
            return None
        return self._out_of_order(idx, settled)

    def _out_of_order(self, idx: int, settled: NodeInvoice) -> InvoiceUpdate:
        self.seen.add(idx)
        self.high = max(self.high, idx)
        self._close(moved=False)
        return InvoiceUpdate(settled, self._carry())

    def pass_over(self, upto: int) -> list[int]:
        """Count every index up to `upto` as handed out; returns those missing."""
        missing = [i for i in range(self.floor + 1, upto + 1) if i not in self.seen]
        if upto > self.floor:
            self.seen = {i for i in self.seen if i > upto}
            self.floor = upto
            self._close(moved=True)
        return missing

    def stuck_for(self, now: float | None = None) -> float:
        """Seconds the lowest missing index has been missing (0: none is)."""
        since = self.stuck_since
        if since is None:
            return 0.0
        return (time.monotonic() if now is None else now) - since

    def _close(self, *, moved: bool) -> None:
        while self.floor + 1 in self.seen:
            self.floor += 1
            self.seen.discard(self.floor)
            moved = True
        if not self.seen:
            self.stuck_since = None
        elif moved or self.stuck_since is None:
            self.stuck_since = time.monotonic()

    def _carry(self) -> int:
        if self.floor > self.carried:
            self.carried = self.floor
            return self.floor
        return 0


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
        # lnd's expiry watcher cancels an invoice nobody paid when its expiry
        # passes (hold invoices too): that is an expiry, as on other nodes.
        # "Nobody paid" is amt_paid 0, not "no HTLCs": the parts of a failed
        # multi-part payment stay listed (CANCELED at lnd's MPP timeout), but
        # lnd counts no HTLC while the invoice is OPEN, and its cancel keeps
        # what an ACCEPTED invoice held (invoices/update_invoice.go).
        if not inv.amt_paid_msat and _expired(inv):
            return "EXPIRED"
        return "CANCELED"
    if inv.state == ln.Invoice.ACCEPTED:
        return "ACCEPTED"  # a paid hold invoice: held until settled or canceled
    if _expired(inv):
        return "EXPIRED"
    return "OPEN"


def _expired(inv: Any) -> bool:
    return bool(inv.creation_date + (inv.expiry or 86400) <= time.time())


def merge_records(record_maps: Iterable[Any]) -> dict[int, bytes]:
    """Union of TLV maps; the first HTLC wins when two carry the same type.

    Without the keysend preimage record (5482373484): it is the payment's
    secret, not data a payer sent (the invoice's `preimage` has it once
    settled), and Core Lightning's keysend removes it too, so a keysend's
    records are the same whichever node took it."""
    merged: dict[int, bytes] = {}
    for records in record_maps:
        for key, value in sorted(records.items()):
            if int(key) != KEYSEND_PREIMAGE:
                merged.setdefault(int(key), bytes(value))
    return merged


def to_node_invoice(inv: Any) -> NodeInvoice:
    """lnrpc.Invoice -> NodeInvoice (msat amounts, hex hashes)."""
    settled = inv.state == ln.Invoice.SETTLED
    accepted = inv.state == ln.Invoice.ACCEPTED
    live = [h for h in inv.htlcs if h.state != ln.CANCELED]
    live.sort(key=lambda h: h.htlc_index)
    held = [h.expiry_height for h in live if h.state == ln.ACCEPTED] if accepted else []
    return NodeInvoice(
        payment_hash=inv.r_hash.hex(),
        payment_request=inv.payment_request,
        state=_state(inv),
        amount_msat=inv.value_msat or None,
        created_at=inv.creation_date,
        expiry=inv.expiry or 86400,
        description=inv.memo or None,
        description_hash=inv.description_hash.hex() or None,
        amount_received_msat=inv.amt_paid_msat if settled or accepted else 0,
        settled_at=(inv.settle_date or None) if settled else None,
        preimage=inv.r_preimage.hex() if settled and inv.r_preimage else None,
        payment_secret=_payment_secret(inv.payment_addr),
        custom_records=merge_records(h.custom_records for h in live),
        is_keysend=inv.is_keysend,
        # The earliest held HTLC's expiry: past it the peer force-closes.
        settle_deadline=min(held) if accepted and held else None,
    )


def amp_settlements(inv: Any) -> list[tuple[int, NodeInvoice]]:
    """The settled payment sets an AMP invoice shows, as (settle_index, invoice).

    lnd pays an AMP invoice in sets, each with its own set id, settle index
    and settle time (`amp_invoice_state`), its HTLCs marked with the set id
    (`htlcs[].amp.set_id`): one invoice may hold many payments, so each set
    is its own settlement. Its payment hash, the key lnplugin stores it by,
    is the set id: the invoice's hash would be shared by all its sets, and
    each HTLC of a set has its own hash. The set's HTLCs give its records
    (a boostagram, as a keysend's); its amount is lnd's for the set (the sum
    of those HTLCs when lnd gives none). No preimage: each HTLC has its own.
    A set paid without a payment request (a spontaneous AMP payment) is
    stored as a keysend is: a payment nobody made an invoice for."""
    out = []
    for set_hex, state in inv.amp_invoice_state.items():
        if state.state != ln.SETTLED or not state.settle_index:
            continue
        try:
            set_id = bytes.fromhex(set_hex)
        except ValueError:  # pragma: no cover - lnd writes the set id as hex
            continue
        htlcs = sorted(
            (h for h in inv.htlcs if h.amp.set_id == set_id and h.state == ln.SETTLED),
            key=lambda h: h.htlc_index,
        )
        amount = state.amt_paid_msat or sum(h.amt_msat for h in htlcs)
        settled_at = state.settle_time or inv.settle_date or None
        out.append(
            (
                state.settle_index,
                NodeInvoice(
                    payment_hash=set_hex.lower(),
                    payment_request=inv.payment_request,
                    state="SETTLED",
                    amount_msat=amount or None,
                    created_at=min((h.accept_time for h in htlcs), default=0) or inv.creation_date,
                    expiry=inv.expiry or 86400,
                    description=inv.memo or None,
                    description_hash=inv.description_hash.hex() or None,
                    amount_received_msat=amount,
                    settled_at=settled_at,
                    preimage=None,
                    payment_secret=None,
                    custom_records=merge_records(h.custom_records for h in htlcs),
                    is_keysend=not inv.payment_request,
                ),
            )
        )
    return out


def _payment_secret(payment_addr: bytes) -> str | None:
    """The invoice's payment secret, hex; None for a keysend, to which lnd
    gives the blank address (32 zero bytes), not an empty field."""
    return payment_addr.hex() if any(payment_addr) else None


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
