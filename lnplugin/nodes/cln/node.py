"""Core Lightning adapter: JSON-RPC over the `lightning-rpc` unix socket.

Every call is a `_BlockingCall`: a fresh connection per call, as lightningd
expects (through pyln-client's `UnixSocket`, which handles over-long socket
paths; errors are pyln's `RpcError`), that a timeout bounds and `close()`
interrupts. pyln's `LightningRpc` can do neither: a node that accepts
connections but never answers hung `serve` at its start (deaf to SIGTERM),
`doctor`, and every `POST /invoices`. Ordinary calls give up after
`rpc_timeout` seconds (a `NodeUnavailable`, so a 503); the two that block
until something happens (`wait` and, on old nodes, `waitanyinvoice`) after
`wait_timeout`, and then the feed re-lists. `waitanyinvoice` is handed that
time as its own `timeout`, so lightningd ends it too; `wait` has no such
parameter, and lightningd keeps an abandoned one pending until the index
moves.

Settlement feed (docs/protocols.md#cln-wait-and-listinvoices-by-updated-index):
the cursor is the invoices
`updated_index`. `listinvoices index=updated start=cursor+1` lists the
backlog, then `wait invoices updated cursor+1` blocks until there is more.
Nothing can be skipped because the index only grows and every paid or expired
invoice gets a new value. Nodes older than 23.08 have neither; there the feed
falls back to `waitanyinvoice lastpay_index=cursor` and **the cursor means
pay_index** (only payments, no expiries). `cursor_kind` says which, so the
follower can notice a node upgrade and restart from 0 (duplicates are fine,
misses are not).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import socket
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

from pyln.client import RpcError
from pyln.client.lightning import UnixSocket

from lnplugin.nodes.base import (
    Feature,
    InvoiceRequest,
    InvoiceState,
    InvoiceUpdate,
    Node,
    NodeError,
    NodeInfo,
    NodeInvoice,
    NodeMisconfigured,
    NodeUnavailable,
    OutgoingPayment,
    RequestNotSupported,
)
from lnplugin.nodes.cln.outgoing import OutgoingHistory, msat

log = logging.getLogger(__name__)

PAGE = 100  # rows per listinvoices page
WAIT_SLICE = 0.2  # seconds between checks of close() while blocked
RPC_TIMEOUT = 30.0  # seconds an ordinary call may take (lnd's calls have the same bound)
LABEL_PREFIX = "lnplugin-"
KEYSEND_PREFIX = "keysend-"
DEFAULT_EXPIRY = 604800  # CLN's default; used when an invoice's bolt11 is unreadable
_STATES: dict[str, InvoiceState] = {"unpaid": "OPEN", "paid": "SETTLED", "expired": "EXPIRED"}
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_UNKNOWN_COMMAND = -32601
_INVALID_PARAMS = -32602
_TIMED_OUT = 904
# Control characters JSON can only write as a `\u` escape (all but \b \t \n
# \f \r), which lightningd refuses in a description.
_U_ONLY = re.compile("[\x00-\x07\x0b\x0e-\x1f]")


_VERSION = re.compile(r"v?(\d+)\.(\d+)")


def version_tuple(version: str | None) -> tuple[int, int]:
    """'v26.06.6' -> (26, 6); unknown or odd versions count as recent.

    Only the leading digits of the minor count: a release candidate
    ('v24.08rc2') or a build from git ('v24.08-12-gabcdef0', what
    `git describe` gives) is still 24.08, not 24.82 or 24.812.
    """
    match = _VERSION.match(str(version))
    return (int(match[1]), int(match[2])) if match else (99, 0)


def bolt11_timestamp(bolt11: str) -> int | None:
    """The creation time inside a BOLT11 string (its first 35 data bits).

    `listinvoices` has no creation time, and decoding every invoice over RPC
    would double the cost of the feed; the timestamp is at a fixed place.
    """
    text = bolt11.lower()
    sep = text.rfind("1")
    if sep < 0 or len(text) < sep + 8:
        return None
    value = 0
    for char in text[sep + 1 : sep + 8]:
        digit = _BECH32.find(char)
        if digit < 0:
            return None
        value = value << 5 | digit
    return value


class _BlockingCall:
    """One JSON-RPC call on its own socket that `cancel()` can interrupt."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._cancelled = False

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            if self.sock is not None:
                with contextlib.suppress(OSError):
                    self.sock.shutdown(socket.SHUT_RDWR)

    def call(self, method: str, params: dict[str, Any], timeout: float | None) -> Any:
        """The result; None if cancelled or `timeout` passed (the call is abandoned)."""
        try:
            wrapper = UnixSocket(self.path)  # handles over-long socket paths
        except OSError as exc:
            raise NodeUnavailable(f"Core Lightning socket {self.path}: {exc}") from None
        sock = wrapper.sock
        assert sock is not None
        with self._lock:
            if self._cancelled:
                wrapper.close()
                return None
            self.sock = sock
        try:
            request = {"jsonrpc": "2.0", "id": f"lnplugin:{method}#1", "method": method}
            # UTF-8 as is: lightningd refuses a `\u` escape in some strings
            # (`invoice`'s description), which `ensure_ascii` would write for
            # every character outside ASCII (docs/protocols.md#cln-invoice).
            sock.sendall(json.dumps(request | {"params": params}, ensure_ascii=False).encode())
            sock.settimeout(WAIT_SLICE)
            deadline = None if timeout is None else time.monotonic() + timeout
            buf = b""
            while b"\n\n" not in buf:
                if self._cancelled or (deadline is not None and time.monotonic() > deadline):
                    return None
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    if self._cancelled:
                        return None
                    raise NodeUnavailable("Core Lightning closed the connection")
                buf += chunk
        except OSError as exc:
            if self._cancelled:
                return None
            raise NodeUnavailable(f"Core Lightning connection lost: {exc}") from None
        finally:
            with self._lock:
                self.sock = None
            wrapper.close()
        reply = json.loads(buf.split(b"\n\n", 1)[0])
        if "error" in reply:
            raise RpcError(method, params, reply["error"])
        return reply["result"]


def _not_permitted(path: Path) -> NodeMisconfigured:
    return NodeMisconfigured(
        "invalid setting cln_socket (--cln-socket / LNPLUGIN_CLN_SOCKET): "
        f"{path} cannot be opened by uid {os.geteuid()} (permission denied): run lnplugin as "
        "lightningd's user, or set rpc-file-mode=0660 and add this user to its group"
    )


class ClnNode(Node):
    """A Core Lightning node reached through its `lightning-rpc` socket."""

    kind = "cln"
    # Keysend TLVs never appear in `listinvoices`: plugin mode captures them
    # (`lnplugin.nodes.cln.plugin`) into the store's captured records.
    features = frozenset(
        {
            Feature.CAPTURED_RECORDS,
            Feature.OUTGOING_HISTORY,
            Feature.NODE_DECODE,
            Feature.FEED_HEAD,
        }
    )
    unavailable = {
        Feature.HOLD_INVOICES: "standalone Core Lightning cannot hold an HTLC; run lnplugin "
        "as a CLN plugin"
    }

    def __init__(
        self,
        socket_path: str | Path,
        *,
        network: str | None = None,
        wait_timeout: float | None = 60.0,
        rpc_timeout: float = RPC_TIMEOUT,
    ) -> None:
        """`wait_timeout` bounds one blocking `wait`; the feed then re-lists,
        which also recovers from a wakeup lost in a reconnect. `rpc_timeout`
        bounds every other call."""
        self.socket_path = str(socket_path)
        self.network = network
        self.wait_timeout = wait_timeout
        self.rpc_timeout = rpc_timeout
        self._closed = threading.Event()
        self._calls: set[_BlockingCall] = set()
        self._calls_lock = threading.Lock()
        self._version: tuple[int, int] | None = None
        self._poll_interval: float | None = None  # pinned by the setter below
        self._aliases: dict[str, str | None] = {}
        self._listnodes = True
        self.outgoing_history = OutgoingHistory(self._call)

    @classmethod
    def from_settings(cls, settings: Any) -> Self:
        if settings.cln_socket is None:
            raise NodeMisconfigured(
                "invalid setting cln_socket (--cln-socket / LNPLUGIN_CLN_SOCKET): "
                "required with --node cln; give lightningd's lightning-rpc socket"
            )
        # Not there yet is fine (lightningd may still be starting: lnplugin
        # retries); something else at that path will never become the socket.
        try:
            mode = os.stat(settings.cln_socket).st_mode
        except NotADirectoryError:  # a path under a file: no socket can ever be there
            raise NodeMisconfigured(
                "invalid setting cln_socket (--cln-socket / LNPLUGIN_CLN_SOCKET): "
                f"{settings.cln_socket} is under a file, not a directory"
            ) from None
        except PermissionError:  # a directory on the way this user may not enter
            raise _not_permitted(settings.cln_socket) from None
        except OSError:
            mode = None
        if mode is not None and not stat.S_ISSOCK(mode):
            raise NodeMisconfigured(
                "invalid setting cln_socket (--cln-socket / LNPLUGIN_CLN_SOCKET): "
                f"{settings.cln_socket} is not a unix socket (lightningd's lightning-rpc)"
            )
        # Connecting needs write permission on the socket. Unlike a socket not
        # there yet, a permission does not come back when lightningd does, so
        # retrying it would only warn in the log, forever.
        if mode is not None and not os.access(settings.cln_socket, os.R_OK | os.W_OK):
            raise _not_permitted(settings.cln_socket)
        return cls(settings.cln_socket, network=settings.effective_network)

    # ---------------------------------------------------------------- plumbing
    def _call(self, method: str, **params: Any) -> Any:
        """One RPC with errors mapped onto lnplugin's types."""
        try:
            return self.rpc(method, {k: v for k, v in params.items() if v is not None})
        except RpcError as exc:
            raise _map_rpc_error(exc) from None

    def rpc(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """One JSON-RPC call, answered within `rpc_timeout`: the result, pyln's
        `RpcError` when lightningd refuses, `NodeUnavailable` when it cannot
        be reached or does not answer in time (also used by this node's doctor)."""
        result = self._tracked(method, params or {}, self.rpc_timeout)
        if result is None:  # abandoned: closed meanwhile, or the time ran out
            if self._closed.is_set():
                raise NodeUnavailable("Core Lightning connection closed")
            raise NodeUnavailable(
                f"Core Lightning did not answer {method} within {self.rpc_timeout:g} s "
                f"(socket {self.socket_path})"
            )
        return result

    def _blocking(self, method: str, params: dict[str, Any], timeout: float | None) -> Any:
        """A call that waits for something to happen: None when it ends unanswered."""
        try:
            return self._tracked(method, params, timeout)
        except RpcError as exc:
            raise _map_rpc_error(exc) from None

    def _tracked(self, method: str, params: dict[str, Any], timeout: float | None) -> Any:
        """One `_BlockingCall`, known to `close()` while it runs; None when it
        was abandoned (closed, or `timeout` passed). pyln's `RpcError` as is."""
        if self._closed.is_set():
            return None
        call = _BlockingCall(self.socket_path)
        with self._calls_lock:
            self._calls.add(call)
        try:
            return call.call(method, params, timeout)
        except RpcError:  # lightningd's refusal: a ValueError too, but not a torn reply
            raise
        except ValueError as exc:  # a torn or non-JSON reply
            raise NodeUnavailable(f"Core Lightning socket {self.socket_path}: {exc}") from None
        finally:
            with self._calls_lock:
                self._calls.discard(call)

    def close(self) -> None:
        self._closed.set()
        with self._calls_lock:
            calls = list(self._calls)
        for call in calls:
            call.cancel()

    @property
    def version(self) -> tuple[int, int]:
        if self._version is None:
            self._version = version_tuple(self._call("getinfo").get("version"))
        return self._version

    @property
    def cursor_kind(self) -> str:
        """'updated_index' (>= 23.08) or 'pay_index' (older): what cursors mean."""
        return "updated_index" if self.version >= (23, 8) else "pay_index"

    @property
    def outgoing_cursor_kind(self) -> str:
        """Always `updated_index` (rows without one hand cursor 0). lnplugin
        once kept `listsendpays` `id` there: a store that has no kind
        recorded for a cursor above 0 has such a one, read from 0 again."""
        return "updated_index"

    @property
    def outgoing_poll_interval(self) -> float:
        """Before 23.11 `listsendpays` has no index: each poll lists every
        completed payment, so poll at the sweep's pace instead."""
        if self._poll_interval is not None:
            return self._poll_interval
        return 5.0 if self.version >= (23, 11) else 60.0

    @outgoing_poll_interval.setter
    def outgoing_poll_interval(self, seconds: float) -> None:
        """`Node` documents the interval as a plain attribute that may be set
        (tests shorten it), so this node accepts a pinned value too."""
        self._poll_interval = seconds

    # ---------------------------------------------------------------- Node API
    def get_info(self) -> NodeInfo:
        info = self._call("getinfo")
        self._version = version_tuple(info.get("version"))
        return NodeInfo(
            kind="cln",
            pubkey=info.get("id"),
            alias=info.get("alias"),
            network=info.get("network"),
            version=info.get("version"),
            block_height=info.get("blockheight"),
        )

    def create_invoice(self, request: InvoiceRequest) -> NodeInvoice:
        """Mint with `invoice`, labelled `lnplugin-<random>` (labels must be unique).

        Description hashes: CLN's `invoice` cannot put an arbitrary hash in
        the BOLT11 `h` field. Its `deschashonly=true` stores the description
        and puts sha256(description) in `h`. So a client-supplied
        description_hash is only possible together with the description it
        hashes; a bare hash is refused (`RequestNotSupported`, a 400 over HTTP).
        """
        description = request.description or ""
        _check_description(description)
        deschashonly = None
        if request.description_hash is not None:
            digest = hashlib.sha256(description.encode()).hexdigest()
            if request.description is None or digest != request.description_hash.lower():
                raise RequestNotSupported(
                    "Core Lightning cannot create an invoice for a description_hash alone, "
                    "only for the hash of a description it is given; send the description",
                    "description_hash",
                )
            deschashonly = True
        label = LABEL_PREFIX + uuid.uuid4().hex
        created = self._call(
            "invoice",
            amount_msat="any" if request.amount_msat is None else request.amount_msat,
            label=label,
            description=description,
            expiry=request.expiry,
            exposeprivatechannels=True if request.private_route_hints else None,
            deschashonly=deschashonly,
            cltv=request.min_final_cltv_expiry_delta,
        )
        found = self.lookup_invoice(created["payment_hash"])
        if found is None:
            raise NodeUnavailable("Core Lightning lost the invoice it just created")
        if deschashonly:
            found = dataclasses.replace(found, description_hash=request.description_hash)
        return found

    def lookup_invoice(self, payment_hash: str) -> NodeInvoice | None:
        rows = self._call("listinvoices", payment_hash=payment_hash.lower())["invoices"]
        return to_invoice(rows[0]) if rows else None

    def settlements(self, cursor: int) -> Iterator[InvoiceUpdate]:
        """Paid and expired invoices after `cursor`, backlog first, then live.

        Ends (returns) after `close()`; raises NodeUnavailable when the node
        goes away. See the module docstring for what the cursor means.
        """
        try:
            if self.cursor_kind == "updated_index":
                try:
                    yield from self._settlements_by_updated_index(cursor)
                    return
                except _OldNode:  # the node does not know index paging after all
                    self._version = (23, 5)
                    cursor = 0  # cursor kinds differ: replay
            yield from self._settlements_by_pay_index(cursor)
        except NodeUnavailable:
            if self._closed.is_set():
                return  # close() cut a call short: the feed ends, as promised
            raise

    def _settlements_by_updated_index(self, cursor: int) -> Iterator[InvoiceUpdate]:
        known = 0  # the node's updated index, as the last `wait` reported it
        while not self._closed.is_set():
            for row, position in self._updated("listinvoices", "invoices", cursor):
                cursor = position
                if row["status"] in ("paid", "expired"):
                    yield InvoiceUpdate(to_invoice(row), position)
            # That listing began after `wait` reported `known`, so it showed every
            # invoice up to there that still exists; the others were deleted, and
            # waiting for them would return at once, every time.
            cursor = max(cursor, known)
            reply = self._blocking(
                "wait",
                {"subsystem": "invoices", "indexname": "updated", "nextvalue": cursor + 1},
                self.wait_timeout,
            )
            if reply is not None:
                known = int(reply.get("updated") or 0)

    def _updated(
        self, method: str, key: str, cursor: int, **only: Any
    ) -> Iterator[tuple[dict[str, Any], int]]:
        """Every row of `method index=updated` after `cursor` (and `only`'s
        filters), page by page, each with the running cursor (the highest
        updated_index so far)."""
        while True:
            rows = self._call(method, index="updated", start=cursor + 1, limit=PAGE, **only)[key]
            for row in rows:
                cursor = max(cursor, int(row.get("updated_index") or 0))
                yield row, cursor
            if len(rows) < PAGE:
                return

    def _settlements_by_pay_index(self, cursor: int) -> Iterator[InvoiceUpdate]:
        # lightningd keeps a command whose caller hung up until it completes:
        # abandoned here at our own deadline, each idle `waitanyinvoice` would
        # stay pending in the node. Its `timeout` (whole seconds) ends it
        # there first, with error 904; ours is only the bound on a wedged node.
        waits: dict[str, Any] = {}
        bound = None
        if self.wait_timeout is not None:
            waits["timeout"] = max(1, math.ceil(self.wait_timeout))
            bound = waits["timeout"] + self.rpc_timeout
        while not self._closed.is_set():
            try:
                row = self._blocking("waitanyinvoice", {"lastpay_index": cursor, **waits}, bound)
            except NodeError as exc:
                if getattr(exc, "code", None) == _TIMED_OUT:
                    continue
                raise
            if row is None:
                continue
            cursor = int(row["pay_index"])
            yield InvoiceUpdate(to_invoice(row), cursor)

    def feed_head(self) -> int | None:
        """`FeedHead`: the invoices' updated index now (`wait` with nextvalue 0
        answers at once). None on nodes before 23.08, whose cursor is a
        pay_index that no call reports without listing every invoice."""
        if self.cursor_kind != "updated_index":
            return None
        reply = self._call("wait", subsystem="invoices", indexname="updated", nextvalue=0)
        return int(reply.get("updated") or 0)

    def history_replaced(self) -> bool:
        """`FeedHead`: never known apart from the head, which is asked afresh."""
        return False

    def settled_since(self, cursor: int) -> Iterator[InvoiceUpdate]:
        if self.cursor_kind == "pay_index":
            rows = [r for r in self._call("listinvoices")["invoices"] if r["status"] == "paid"]
            for row in sorted(rows, key=lambda r: int(r["pay_index"])):
                if int(row["pay_index"]) > cursor:
                    yield InvoiceUpdate(to_invoice(row), int(row["pay_index"]))
            return
        with contextlib.suppress(_OldNode):
            for row, position in self._updated("listinvoices", "invoices", cursor):
                if row["status"] == "paid":
                    yield InvoiceUpdate(to_invoice(row), position)

    def outgoing_payments(self, cursor: int) -> Iterator[OutgoingPayment]:
        """Completed payments with a part completed after `cursor` (an
        `updated_index` of listsendpays), oldest first, each whole: see
        `lnplugin.nodes.cln.outgoing`. Rows without an updated_index (before
        v23.11, or completed before the node's upgrade to it) hand cursor 0
        and are listed at every poll (the store keeps each payment once)."""
        return self.outgoing_history.payments(cursor, indexed=self.version >= (23, 11))

    def node_alias(self, pubkey: str) -> str | None:
        """The alias from `listnodes` (gossip), cached; None if unknown or unavailable."""
        if pubkey in self._aliases:
            return self._aliases[pubkey]
        if not self._listnodes:
            return None
        try:
            nodes = self._call("listnodes", id=pubkey)["nodes"]
        except NodeUnavailable:
            return None
        except NodeError:
            self._listnodes = False  # e.g. a rune that does not allow listnodes
            return None
        alias = nodes[0].get("alias") if nodes else None
        self._aliases[pubkey] = alias
        return alias

    def decode(self, invstring: str) -> dict[str, Any]:
        """CLN's `decode` result (payee, amount, description...); `decodepay` is gone."""
        return self._call("decode", string=invstring)


def _check_description(description: str) -> None:
    """Refuse, as the client's fault, a description lightningd would refuse:
    it reads `invoice`'s description as UTF-8 with JSON's short escapes only,
    never a `\\u` escape, which JSON needs for most control characters and
    which text that is not UTF-8 (a lone surrogate) cannot do without."""
    try:
        description.encode()
    except UnicodeEncodeError:
        raise RequestNotSupported("must be UTF-8 text", "description") from None
    if _U_ONLY.search(description):
        raise RequestNotSupported(
            "Core Lightning cannot take a control character (other than tab, newline, "
            "carriage return, backspace or form feed) in a description",
            "description",
        )


class _OldNode(NodeError):
    """The node lacks a command or parameter (older than the feature)."""


def _map_rpc_error(exc: RpcError) -> NodeError:
    error = exc.error
    if not isinstance(error, dict):  # pyln reports a dropped connection as a string
        return NodeUnavailable(f"Core Lightning: {error}")
    code = error.get("code")
    message = str(error.get("message") or error)
    if code == _UNKNOWN_COMMAND or (code == _INVALID_PARAMS and "unknown parameter" in message):
        mapped: NodeError = _OldNode(message)
    else:
        mapped = NodeError(message)
    mapped.code = code if isinstance(code, int) else None
    return mapped


def to_invoice(row: dict[str, Any]) -> NodeInvoice:
    """A listinvoices/waitanyinvoice row as a NodeInvoice.

    Keysend invoices (label `keysend-...`, made by CLN's keysend plugin) get
    `is_keysend` and an empty payment_request: their bolt11 is an internal
    artifact the payer never saw. CLN lists them without `amount_msat` (the
    artifact asks for no amount); the amount is what the sender sent, as LND
    reports a keysend's, not 0, which would read as an "any amount" invoice.
    Their TLVs are not in the listing; plugin mode captures them from
    `htlc_accepted`.
    """
    label = str(row.get("label", ""))
    bolt = row.get("bolt11") or row.get("bolt12") or ""
    expires_at = int(row["expires_at"])
    created_at = bolt11_timestamp(row["bolt11"]) if row.get("bolt11") else None
    if created_at is None or created_at > expires_at:
        created_at = expires_at - DEFAULT_EXPIRY
    is_keysend = label.startswith(KEYSEND_PREFIX)
    paid = row["status"] == "paid"
    received = msat(row.get("amount_received_msat")) or 0
    amount = msat(row.get("amount_msat"))
    if amount is None and is_keysend and received:
        amount = received
    return NodeInvoice(
        payment_hash=row["payment_hash"],
        payment_request="" if is_keysend else bolt,
        state=_STATES.get(row["status"], "OPEN"),
        amount_msat=amount,
        created_at=created_at,
        expiry=expires_at - created_at,
        description=row.get("description"),
        amount_received_msat=received,
        settled_at=int(row["paid_at"]) if paid and row.get("paid_at") is not None else None,
        preimage=row.get("payment_preimage") if paid else None,
        is_keysend=is_keysend,
    )
