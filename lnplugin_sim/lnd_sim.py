"""An LND simulator: a real gRPC server over TLS that speaks our `lnrpc` subset.

Why it exists: lnplugin's LND adapter and follower must be tested against the
behaviour that loses payments in other projects (SubscribeInvoices replay
semantics with duplicates, dropped streams, a node that restarts, least-
privilege macaroons), and CI has no lnd. The simulator reproduces those
behaviours from docs/protocols.md (the "LND:" sections) over the real transport, so the adapter
code under test is exactly the code that runs against a real node.

In-process use (tests)::

    sim = LndSim(tmp_path / "lnd", network="regtest").start()
    node = LndNode(sim.target, cert=sim.cert_path, macaroon=str(sim.admin_macaroon_path))
    inv = sim.create_invoice(1000, memo="by another app")   # like `lncli addinvoice`
    sim.pay_invoice(inv.r_hash.hex())                         # settle it
    sim.keysend(5000, {7629169: b'{"message":"hi"}'})        # spontaneous payment
    sim.amp_payment(5000, {7629169: b'{"message":"hi"}'})    # spontaneous AMP payment
    sim.bake(["uri:/lnrpc.Lightning/AddInvoice", "invoices:read"])  # a macaroon it accepts
    sim.bake(["info:read"], "old.macaroon", [time_before(yesterday)])  # refused: expired
    sim.faults.drop_stream_after = 3                          # fault injection
    with sim.faults.stall("AddInvoice"): ...                  # an lnd slow to answer
    sim.restart()                                             # same port, same data
    sim.stop()

`replay_order` picks how the SubscribeInvoices settle backlog is ordered:
"settle" (by settle_index, as lnd's bbolt store walks it) or "add" (by
add_index, as lnd's native SQL store selects it; docs/protocols.md, "LND:
SubscribeInvoices replay"). It may be changed between subscriptions.

Command line (point `lnplugin serve --node lnd` at it like at a real node)::

    python -m lnplugin_sim.lnd_sim --data-dir D --port 10009 [--control-port 8089] \
        [--replay-order settle|add]

State lives in `<data-dir>/sim.sqlite` next to tls.cert, tls.key and the
macaroons, so a new `LndSim` on the same directory continues where the last
one stopped.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import ipaddress
import itertools
import json
import queue
import random
import secrets
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar, cast

import grpc

from lnplugin import bolt11
from lnplugin.boostagram import KEYSEND_PREIMAGE as KEYSEND_PREIMAGE_RECORD
from lnplugin.nodes.base import CURRENCY_BY_NETWORK, NETWORKS
from lnplugin.nodes.lnd.rpc import (
    invoices_pb2,
    invoices_pb2_grpc,
    lightning_pb2,
    lightning_pb2_grpc,
)

Invoice = lightning_pb2.Invoice
Payment = lightning_pb2.Payment
T = TypeVar("T")

DEFAULT_EXPIRY = 86400
DEFAULT_CLTV = 80
# lnd cancels an ACCEPTED hold invoice itself this many blocks before its
# earliest HTLC expires (lncfg.DefaultHoldInvoiceExpiryDelta: the incoming
# broadcast delta 16, plus 2), so the channel is not force-closed.
HOLD_EXPIRY_DELTA = 18
PAGE_DEFAULT = 100  # lnd's default for ListInvoices and (since 0.20) ListPayments
INVOICE_FEATURES = (9, 14, 17)  # var_onion_optin (req), payment_secret (req), basic_mpp (opt)
# lnd's spontaneous AMP invoice (processAMP): tlv_onion (req), payment_addr (opt), amp (req)
AMP_FEATURES = (8, 15, 30)
LND_CHAIN_NAME = {"bitcoin": "mainnet"}  # lnd's GetInfo chains[].network spelling
REPLAY_ORDERS = ("settle", "add")  # bbolt store, native SQL store

# ---------------------------------------------------------------------------
# Permissions (docs/protocols.md#lnd-permissions-per-rpc). Each macaroon file
# maps to a permission set.

METHOD_PERMISSIONS: dict[str, str] = {
    "/lnrpc.Lightning/GetInfo": "info:read",
    "/lnrpc.Lightning/AddInvoice": "invoices:write",
    "/lnrpc.Lightning/ListInvoices": "invoices:read",
    "/lnrpc.Lightning/LookupInvoice": "invoices:read",
    "/lnrpc.Lightning/SubscribeInvoices": "invoices:read",
    "/lnrpc.Lightning/ListPayments": "offchain:read",
    "/invoicesrpc.Invoices/SubscribeSingleInvoice": "invoices:read",
    "/invoicesrpc.Invoices/CancelInvoice": "invoices:write",
    "/invoicesrpc.Invoices/AddHoldInvoice": "invoices:write",
    "/invoicesrpc.Invoices/SettleInvoice": "invoices:write",
    "/invoicesrpc.Invoices/LookupInvoiceV2": "invoices:write",
}
_ENTITIES = ("info", "invoices", "offchain", "onchain", "address", "message", "peers", "signer")
ADMIN_PERMISSIONS = frozenset(f"{e}:{a}" for e in _ENTITIES for a in ("read", "write"))
READONLY_PERMISSIONS = frozenset(f"{e}:read" for e in _ENTITIES)
# lnd's stock invoice.macaroon: no offchain:read, no info:read.
INVOICE_PERMISSIONS = frozenset(
    {"invoices:read", "invoices:write", "address:read", "address:write", "onchain:read"}
)
MACAROONS = {
    "admin.macaroon": ADMIN_PERMISSIONS,
    "readonly.macaroon": READONLY_PERMISSIONS,
    "invoice.macaroon": INVOICE_PERMISSIONS,
}
# The id of the root key lnd bakes its macaroons with (macaroons.DefaultRootKeyID);
# a macaroon naming another is refused, as lnd refuses one whose key it lacks.
ROOT_KEY_ID = b"0"
# lnd's entity for single-method permissions: `uri:/lnrpc.Lightning/AddInvoice`
# permits that one method (macaroons/service.go, PermissionEntityCustomURI).
URI_ENTITY = "uri"


def permits(permissions: frozenset[str], method: str) -> bool:
    """Whether a macaroon granting `permissions` may call `method`
    ("/pkg.Service/Method"), as lnd's macaroon service decides: first the
    method's entity:action, then, failing that, the op `uri:<method>`."""
    needed = METHOD_PERMISSIONS.get(method)
    return (needed is not None and needed in permissions) or (
        f"{URI_ENTITY}:{method}" in permissions
    )


def check_bakeable(permissions: frozenset[str]) -> None:
    """Refuse what lnd's BakeMacaroon refuses, with its messages: an empty
    list, and a `uri:` permission naming no method the node serves (so a
    misspelt method fails at bake time, as on lnd, not at the first call)."""
    if not permissions:
        raise ValueError("permission list cannot be empty")
    for perm in permissions:
        entity, _, action = perm.partition(":")
        if not entity or not action:
            raise ValueError(f"invalid permission [{perm}]")
        if entity == URI_ENTITY and action not in METHOD_PERMISSIONS:
            raise ValueError(
                "invalid permission action, must be an existing URI in the format "
                f"/package.Service/MethodName: {action}"
            )


@dataclass
class Faults:
    """Knobs tests flip at run time; every field is read on each call.

    error_style "grpc" answers auth failures with UNAUTHENTICATED /
    PERMISSION_DENIED; "lnd" mimics real lnd, which returns plain errors
    (status UNKNOWN) with the texts "expected 1 macaroon, got 0",
    "verification failed: ..." and "permission denied".
    """

    unavailable_until: float = 0.0  # monotonic deadline: every call fails UNAVAILABLE
    delay: float = 0.0  # seconds to sleep before each reply / stream start
    drop_stream_after: int | None = None  # abort SubscribeInvoices after N messages
    drop_stream_times: int | None = None  # how many streams to drop (None: all)
    duplicate_every: int = 0  # send every Nth stream message twice (1: all)
    error_style: str = "grpc"
    # `stall`: calls of one method wait, as on an lnd that is slow to answer.
    stalled_method: str | None = None
    stalled: int = 0  # calls of it waiting now
    _bound: float = 60.0
    _released: threading.Event = field(default_factory=threading.Event)
    _count: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def stall(self, method: str, bound: float = 60.0) -> Iterator[None]:
        """Every call of `method` (e.g. "AddInvoice") waits until the block
        ends (at most `bound` seconds, so a test that never ends it cannot
        hang the simulator), then is answered as usual."""
        self._released.clear()
        self.stalled_method, self._bound = method, bound
        try:
            yield
        finally:
            self.stalled_method = None
            self._released.set()

    def stalls(self, method_path: str) -> bool:
        method = self.stalled_method
        return method is not None and method_path.rsplit("/", 1)[-1] == method

    def wait_if_stalled(self, method_path: str) -> None:
        if not self.stalls(method_path):
            return
        with self._count:
            self.stalled += 1
        try:
            self._released.wait(self._bound)
        finally:
            with self._count:
                self.stalled -= 1

    def unavailable_for(self, seconds: float) -> None:
        self.unavailable_until = time.monotonic() + seconds

    def take_drop(self) -> int | None:
        """The drop point for a new stream, consuming one of drop_stream_times."""
        if self.drop_stream_after is None:
            return None
        if self.drop_stream_times is not None:
            if self.drop_stream_times <= 0:
                return None
            self.drop_stream_times -= 1
        return self.drop_stream_after


# ---------------------------------------------------------------------------
# Credentials on disk


def _ensure_tls(data_dir: Path) -> tuple[bytes, bytes]:
    """A self-signed ECDSA P-256 cert like lnd's, reused across restarts."""
    cert_path, key_path = data_dir / "tls.cert", data_dir / "tls.key"
    if cert_path.exists() and key_path.exists():
        return cert_path.read_bytes(), key_path.read_bytes()
    now = _dt.datetime.now(_dt.UTC)
    cert_pem, key_pem = self_signed_cert(
        now - _dt.timedelta(days=1), now + _dt.timedelta(days=3650)
    )
    key_path.write_bytes(key_pem)
    key_path.chmod(0o600)
    cert_path.write_bytes(cert_pem)
    return cert_pem, key_pem


def self_signed_cert(not_before: _dt.datetime, not_after: _dt.datetime) -> tuple[bytes, bytes]:
    """A certificate shaped as lnd makes its own (ECDSA P-256, self-signed, for
    localhost, 127.0.0.1 and ::1), valid between the two times; PEM cert and key.
    Tests make expired ones with it too."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "lnd autogenerated cert"),
            x509.NameAttribute(NameOID.COMMON_NAME, "lnd-sim"),
        ]
    )
    san = x509.SubjectAlternativeName(
        [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _pb_bytes(number: int, data: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _uvarint(number << 3 | 2) + _uvarint(len(data)) + data


def _packet(kind: int, data: bytes) -> bytes:
    """A field of a binary (v2) macaroon."""
    return _uvarint(kind) + _uvarint(len(data)) + data


def mint_macaroon(
    permissions: frozenset[str], caveats: tuple[str, ...] = (), root_key_id: bytes = ROOT_KEY_ID
) -> bytes:
    """A macaroon file shaped as lnd writes one (docs/protocols.md#lnd-macaroon-format):
    binary v2, location `lnd`, an identifier of version byte 3 and a `MacaroonId`
    protobuf (nonce, storage id, one op per entity), first-party caveats, a
    32-byte signature. The signature is random: the simulator recognises its
    macaroons by their bytes, as it always has, and never verifies one.
    `root_key_id` other than lnd's default "0": a macaroon whose root key
    the node does not have (`lncli bakemacaroon --root_key_id`, then deleted)."""
    by_entity: dict[str, list[str]] = {}
    for perm in sorted(permissions):
        entity, _, action = perm.partition(":")
        by_entity.setdefault(entity, []).append(action)
    ops = b"".join(
        _pb_bytes(3, _pb_bytes(1, e.encode()) + b"".join(_pb_bytes(2, a.encode()) for a in acts))
        for e, acts in by_entity.items()
    )
    identifier = b"\x03" + _pb_bytes(1, secrets.token_bytes(16)) + _pb_bytes(2, root_key_id) + ops
    sections = b"".join(_packet(2, c.encode()) + b"\x00" for c in caveats)
    return (
        b"\x02"
        + _packet(1, b"lnd")
        + _packet(2, identifier)
        + b"\x00"
        + sections
        + b"\x00"
        + _packet(6, secrets.token_bytes(32))
    )


def time_before(when: _dt.datetime) -> str:
    """The caveat `lncli bakemacaroon --timeout` adds (bakery's `time-before`)."""
    return "time-before " + when.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ip_lock(address: str) -> str:
    """The caveat `lncli bakemacaroon --ip_address` adds (lnd's `ipaddr`)."""
    return f"ipaddr {address}"


def _read_packets(raw: bytes, at: int) -> tuple[dict[int, bytes], int]:
    """One section of a binary (v2) macaroon: its fields up to the end marker."""
    fields: dict[int, bytes] = {}
    while raw[at] != 0:
        kind, at = _read_uvarint(raw, at)
        size, at = _read_uvarint(raw, at)
        fields[kind], at = raw[at : at + size], at + size
    return fields, at + 1


def _read_uvarint(raw: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = raw[at]
        value, shift, at = value | (byte & 0x7F) << shift, shift + 7, at + 1
        if not byte & 0x80:
            return value, at


def read_macaroon(raw: bytes) -> tuple[bytes, tuple[str, ...]] | None:
    """The root key id and first-party caveats of a macaroon in the format
    `mint_macaroon` writes; None when it is not one (lnd cannot unmarshal it)."""
    try:
        if raw[0] != 2:
            return None
        header, at = _read_packets(raw, 1)
        identifier = header[2]
        caveats: list[str] = []
        while raw[at] != 0:
            section, at = _read_packets(raw, at)
            caveats.append(section[2].decode())
        if identifier[:1] != b"\x03":
            return None
        fields: dict[int, bytes] = {}
        pos = 1
        while pos < len(identifier):
            tag, pos = _read_uvarint(identifier, pos)
            size, pos = _read_uvarint(identifier, pos)
            fields.setdefault(tag >> 3, identifier[pos : pos + size])
            pos += size
        return fields.get(2, b""), tuple(caveats)
    except (IndexError, KeyError, UnicodeDecodeError):
        return None


def _caveat_refusal(caveat: str, peer: str) -> str | None:
    """Why lnd refuses a macaroon carrying `caveat` from `peer` (gRPC's
    "ipv4:1.2.3.4:5" or "ipv6:[::1]:5"); None when it holds. Texts from
    macaroon-bakery's checkers (`caveat %q not satisfied: ...`) and lnd's
    macaroons/constraints.go."""
    condition, _, arg = caveat.partition(" ")
    if condition == "time-before":
        expires = _dt.datetime.fromisoformat(arg.replace("Z", "+00:00"))
        if _dt.datetime.now(_dt.UTC) < expires:
            return None
        return f'caveat "{caveat}" not satisfied: macaroon has expired'
    if condition == "ipaddr":
        address = peer.split(":", 1)[-1].rsplit(":", 1)[0].strip("[]")
        if address == arg:
            return None
        return f'caveat "{caveat}" not satisfied: macaroon locked to different IP address'
    return f'caveat "{caveat}" not satisfied: caveat not recognized'


def _ensure_macaroons(data_dir: Path) -> dict[str, frozenset[str]]:
    """Macaroon files in lnd's format, carrying their permissions; returns hex ->
    permission set."""
    table: dict[str, frozenset[str]] = {}
    for name, perms in MACAROONS.items():
        path = data_dir / name
        if not path.exists():
            path.write_bytes(mint_macaroon(perms))
            path.chmod(0o600)
        table[path.read_bytes().hex()] = perms
    return table


# ---------------------------------------------------------------------------
# The ledger: invoices and payments, in memory with sqlite write-through


class SimError(Exception):
    """A request the simulated node refuses; carries the gRPC status to return."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Subscriber:
    """One SubscribeInvoices client, with lnd's per-client live-event filter."""

    def __init__(self, add_index: int, settle_index: int) -> None:
        self.add_index = add_index
        self.settle_index = settle_index
        self.queue: queue.SimpleQueue[Invoice | None] = queue.SimpleQueue()

    def offer(self, inv: Invoice) -> None:
        """lnd's notifyClients: skip what this client already got live, then advance.
        An AMP payment set settling is always sent (the invoice shown SETTLED,
        settle_index 0), and moves the client's settle index to the set's."""
        if inv.is_amp and inv.state == Invoice.SETTLED:
            self.settle_index = max(s.settle_index for s in inv.amp_invoice_state.values())
        elif inv.state == Invoice.SETTLED:
            if self.settle_index >= inv.settle_index:
                return
            self.settle_index = inv.settle_index
        elif inv.state == Invoice.OPEN:
            if self.add_index >= inv.add_index:
                return
            self.add_index = inv.add_index
        else:
            return
        self.queue.put(inv)


class Ledger:
    """Invoices by add_index, settlements by settle_index, payments by index.

    Invoice messages are treated as immutable snapshots: a state change stores
    a new message, so events already queued keep the state they were sent in.
    """

    def __init__(self, db_path: Path) -> None:
        self.lock = threading.RLock()
        self.db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(
            """
            CREATE TABLE IF NOT EXISTS invoices (add_index INTEGER PRIMARY KEY, data BLOB);
            CREATE TABLE IF NOT EXISTS payments (payment_index INTEGER PRIMARY KEY, data BLOB);
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB);
            """
        )
        self.invoices: list[Invoice] = []  # position = add_index - 1
        self.by_hash: dict[bytes, int] = {}  # r_hash -> add_index
        # position = settle_index - 1 -> add_index; 0 for an index no invoice
        # reports (an AMP payment set took it)
        self.settled: list[int] = []
        self.payments: list[Payment] = []  # position = payment_index - 1
        self.subscribers: set[_Subscriber] = set()
        self.open: set[int] = set()  # positions (add_index - 1) of OPEN invoices
        # AMP invoices lnd stores CANCELED while showing them SETTLED (a set
        # had settled): by add_index. ListInvoices' pending_only leaves them out.
        self.amp_closed: set[int] = {
            int(key.removeprefix("amp_closed:"))
            for (key,) in self.db.execute("SELECT key FROM meta WHERE key LIKE 'amp_closed:%'")
        }
        # SubscribeSingleInvoice clients by payment hash: every state change.
        self.singles: dict[bytes, set[queue.SimpleQueue[Invoice | None]]] = {}
        for (blob,) in self.db.execute("SELECT data FROM invoices ORDER BY add_index"):
            inv = Invoice.FromString(blob)
            self.invoices.append(inv)
            self.by_hash[inv.r_hash] = inv.add_index
            if inv.state == Invoice.OPEN:
                self.open.add(inv.add_index - 1)
        for inv in self.invoices:
            for index in [inv.settle_index] + [
                s.settle_index for s in inv.amp_invoice_state.values() if s.settle_index
            ]:
                if index:
                    self.settled.extend([0] * (index - len(self.settled)))
                    self.settled[index - 1] = inv.add_index
        for (blob,) in self.db.execute("SELECT data FROM payments ORDER BY payment_index"):
            self.payments.append(Payment.FromString(blob))

    def baked(self) -> dict[str, frozenset[str]]:
        """Macaroons `LndSim.bake` made: hex -> permission set."""
        return {
            key.removeprefix("macaroon:"): frozenset(bytes(value).decode().split())
            for key, value in self.db.execute(
                "SELECT key, value FROM meta WHERE key LIKE 'macaroon:%'"
            )
        }

    def meta(self, key: str, make: Callable[[], bytes]) -> bytes:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row:
            return bytes(row[0])
        value = make()
        self.db.execute("INSERT INTO meta VALUES (?, ?)", (key, value))
        return value

    # -- writes (callers hold self.lock) --

    def _store(self, invs: Sequence[Invoice]) -> None:
        self.db.executemany(
            "INSERT OR REPLACE INTO invoices VALUES (?, ?)",
            [(i.add_index, i.SerializeToString()) for i in invs],
        )

    def insert(self, inv: Invoice, *, persist: bool = True) -> Invoice:
        if inv.r_hash in self.by_hash:
            raise SimError(
                grpc.StatusCode.ALREADY_EXISTS, "invoice with payment hash already exists"
            )
        inv.add_index = len(self.invoices) + 1
        self.invoices.append(inv)
        self.by_hash[inv.r_hash] = inv.add_index
        if inv.state == Invoice.OPEN:
            self.open.add(inv.add_index - 1)
        if persist:
            self._store([inv])
        self._notify(inv)
        return inv

    def replace(self, inv: Invoice, *, persist: bool = True) -> Invoice:
        self.invoices[inv.add_index - 1] = inv
        if inv.state != Invoice.OPEN:
            self.open.discard(inv.add_index - 1)
        if inv.state == Invoice.SETTLED and not inv.settle_index:
            inv.settle_index = len(self.settled) + 1
            self.settled.append(inv.add_index)
        if persist:
            self._store([inv])
        self._notify(inv)
        return inv

    def add_payment(self, pay: Payment) -> Payment:
        pay.payment_index = len(self.payments) + 1
        self.payments.append(pay)
        self._store_payment(pay)
        return pay

    def replace_payment(self, pay: Payment) -> Payment:
        self.payments[pay.payment_index - 1] = pay
        self._store_payment(pay)
        return pay

    def _store_payment(self, pay: Payment) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO payments VALUES (?, ?)",
            (pay.payment_index, pay.SerializeToString()),
        )

    def _notify(self, inv: Invoice) -> None:
        for sub in list(self.subscribers):
            sub.offer(inv)
        for single in list(self.singles.get(inv.r_hash, ())):
            single.put(inv)

    # -- reads --

    def get(self, r_hash: bytes) -> Invoice | None:
        with self.lock:
            idx = self.by_hash.get(r_hash)
            return self.invoices[idx - 1] if idx else None

    def added_after(self, add_index: int, chunk: int = 500) -> Iterator[Invoice]:
        """Invoices with add_index > N, read in chunks so concurrent writes can race in."""
        pos = add_index
        while True:
            with self.lock:
                batch = self.invoices[pos : pos + chunk]
            if not batch:
                return
            yield from batch
            pos += len(batch)

    def settled_after(self, settle_index: int, chunk: int = 500) -> Iterator[Invoice]:
        """Invoices with settle_index > N in settle_index order (lnd's bbolt store).
        An AMP payment set's number gives its invoice with that set only."""
        pos = settle_index
        while True:
            with self.lock:
                adds = self.settled[pos : pos + chunk]
                batch = [
                    _one_set(self.invoices[a - 1], pos + i + 1) for i, a in enumerate(adds) if a
                ]
            if not adds:
                return
            yield from batch
            pos += len(adds)

    def settled_after_by_add(self, settle_index: int, chunk: int = 500) -> Iterator[Invoice]:
        """Invoices with settle_index > N in add_index order (lnd's native SQL
        store), then the AMP payment sets past N."""
        amp: list[tuple[int, Invoice]] = []
        for inv in self.added_after(0, chunk):
            if inv.settle_index > settle_index:
                yield inv
            amp.extend(
                (s.settle_index, inv)
                for s in inv.amp_invoice_state.values()
                if s.settle_index > settle_index
            )
        for index, inv in sorted(amp, key=lambda pair: pair[0]):
            yield _one_set(inv, index, sql=True)

    def burn_settle_index(self) -> int:
        """Take the next settle_index without giving it to an invoice (callers hold lock)."""
        self.settled.append(0)
        return len(self.settled)

    def close(self) -> None:
        with self.lock:
            self.db.close()


# ---------------------------------------------------------------------------
# gRPC services


@contextmanager
def _status(context: grpc.ServicerContext) -> Iterator[None]:
    """A `SimError` raised inside ends the call with its gRPC status and
    message, as lnd ends the call that failed."""
    try:
        yield
    except SimError as exc:
        context.abort(exc.code, str(exc))


def _checked_amount(req: Any) -> int:
    """The amount (msat) of an AddInvoice or AddHoldInvoice request, after
    the checks of amount, memo and description hash that both calls make,
    in one order and with one set of messages, so the two cannot drift."""
    if req.value and req.value_msat:
        raise SimError(grpc.StatusCode.UNKNOWN, "value and value_msat are mutually exclusive")
    amount = int(req.value_msat or req.value * 1000)
    if amount < 0:
        raise SimError(grpc.StatusCode.UNKNOWN, "payments of negative value are not allowed")
    if len(req.memo.encode()) > 1024:
        raise SimError(grpc.StatusCode.UNKNOWN, "memo too large: max 1024 bytes")
    if req.description_hash and len(req.description_hash) != 32:
        raise SimError(grpc.StatusCode.UNKNOWN, "description hash is 32 bytes")
    return amount


class _Lightning(lightning_pb2_grpc.LightningServicer):
    def __init__(self, sim: LndSim) -> None:
        self.sim = sim

    def GetInfo(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.sim.get_info()

    def AddInvoice(self, request: Invoice, context: grpc.ServicerContext) -> Any:
        with _status(context):
            inv = self.sim.add_invoice(request)
        return lightning_pb2.AddInvoiceResponse(
            r_hash=inv.r_hash,
            payment_request=inv.payment_request,
            add_index=inv.add_index,
            payment_addr=inv.payment_addr,
        )

    def LookupInvoice(self, request: Any, context: grpc.ServicerContext) -> Any:
        r_hash = request.r_hash
        if not r_hash and request.r_hash_str:
            try:
                r_hash = bytes.fromhex(request.r_hash_str)
            except ValueError:
                context.abort(grpc.StatusCode.UNKNOWN, "unable to decode payment hash")
        if len(r_hash) != 32:
            context.abort(
                grpc.StatusCode.UNKNOWN, f"payment hash must be exactly 32 bytes, is {len(r_hash)}"
            )
        inv = self.sim.ledger.get(r_hash)
        if inv is None:  # lnd turns both of its "no such invoice" errors into NOT_FOUND here
            context.abort(grpc.StatusCode.NOT_FOUND, str(self.sim.not_found()))
        return inv

    def ListInvoices(self, request: Any, context: grpc.ServicerContext) -> Any:
        with _status(context):
            found = self.sim.list_invoices(request)
        resp = lightning_pb2.ListInvoiceResponse(invoices=found)
        if found:
            resp.first_index_offset = found[0].add_index
            resp.last_index_offset = found[-1].add_index
        return resp

    def SubscribeInvoices(self, request: Any, context: grpc.ServicerContext) -> Iterator[Invoice]:
        yield from self.sim.subscribe(request.add_index, request.settle_index, context)

    def ListPayments(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.sim.list_payments(request)


class _Invoices(invoices_pb2_grpc.InvoicesServicer):
    def __init__(self, sim: LndSim) -> None:
        self.sim = sim

    def CancelInvoice(self, request: Any, context: grpc.ServicerContext) -> Any:
        with _status(context):
            self.sim.cancel_invoice(request.payment_hash.hex())
        return invoices_pb2.CancelInvoiceResp()

    def AddHoldInvoice(self, request: Any, context: grpc.ServicerContext) -> Any:
        with _status(context):
            inv = self.sim.add_hold_invoice(request)
        return invoices_pb2.AddHoldInvoiceResp(
            payment_request=inv.payment_request,
            add_index=inv.add_index,
            payment_addr=inv.payment_addr,
        )

    def SettleInvoice(self, request: Any, context: grpc.ServicerContext) -> Any:
        with _status(context):
            self.sim.settle_hold_invoice(request.preimage)
        return invoices_pb2.SettleInvoiceResp()

    def SubscribeSingleInvoice(
        self, request: Any, context: grpc.ServicerContext
    ) -> Iterator[Invoice]:
        yield from self.sim.subscribe_single(request.r_hash, context)

    def LookupInvoiceV2(self, request: Any, context: grpc.ServicerContext) -> Any:
        inv = self.sim.ledger.get(request.payment_hash)
        if inv is None:
            # Only "unable to locate invoice" becomes NOT_FOUND here; a bbolt
            # node that never made an invoice answers UNKNOWN (unlike LookupInvoice).
            exc = self.sim.not_found()
            code = grpc.StatusCode.NOT_FOUND if self.sim.ledger.invoices else exc.code
            context.abort(code, str(exc))
        return inv


class _Gate(grpc.ServerInterceptor):
    """Macaroon check and injected faults, in front of every method."""

    def __init__(self, sim: LndSim) -> None:
        self.sim = sim

    def intercept_service(self, continuation: Any, details: Any) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        faults = self.sim.faults
        if time.monotonic() < faults.unavailable_until:
            return _refusal(handler, grpc.StatusCode.UNAVAILABLE, "lnd-sim: node unavailable")
        metadata = [v for k, v in details.invocation_metadata if k == "macaroon"]
        lnd_style = faults.error_style == "lnd"
        if len(metadata) != 1:
            code = grpc.StatusCode.UNKNOWN if lnd_style else grpc.StatusCode.UNAUTHENTICATED
            return _refusal(handler, code, f"expected 1 macaroon, got {len(metadata)}")
        rejected = grpc.StatusCode.UNKNOWN if lnd_style else grpc.StatusCode.UNAUTHENTICATED
        mac_hex = str(metadata[0]).lower()
        perms = self.sim.macaroons.get(mac_hex)
        if perms is None:
            return _refusal(handler, rejected, _unverifiable(mac_hex))
        denied = grpc.StatusCode.UNKNOWN if lnd_style else grpc.StatusCode.PERMISSION_DENIED
        caveats = (read_macaroon(bytes.fromhex(mac_hex)) or (b"", ()))[1]
        if caveats:
            # Checked before the permission, as bakery does: a macaroon whose
            # caveat fails is refused for that, whatever it grants.
            allowed = permits(perms, details.method)
            return _caveats_checked(handler, caveats, rejected, None if allowed else denied)
        if not permits(perms, details.method):
            return _refusal(handler, denied, "permission denied")
        if faults.delay:
            self.sim.pause(faults.delay)
        if faults.stalls(details.method) and handler.unary_unary is not None:
            return _stalling(handler, faults, details.method)
        return handler


def _unverifiable(mac_hex: str) -> str:
    """lnd's refusal of a macaroon it did not bake with a key it has: one
    whose root key it lacks (macaroons/store.go, wrapped by macaroon-bakery's
    checker and oven), else one whose signature does not check (another
    node's macaroon, or bytes that are none)."""
    try:
        read = read_macaroon(bytes.fromhex(mac_hex))
    except ValueError:
        read = None
    if read is not None and read[0] != ROOT_KEY_ID:
        return (
            "cannot retrieve macaroon: cannot get macaroon: "
            f"root key with id {read[0].decode(errors='replace')} doesn't exist"
        )
    return "verification failed: signature mismatch after caveat verification"


def _caveats_checked(
    handler: Any,
    caveats: tuple[str, ...],
    code: grpc.StatusCode,
    denied: grpc.StatusCode | None,
) -> Any:
    """`handler`, refusing first when a caveat does not hold for this call
    (checked with the call's context, which alone tells the peer's address),
    then with "permission denied" when `denied` is given."""

    def check(context: grpc.ServicerContext) -> None:
        for caveat in caveats:
            why = _caveat_refusal(caveat, context.peer())
            if why is not None:
                context.abort(code, why)
        if denied is not None:
            context.abort(denied, "permission denied")

    if handler.response_streaming:
        stream = handler.unary_stream

        def streamed(request: Any, context: grpc.ServicerContext) -> Any:
            check(context)
            yield from stream(request, context)

        return grpc.unary_stream_rpc_method_handler(
            streamed, handler.request_deserializer, handler.response_serializer
        )
    unary = handler.unary_unary

    def answered(request: Any, context: grpc.ServicerContext) -> Any:
        check(context)
        return unary(request, context)

    return grpc.unary_unary_rpc_method_handler(
        answered, handler.request_deserializer, handler.response_serializer
    )


def _stalling(handler: Any, faults: Faults, method_path: str) -> Any:
    """`handler`, waiting first while `method_path` is stalled: on the call's
    own worker thread (an interceptor runs on the thread that takes every
    call in, so waiting there would hold all of them)."""
    answer = handler.unary_unary

    def stalled(request: Any, context: grpc.ServicerContext) -> Any:
        faults.wait_if_stalled(method_path)
        return answer(request, context)

    return grpc.unary_unary_rpc_method_handler(
        stalled, handler.request_deserializer, handler.response_serializer
    )


def _refusal(handler: Any, code: grpc.StatusCode, message: str) -> Any:
    def refuse(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, message)

    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(
            refuse, handler.request_deserializer, handler.response_serializer
        )
    return grpc.unary_unary_rpc_method_handler(
        refuse, handler.request_deserializer, handler.response_serializer
    )


# ---------------------------------------------------------------------------
# The simulator


def _parts(
    amount_msat: int, records: Sequence[Mapping[int, bytes]]
) -> list[tuple[int, Mapping[int, bytes]]]:
    """A payment of `amount_msat` in one part per entry of `records` (each
    part's custom records); the first part takes what does not divide evenly."""
    n = len(records)
    first = amount_msat // n + amount_msat % n
    return [(first if i == 0 else amount_msat // n, r) for i, r in enumerate(records)]


def _now() -> int:
    return int(time.time())


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _page(
    items: Sequence[T], offset: int, backwards: bool, wanted: Callable[[T], bool], limit: int
) -> list[T]:
    """lnd's index paging, oldest first: the first `limit` wanted items after `offset`
    (exclusive), or backwards the last `limit` before it (offset 0: from the newest)."""
    if not backwards:
        return list(itertools.islice(filter(wanted, items[offset:]), limit))
    end = offset - 1 if offset else len(items)
    found = list(itertools.islice(filter(wanted, reversed(items[: max(end, 0)])), limit))
    found.reverse()
    return found


def _hash_bytes(payment_hash: str | bytes) -> bytes:
    return payment_hash if isinstance(payment_hash, bytes) else bytes.fromhex(payment_hash)


class LndSim:
    """A simulated lnd: start(), stop(), restart() and test-control methods.

    Attributes a client needs: `target` ("127.0.0.1:PORT"), `cert_path`,
    `admin_macaroon_path`, `invoice_macaroon_path`, `readonly_macaroon_path`.
    """

    def __init__(
        self,
        data_dir: str | Path,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        network: str = "regtest",
        alias: str = "lnd-sim",
        replay_order: str = "settle",
    ) -> None:
        if network not in NETWORKS:
            raise ValueError(f"network must be one of {', '.join(NETWORKS)}")
        if replay_order not in REPLAY_ORDERS:
            raise ValueError(f"replay_order must be one of {', '.join(REPLAY_ORDERS)}")
        self.replay_order = replay_order
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.host, self.port = host, port
        self.network, self.alias = network, alias
        self.block_height = 800_000
        self.faults = Faults()
        self.cert_pem, self._key_pem = _ensure_tls(self.data_dir)
        self.macaroons = _ensure_macaroons(self.data_dir)
        self.ledger = Ledger(self.data_dir / "sim.sqlite")
        self.macaroons.update(self.ledger.baked())
        self._node_key = self.ledger.meta("node_key", lambda: secrets.token_bytes(32))
        height = self.ledger.meta("block_height", lambda: str(self.block_height).encode())
        self.block_height = int(height)
        from coincurve import PrivateKey

        self.pubkey = PrivateKey(self._node_key).public_key.format().hex()
        self._server: grpc.Server | None = None
        self._stopping = threading.Event()
        self._htlc_ids = itertools.count(1)
        self.invoices_listed = 0  # invoices ListInvoices has returned, to test sweep cost

    # -- paths --

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def cert_path(self) -> Path:
        return self.data_dir / "tls.cert"

    @property
    def admin_macaroon_path(self) -> Path:
        return self.data_dir / "admin.macaroon"

    @property
    def invoice_macaroon_path(self) -> Path:
        return self.data_dir / "invoice.macaroon"

    @property
    def readonly_macaroon_path(self) -> Path:
        return self.data_dir / "readonly.macaroon"

    def bake(
        self, permissions: Iterable[str], name: str = "baked.macaroon", caveats: Sequence[str] = ()
    ) -> Path:
        """`lncli bakemacaroon --save_to=<data dir>/NAME PERMISSION...`: a
        macaroon this node accepts, granting exactly `permissions` (entity:action
        or `uri:/pkg.Service/Method`), kept across restarts. Returns its path.
        `caveats` (`time_before`, `ip_lock`: what --timeout and --ip_address
        add) are checked on each call, as lnd checks them."""
        perms = frozenset(permissions)
        check_bakeable(perms)
        raw = mint_macaroon(perms, tuple(caveats))
        path = self.data_dir / name
        path.write_bytes(raw)
        path.chmod(0o600)
        with self.ledger.lock:
            self.ledger.db.execute(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                (f"macaroon:{raw.hex()}", " ".join(sorted(perms)).encode()),
            )
        self.macaroons[raw.hex()] = perms
        return path

    def forget(self, macaroon: Path) -> frozenset[str]:
        """Refuse the macaroon at `macaroon` from now on (as lnd refuses one
        baked before its macaroon database was reset); `remember` undoes it.
        Returns what it granted."""
        return self.macaroons.pop(macaroon.read_bytes().hex())

    def remember(self, macaroon: Path, permissions: frozenset[str]) -> None:
        self.macaroons[macaroon.read_bytes().hex()] = permissions

    # -- lifecycle --

    def start(self) -> LndSim:
        """Listen (on the same port as before after a stop). Returns self."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="lnd-sim"),
            interceptors=[_Gate(self)],
            options=[
                ("grpc.so_reuseport", 0),
                ("grpc.max_send_message_length", 200 * 1024 * 1024),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 5000),
                ("grpc.http2.max_ping_strikes", 0),
            ],
        )
        lightning_pb2_grpc.add_LightningServicer_to_server(_Lightning(self), server)
        invoices_pb2_grpc.add_InvoicesServicer_to_server(_Invoices(self), server)
        creds = grpc.ssl_server_credentials([(self._key_pem, self.cert_pem)])
        bound = server.add_secure_port(f"{self.host}:{self.port}", creds)
        if not bound:
            raise OSError(f"lnd-sim: cannot listen on {self.host}:{self.port}")
        self.port = bound
        server.start()
        self._server = server
        threading.Thread(
            target=self._expire_loop, args=(server,), daemon=True, name="lnd-sim-expiry"
        ).start()
        return self

    def _expire_loop(self, server: grpc.Server) -> None:
        """lnd's invoice expiry watcher: an OPEN invoice (hold or not) is
        canceled when its expiry passes; SubscribeSingleInvoice clients see
        CANCELED, SubscribeInvoices clients nothing."""
        while not self._stopping.wait(0.1) and self._server is server:
            now = _now()
            with self.ledger.lock:
                due = [
                    inv.r_hash
                    for inv in map(self.ledger.invoices.__getitem__, sorted(self.ledger.open))
                    # lnd gives an invoice with no expiry (keysend's, a
                    # spontaneous AMP payment's) zpay32's default, an hour.
                    if inv.creation_date + (inv.expiry or 3600) <= now
                ]
                for r_hash in due:
                    self.cancel_invoice(r_hash)

    def stop(self) -> None:
        """Stop listening and end every open stream, as lnd shutting down does:
        its stream handlers return on its quit signal, so a client sees each
        stream end cleanly (status OK) before the connection goes. (A node
        that dies or a network that breaks is `drop_streams`.)"""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        self.drop_streams()
        server.stop(grace=2).wait(5)  # the grace lets those streams send their end

    def pause(self, seconds: float) -> None:
        """Wait `seconds` (the `delay` fault), or less if the node stops
        meanwhile: lnd shutting down ends the calls it was slow to answer, and
        a stopped simulator must not keep gRPC's handler threads (and a test's
        teardown) waiting out a delay nobody will read."""
        self._stopping.wait(seconds)

    def restart(self, down_for: float = 0.0) -> None:
        """Stop, optionally stay down a while, and listen again on the same port."""
        self.stop()
        if down_for:
            time.sleep(down_for)
        self.start()

    def close(self) -> None:
        self.stop()
        self.ledger.close()

    def __enter__(self) -> LndSim:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def subscriber_count(self) -> int:
        with self.ledger.lock:
            return len(self.ledger.subscribers)

    def wait_for_subscribers(self, count: int = 1, timeout: float = 10.0) -> None:
        """Block until `count` SubscribeInvoices streams are registered.

        Live events are only sent to registered clients (as in lnd), so a test
        that wants a live event must wait for registration first.
        """
        deadline = time.monotonic() + timeout
        while self.subscriber_count() < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"lnd-sim: fewer than {count} subscribers after {timeout}s")
            time.sleep(0.01)

    def drop_streams(self) -> None:
        """Abort every open SubscribeInvoices and SubscribeSingleInvoice stream
        with UNAVAILABLE (while stopping: end them cleanly)."""
        with self.ledger.lock:
            subs = list(self.ledger.subscribers)
            singles = [q for qs in self.ledger.singles.values() for q in qs]
        for sub in subs:
            sub.queue.put(None)
        for single in singles:
            single.put(None)

    # -- RPC behaviour --

    def get_info(self) -> lightning_pb2.GetInfoResponse:
        chain = LND_CHAIN_NAME.get(self.network, self.network)
        return lightning_pb2.GetInfoResponse(
            version="0.21.2-beta commit=lnd-sim",
            identity_pubkey=self.pubkey,
            alias=self.alias,
            block_height=self.block_height,
            synced_to_chain=True,
            synced_to_graph=True,
            testnet=self.network in ("testnet", "testnet4"),
            chains=[lightning_pb2.Chain(chain="bitcoin", network=chain)],
        )

    def add_invoice(self, req: Invoice) -> Invoice:
        """AddInvoice's validation and minting; returns the stored invoice."""
        amount = _checked_amount(req)
        if req.r_preimage and len(req.r_preimage) != 32:
            raise SimError(grpc.StatusCode.UNKNOWN, "payment preimage must be exactly 32 bytes")
        if req.is_amp:
            # Each AMP payment set brings its own preimage, so lnd keeps none
            # for the invoice (r_preimage stays empty), as for a hold invoice.
            return self._new_invoice(
                amount_msat=amount,
                memo=req.memo,
                expiry=req.expiry or DEFAULT_EXPIRY,
                cltv=req.cltv_expiry or DEFAULT_CLTV,
                hold_hash=secrets.token_bytes(32),
                amp=True,
            )
        preimage = req.r_preimage or secrets.token_bytes(32)
        return self._new_invoice(
            amount_msat=amount,
            memo=req.memo,
            description_hash=req.description_hash,
            expiry=req.expiry or DEFAULT_EXPIRY,
            cltv=req.cltv_expiry or DEFAULT_CLTV,
            private=req.private,
            preimage=preimage,
        )

    def add_hold_invoice(self, req: Any) -> Invoice:
        """AddHoldInvoice: an invoice for a payment hash; the node has no preimage."""
        if len(req.hash) != 32:
            raise SimError(
                grpc.StatusCode.UNKNOWN, f"invalid hash length of {len(req.hash)}, want 32"
            )
        amount = _checked_amount(req)
        return self._new_invoice(
            amount_msat=amount,
            memo=req.memo,
            description_hash=req.description_hash,
            expiry=req.expiry or DEFAULT_EXPIRY,
            cltv=req.cltv_expiry or DEFAULT_CLTV,
            private=req.private,
            hold_hash=req.hash,
        )

    def _new_invoice(
        self,
        *,
        amount_msat: int,
        memo: str = "",
        description_hash: bytes = b"",
        expiry: int = DEFAULT_EXPIRY,
        cltv: int = DEFAULT_CLTV,
        private: bool = False,
        preimage: bytes | None = None,
        persist: bool = True,
        hold_hash: bytes | None = None,
        amp: bool = False,
    ) -> Invoice:
        """`hold_hash`: a hold invoice, stored without a preimage (r_preimage
        stays empty until SettleInvoice gives it, as lnd lists it)."""
        if hold_hash is not None:
            preimage, r_hash = b"", hold_hash
        else:
            preimage = preimage or secrets.token_bytes(32)
            r_hash = _sha256(preimage)
        payment_addr = secrets.token_bytes(32)
        created = _now()
        payment_request = bolt11.encode(
            currency=CURRENCY_BY_NETWORK[self.network],
            amount_msat=amount_msat or None,
            timestamp=created,
            payment_hash=r_hash.hex(),
            payment_secret=payment_addr.hex(),
            private_key=self._node_key,
            description=None if description_hash else memo,
            description_hash=description_hash.hex() if description_hash else None,
            expiry=expiry,
            min_final_cltv_expiry_delta=cltv,
            features=INVOICE_FEATURES,
        )
        inv = Invoice(
            memo=memo,
            r_preimage=preimage,
            r_hash=r_hash,
            value=amount_msat // 1000,
            value_msat=amount_msat,
            creation_date=created,
            payment_request=payment_request,
            description_hash=description_hash,
            expiry=expiry,
            cltv_expiry=cltv,
            private=private,
            state=Invoice.OPEN,
            payment_addr=payment_addr,
            is_amp=amp,
        )
        for bit in INVOICE_FEATURES:
            inv.features[bit].is_known = True
            inv.features[bit].is_required = bit % 2 == 0
        with self.ledger.lock:
            return self.ledger.insert(inv, persist=persist)

    def list_invoices(self, req: Any) -> list[Invoice]:
        start, end = req.creation_date_start, req.creation_date_end
        if start and end and start >= end:
            raise SimError(grpc.StatusCode.UNKNOWN, "start date must be before end date")
        limit = req.num_max_invoices or PAGE_DEFAULT

        def wanted(inv: Invoice) -> bool:
            # An AMP invoice stays OPEN in lnd's store whatever its sets did, so
            # pending_only lists it even when it is shown SETTLED.
            pending = inv.state in (Invoice.OPEN, Invoice.ACCEPTED) or (
                inv.is_amp
                and inv.state == Invoice.SETTLED
                and inv.add_index not in self.ledger.amp_closed
            )
            if req.pending_only and not pending:
                return False
            if req.creation_date_start and inv.creation_date < req.creation_date_start:
                return False
            return not (req.creation_date_end and inv.creation_date > req.creation_date_end)

        with self.ledger.lock:
            out = _page(self.ledger.invoices, req.index_offset, req.reversed, wanted, limit)
            self.invoices_listed += len(out)
            return out

    def list_payments(self, req: Any) -> lightning_pb2.ListPaymentsResponse:
        limit = req.max_payments or PAGE_DEFAULT

        def wanted(pay: Payment) -> bool:
            return req.include_incomplete or pay.status == Payment.SUCCEEDED

        with self.ledger.lock:
            pays = self.ledger.payments
            found = _page(pays, req.index_offset, req.reversed, wanted, limit)
            resp = lightning_pb2.ListPaymentsResponse(payments=found)
            if found:
                resp.first_index_offset = found[0].payment_index
                resp.last_index_offset = found[-1].payment_index
            if req.count_total_payments:
                resp.total_num_payments = len(pays)
        if req.omit_hops:
            for pay in resp.payments:
                for htlc in pay.htlcs:
                    htlc.route.ClearField("hops")
        return resp

    def subscribe(
        self, add_index: int, settle_index: int, context: grpc.ServicerContext
    ) -> Iterator[Invoice]:
        """SubscribeInvoices with lnd's semantics (docs/protocols.md).

        The client is registered for live events before the backlog is read,
        and backlog delivery does not advance its live filter, so an event that
        races the backlog is sent twice, as lnd does. The settle backlog comes
        in `replay_order`.
        """
        sub = _Subscriber(add_index, settle_index)
        with self.ledger.lock:
            self.ledger.subscribers.add(sub)
        drop_at = self.faults.take_drop()
        sent = 0

        def emit(inv: Invoice) -> Iterator[Invoice]:
            nonlocal sent
            if drop_at is not None and sent >= drop_at:
                context.abort(grpc.StatusCode.UNAVAILABLE, "lnd-sim: stream dropped")
            sent += 1
            yield inv
            every = self.faults.duplicate_every
            if every and sent % every == 0:
                yield inv

        try:
            if add_index:
                for inv in self.ledger.added_after(add_index):
                    if inv.state in (Invoice.OPEN, Invoice.SETTLED):
                        yield from emit(inv)
            if settle_index:
                backlog = (
                    self.ledger.settled_after_by_add
                    if self.replay_order == "add"
                    else self.ledger.settled_after
                )
                for inv in backlog(settle_index):
                    yield from emit(inv)
            while True:
                try:
                    item = sub.queue.get(timeout=1.0)
                except queue.Empty:
                    if not context.is_active() or self._stopping.is_set():
                        return
                    continue
                if item is None:
                    if self._stopping.is_set():
                        return  # lnd shutting down: `case <-r.quit: return nil`
                    context.abort(grpc.StatusCode.UNAVAILABLE, "lnd-sim: stream dropped")
                yield from emit(item)
        finally:
            with self.ledger.lock:
                self.ledger.subscribers.discard(sub)

    # -- test control: incoming --

    def create_invoice(
        self,
        amount_msat: int = 0,
        *,
        memo: str = "",
        description_hash: bytes | str = b"",
        expiry: int = DEFAULT_EXPIRY,
        private: bool = False,
        preimage: bytes | None = None,
    ) -> Invoice:
        """An invoice made on the node directly ("by another app", like lncli addinvoice)."""
        if isinstance(description_hash, str):
            description_hash = bytes.fromhex(description_hash)
        return self._new_invoice(
            amount_msat=amount_msat,
            memo=memo,
            description_hash=description_hash,
            expiry=expiry,
            private=private,
            preimage=preimage,
        )

    def pay_invoice(
        self,
        invoice: str | bytes,
        *,
        amount_msat: int | None = None,
        parts: int = 1,
        htlc_records: Sequence[Mapping[int, bytes]] | None = None,
    ) -> Invoice:
        """Settle an OPEN invoice as if a payer paid it.

        `invoice` is a payment hash (hex or bytes) or a BOLT11 string this node
        minted. `htlc_records` gives the custom records of each HTLC (and so
        the number of HTLCs); otherwise the amount is split into `parts`.
        """
        with self.ledger.lock:
            inv = self._find(invoice)
            if inv.state != Invoice.OPEN:
                raise SimError(grpc.StatusCode.UNKNOWN, "invoice is not open")
            amount = amount_msat if amount_msat is not None else inv.value_msat
            if amount <= 0 or amount < inv.value_msat:
                raise SimError(grpc.StatusCode.UNKNOWN, "amount too low for invoice")
            records = list(htlc_records) if htlc_records else [{} for _ in range(parts)]
            if not inv.r_preimage:
                return self._accept(inv, amount, records)
            return self._settle(inv, amount, records)

    def pay_partially(self, invoice: str | bytes, amount_msat: int) -> Invoice:
        """A multi-part payment whose other parts never came: lnd holds the
        part on the OPEN invoice, then fails it back at its MPP timeout (the
        HTLC becomes CANCELED). The invoice stays OPEN, amt_paid 0 (lnd counts
        no HTLC of an OPEN invoice), until paid in full or expired."""
        with self.ledger.lock:
            inv = self._find(invoice)
            if inv.state != Invoice.OPEN:
                raise SimError(grpc.StatusCode.UNKNOWN, "invoice is not open")
            new = Invoice()
            new.CopyFrom(inv)
            self._add_htlc(
                new,
                amount_msat,
                lightning_pb2.CANCELED,
                now=_now(),
                expiry_height=self.block_height + (inv.cltv_expiry or DEFAULT_CLTV),
                mpp_total_msat=inv.value_msat,
            )
            return self.ledger.replace(new)

    def keysend(
        self,
        amount_msat: int,
        custom_records: Mapping[int, bytes] | None = None,
        *,
        htlc_records: Sequence[Mapping[int, bytes]] | None = None,
        preimage: bytes | None = None,
    ) -> Invoice:
        """A spontaneous keysend: lnd inserts an OPEN invoice, then settles it.

        The 5482373484 preimage record is added to every HTLC's records. Real
        lnd refuses multi-part keysend; `htlc_records` with several entries
        exists to exercise the merge of records across HTLCs.
        """
        preimage = preimage or secrets.token_bytes(32)
        parts = list(htlc_records) if htlc_records else [dict(custom_records or {})]
        parts = [{**r, KEYSEND_PREIMAGE_RECORD: preimage} for r in parts]
        # lnd's placeholder invoice (invoiceregistry.go, processKeySend) sets
        # no expiry and the blank payment address: RPC readers see expiry 0
        # and payment_addr as 32 zero bytes, not an empty field.
        inv = Invoice(
            r_preimage=preimage,
            r_hash=_sha256(preimage),
            value=amount_msat // 1000,
            value_msat=amount_msat,
            creation_date=_now(),
            expiry=0,
            cltv_expiry=DEFAULT_CLTV,
            state=Invoice.OPEN,
            is_keysend=True,
            payment_addr=bytes(32),
        )
        with self.ledger.lock:
            self.ledger.insert(inv)
            return self._settle(inv, amount_msat, parts)

    def cancel_invoice(self, payment_hash: str | bytes) -> Invoice:
        """Cancel an OPEN or ACCEPTED invoice, failing held HTLCs back; canceling
        a canceled one succeeds. lnd sends no SubscribeInvoices event for this,
        only SubscribeSingleInvoice ones."""
        with self.ledger.lock:
            inv = self._find(payment_hash)
            if inv.is_amp and inv.state == Invoice.SETTLED:
                # Stored CANCELED by lnd, but shown SETTLED for its settled sets
                # (CreateRPCInvoice): no set settles on it any more.
                self.ledger.open.discard(inv.add_index - 1)
                if inv.add_index not in self.ledger.amp_closed:
                    self.ledger.amp_closed.add(inv.add_index)
                    self.ledger.db.execute(
                        "INSERT OR REPLACE INTO meta VALUES (?, x'')",
                        (f"amp_closed:{inv.add_index}",),
                    )
                return inv
            if inv.state == Invoice.SETTLED:
                raise SimError(grpc.StatusCode.UNKNOWN, "invoice already settled")
            if inv.state == Invoice.CANCELED:
                return inv
            new = Invoice()
            new.CopyFrom(inv)
            new.state = Invoice.CANCELED
            for htlc in new.htlcs:
                if htlc.state == lightning_pb2.ACCEPTED:
                    htlc.state = lightning_pb2.CANCELED
                    htlc.resolve_time = _now()
            # lnd leaves amt_paid as it was (update_invoice.go, cancelInvoice).
            return self.ledger.replace(new)

    def settle_hold_invoice(self, preimage: bytes) -> Invoice:
        """SettleInvoice: only an ACCEPTED invoice settles; a settled one succeeds
        again; an open one is "invoice still open", as lnd answers."""
        if len(preimage) != 32:
            raise SimError(
                grpc.StatusCode.UNKNOWN, f"invalid preimage length of {len(preimage)}/32"
            )
        with self.ledger.lock:
            inv = self.ledger.get(_sha256(preimage))
            if inv is None:
                raise self.not_found()
            if inv.state == Invoice.SETTLED:
                return inv
            if inv.state == Invoice.OPEN:
                raise SimError(grpc.StatusCode.UNKNOWN, "invoice still open")
            if inv.state == Invoice.CANCELED:
                raise SimError(grpc.StatusCode.UNKNOWN, "invoice already canceled")
            new = Invoice()
            new.CopyFrom(inv)
            now = _now()
            for htlc in new.htlcs:
                if htlc.state == lightning_pb2.ACCEPTED:
                    htlc.state = lightning_pb2.SETTLED
                    htlc.resolve_time = now
            new.r_preimage = preimage
            new.state = Invoice.SETTLED
            new.settled = True
            new.settle_date = now
            return self.ledger.replace(new)

    def mine(self, blocks: int = 1) -> int:
        """Move the chain on; like lnd, cancel ACCEPTED hold invoices whose
        earliest HTLC expires within HOLD_EXPIRY_DELTA blocks."""
        with self.ledger.lock:
            self.block_height += blocks
            self.ledger.db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('block_height', ?)",
                (str(self.block_height).encode(),),
            )
            due = [
                inv
                for inv in self.ledger.invoices
                if inv.state == Invoice.ACCEPTED
                and min(h.expiry_height for h in inv.htlcs if h.state == lightning_pb2.ACCEPTED)
                - self.block_height
                <= HOLD_EXPIRY_DELTA
            ]
            for inv in due:
                self.cancel_invoice(inv.r_hash)
            return self.block_height

    def subscribe_single(self, r_hash: bytes, context: grpc.ServicerContext) -> Iterator[Invoice]:
        """SubscribeSingleInvoice: the invoice's current state (nothing for an
        unknown hash), then every change of it: ACCEPTED and CANCELED included.
        Ends (status OK) after a SETTLED or CANCELED one, as lnd does."""
        mine: queue.SimpleQueue[Invoice | None] = queue.SimpleQueue()
        with self.ledger.lock:
            self.ledger.singles.setdefault(r_hash, set()).add(mine)
            current = self.ledger.get(r_hash)
        try:
            if current is not None:
                yield current
                if _final(current):
                    return
            while True:
                try:
                    item = mine.get(timeout=1.0)
                except queue.Empty:
                    if not context.is_active() or self._stopping.is_set():
                        return
                    continue
                if item is None:
                    if self._stopping.is_set():
                        return  # lnd shutting down ends the stream with status OK
                    context.abort(grpc.StatusCode.UNAVAILABLE, "lnd-sim: stream dropped")
                yield item
                if _final(item):
                    return  # lnd returns after a final state (status OK)
        finally:
            with self.ledger.lock:
                self.ledger.singles.get(r_hash, set()).discard(mine)

    def bulk_settle(
        self, count: int, amount_msat: int = 1000, memo: str = "bulk", *, shuffle: bool = False
    ) -> int:
        """Create and settle `count` minted invoices in one transaction (for benchmarks).

        Live subscribers get every OPEN and SETTLED event. With `shuffle` all
        are created first and then paid in random order, so add_index order
        and settle_index order disagree. Returns the last settle_index.
        """
        with self.ledger.lock:
            self.ledger.db.execute("BEGIN")
            try:
                made = [
                    self._new_invoice(amount_msat=amount_msat, memo=memo, persist=False)
                    for _ in range(count)
                ]
                if shuffle:
                    random.shuffle(made)
                touched = [self._settle(inv, amount_msat, [{}], persist=False) for inv in made]
                self.ledger._store(touched)
                self.ledger.db.execute("COMMIT")
            except BaseException:
                self.ledger.db.execute("ROLLBACK")
                raise
            return len(self.ledger.settled)

    def settle_amp_set(
        self,
        payment_hash: bytes | None = None,
        amount_msat: int = 0,
        *,
        htlc_records: Sequence[Mapping[int, bytes]] | None = None,
        parts: int = 1,
    ) -> int:
        """An AMP payment set settling on the AMP invoice `payment_hash` (one
        made with `is_amp`, or by `amp_payment`); returns its settle_index.

        As lnd does (invoices/update_invoice.go, channeldb/invoices.go): the
        set takes the next settle_index, kept in the invoice's per-set state
        (`amp_invoice_state[set_id]`: settle_index, settle_time, amt_paid_msat),
        never as the invoice's settle_index; its HTLCs carry `amp.set_id` and
        their own child hash and preimage, the invoice none. The invoice stays
        open in the store, shown SETTLED once any set has (CreateRPCInvoice),
        `amt_paid_msat` the sum of its sets. ListInvoices and LookupInvoice
        show every set and HTLC; SubscribeInvoices sends only this set's,
        live and in the settle backlog (`_one_set`).

        `htlc_records` gives each HTLC's custom records (and so the number of
        HTLCs); otherwise the amount is split into `parts`. Without
        `payment_hash`, the number is taken by no invoice at all (as when lnd
        deleted a canceled AMP invoice whose sets had settled)."""
        with self.ledger.lock:
            index = self.ledger.burn_settle_index()
            if payment_hash is None:
                return index
            old = self._find(payment_hash)
            if not old.is_amp:
                raise SimError(grpc.StatusCode.UNKNOWN, "not an AMP invoice")
            if old.state == Invoice.CANCELED or old.add_index in self.ledger.amp_closed:
                raise SimError(grpc.StatusCode.UNKNOWN, "invoice already canceled")
            inv = Invoice()
            inv.CopyFrom(old)
            now = _now()
            set_id = secrets.token_bytes(32)
            root_share = secrets.token_bytes(32)
            records = list(htlc_records) if htlc_records else [{} for _ in range(parts)]
            for child, (part, recs) in enumerate(_parts(amount_msat, records)):
                self._add_htlc(
                    inv,
                    part,
                    lightning_pb2.SETTLED,
                    now=now,
                    expiry_height=self.block_height + DEFAULT_CLTV,
                    mpp_total_msat=amount_msat,
                    route=child + 1,
                    records=recs,
                )
                preimage = secrets.token_bytes(32)
                inv.htlcs[-1].amp.CopyFrom(
                    lightning_pb2.AMP(
                        root_share=root_share,
                        set_id=set_id,
                        child_index=child,
                        hash=_sha256(preimage),
                        preimage=preimage,
                    )
                )
            inv.state = Invoice.SETTLED
            inv.settled = True
            inv.amt_paid_msat += amount_msat
            inv.amt_paid_sat = inv.amt_paid_msat // 1000
            inv.amt_paid = inv.amt_paid_msat
            # lnd dates the set, not the invoice (settle_date stays 0).
            set_state = inv.amp_invoice_state[set_id.hex()]
            set_state.state = lightning_pb2.SETTLED
            set_state.settle_index = index
            set_state.settle_time = now
            set_state.amt_paid_msat = amount_msat
            self.ledger.settled[index - 1] = inv.add_index  # replayed in the settle backlog
            self.ledger.invoices[inv.add_index - 1] = inv  # not replace(): no settle_index
            self.ledger._store([inv])
            self.ledger._notify(_one_set(inv, index))
            return index

    def amp_payment(
        self,
        amount_msat: int,
        custom_records: Mapping[int, bytes] | None = None,
        *,
        htlc_records: Sequence[Mapping[int, bytes]] | None = None,
        parts: int = 1,
    ) -> Invoice:
        """A spontaneous AMP payment (`lncli sendpayment --amp`, a podcast app's
        boost to a value block with method "amp") to a node with `accept-amp`:
        lnd inserts an AMP invoice for it (invoiceregistry.go processAMP: no
        payment request, the sender's payment address, AMP required, no
        preimage), then settles the set. Returns the invoice as SubscribeInvoices
        sent the settlement (that one set); its set id is the one key of
        `amp_invoice_state`."""
        parts_records = list(htlc_records) if htlc_records else [dict(custom_records or {})]
        if not htlc_records and parts > 1:
            parts_records = [dict(custom_records or {})] + [{} for _ in range(parts - 1)]
        inv = Invoice(
            r_hash=secrets.token_bytes(32),
            value=amount_msat // 1000,
            value_msat=amount_msat,
            creation_date=_now(),
            expiry=0,
            cltv_expiry=DEFAULT_CLTV,
            state=Invoice.OPEN,
            is_amp=True,
            payment_addr=secrets.token_bytes(32),
        )
        for bit in AMP_FEATURES:
            inv.features[bit].is_known = True
            inv.features[bit].is_required = bit % 2 == 0
        with self.ledger.lock:
            self.ledger.insert(inv)
            index = self.settle_amp_set(inv.r_hash, amount_msat, htlc_records=parts_records)
            return _one_set(self.ledger.invoices[inv.add_index - 1], index)

    def _find(self, ref: str | bytes) -> Invoice:
        if isinstance(ref, str) and ref.lower().startswith("ln"):
            ref = bolt11.decode(ref).payment_hash
        inv = self.ledger.get(_hash_bytes(ref))
        if inv is None:
            raise self.not_found()
        return inv

    def not_found(self) -> SimError:
        """lnd's invoice registry errors for an unknown hash, which SettleInvoice
        and CancelInvoice pass on as status UNKNOWN: the bbolt store says "there
        are no existing invoices" until the first invoice is made."""
        with self.ledger.lock:
            empty = not self.ledger.invoices
        if empty:
            return SimError(grpc.StatusCode.UNKNOWN, "there are no existing invoices")
        return SimError(grpc.StatusCode.UNKNOWN, "unable to locate invoice")

    def _accept(
        self, inv: Invoice, amount_msat: int, records: Sequence[Mapping[int, bytes]]
    ) -> Invoice:
        """A hold invoice paid in full: its HTLCs are held ACCEPTED. Parts take
        different routes, so each expires at its own height (the first earliest)."""
        now = _now()
        new = Invoice()
        new.CopyFrom(inv)
        for i, (part, recs) in enumerate(_parts(amount_msat, records)):
            self._add_htlc(
                new,
                part,
                lightning_pb2.ACCEPTED,
                now=now,
                expiry_height=self.block_height + (inv.cltv_expiry or DEFAULT_CLTV) + i,
                mpp_total_msat=amount_msat if len(records) > 1 else 0,
                route=i + 1,
                resolved=False,
                records=recs,
            )
        new.state = Invoice.ACCEPTED
        new.amt_paid = amount_msat
        new.amt_paid_sat = amount_msat // 1000
        new.amt_paid_msat = amount_msat
        return self.ledger.replace(new)

    def _settle(
        self,
        inv: Invoice,
        amount_msat: int,
        records: Sequence[Mapping[int, bytes]],
        *,
        persist: bool = True,
    ) -> Invoice:
        now = _now()
        new = Invoice()
        new.CopyFrom(inv)
        for part, recs in _parts(amount_msat, records):
            self._add_htlc(
                new,
                part,
                lightning_pb2.SETTLED,
                now=now,
                expiry_height=self.block_height + DEFAULT_CLTV,
                mpp_total_msat=amount_msat if len(records) > 1 else 0,
                records=recs,
            )
        new.state = Invoice.SETTLED
        new.settled = True
        new.settle_date = now
        new.amt_paid = amount_msat
        new.amt_paid_sat = amount_msat // 1000
        new.amt_paid_msat = amount_msat
        return self.ledger.replace(new, persist=persist)

    def _add_htlc(
        self,
        new: Invoice,
        amount_msat: int,
        state: int,
        *,
        now: int,
        expiry_height: int,
        mpp_total_msat: int,
        route: int = 1,
        resolved: bool = True,
        records: Mapping[int, bytes] | None = None,
    ) -> None:
        """One HTLC on `new` as lnd lists it: arrived now at this height over
        channel `route` (its short channel id), resolved now unless still held."""
        htlc = new.htlcs.add(
            chan_id=(self.block_height << 40) | (route << 16),
            htlc_index=next(self._htlc_ids),
            amt_msat=amount_msat,
            accept_height=self.block_height,
            accept_time=now,
            resolve_time=now if resolved else 0,
            expiry_height=expiry_height,
            state=state,
            mpp_total_amt_msat=mpp_total_msat,
        )
        for key, value in (records or {}).items():
            htlc.custom_records[int(key)] = bytes(value)

    # -- test control: outgoing --

    def make_payment(
        self,
        amount_msat: int,
        *,
        fee_msat: int = 0,
        destination: str | None = None,
        custom_records: Mapping[int, bytes] | None = None,
        payment_request: str = "",
        status: str = "SUCCEEDED",
        hops: int = 2,
        preimage: bytes | None = None,
    ) -> Payment:
        """Record an outgoing payment as lnd's router would.

        With no payment_request it is a keysend: the last hop carries
        `custom_records` plus the 5482373484 preimage record, which is where
        lnd exposes the TLVs it sent.
        """
        preimage = preimage or secrets.token_bytes(32)
        destination = destination or "02" + secrets.token_hex(32)
        status_value = cast("Payment.PaymentStatus", Payment.PaymentStatus.Value(status))
        now_ns = time.time_ns()
        records = dict(custom_records or {})
        if not payment_request:
            records[KEYSEND_PREIMAGE_RECORD] = preimage
        route = lightning_pb2.Route(
            total_time_lock=self.block_height + 200,
            total_fees=fee_msat // 1000,
            total_amt=(amount_msat + fee_msat) // 1000,
            total_fees_msat=fee_msat,
            total_amt_msat=amount_msat + fee_msat,
        )
        for i in range(hops):
            last = i == hops - 1
            hop = route.hops.add(
                chan_id=(self.block_height << 40) | (i + 2) << 16,
                expiry=self.block_height + 200 - 40 * i,
                amt_to_forward_msat=amount_msat,
                fee_msat=0 if last else fee_msat // max(hops - 1, 1),
                pub_key=destination if last else "03" + secrets.token_hex(32),
                tlv_payload=True,
            )
            if last:
                for key, value in records.items():
                    hop.custom_records[int(key)] = bytes(value)
        succeeded = status_value == Payment.SUCCEEDED
        pay = Payment(
            payment_hash=_sha256(preimage).hex(),
            value=amount_msat // 1000,
            creation_date=now_ns // 10**9,
            fee=fee_msat // 1000,
            payment_preimage=preimage.hex() if succeeded else "00" * 32,
            value_sat=amount_msat // 1000,
            value_msat=amount_msat,
            payment_request=payment_request,
            status=status_value,
            fee_sat=fee_msat // 1000,
            fee_msat=fee_msat,
            creation_time_ns=now_ns,
        )
        if status_value != Payment.INITIATED:
            htlc_status = {
                Payment.SUCCEEDED: lightning_pb2.HTLCAttempt.SUCCEEDED,
                Payment.FAILED: lightning_pb2.HTLCAttempt.FAILED,
            }.get(status_value, lightning_pb2.HTLCAttempt.IN_FLIGHT)
            pay.htlcs.add(
                attempt_id=1,
                status=htlc_status,
                route=route,
                attempt_time_ns=now_ns,
                resolve_time_ns=now_ns if htlc_status != lightning_pb2.HTLCAttempt.IN_FLIGHT else 0,
                preimage=preimage if succeeded else b"",
            )
        if status_value == Payment.FAILED:
            pay.failure_reason = lightning_pb2.FAILURE_REASON_NO_ROUTE
        with self.ledger.lock:
            return self.ledger.add_payment(pay)

    def resolve_payment(self, payment_index: int, *, succeeded: bool = True) -> Payment:
        """Finish an IN_FLIGHT payment (SUCCEEDED or FAILED)."""
        with self.ledger.lock:
            pay = Payment()
            pay.CopyFrom(self.ledger.payments[payment_index - 1])
            now_ns = time.time_ns()
            pay.status = Payment.SUCCEEDED if succeeded else Payment.FAILED
            for htlc in pay.htlcs:
                htlc.status = (
                    lightning_pb2.HTLCAttempt.SUCCEEDED
                    if succeeded
                    else lightning_pb2.HTLCAttempt.FAILED
                )
                htlc.resolve_time_ns = now_ns
                if not succeeded:
                    htlc.preimage = b""
            if not succeeded:
                pay.payment_preimage = "00" * 32
                pay.failure_reason = lightning_pb2.FAILURE_REASON_TIMEOUT
            return self.ledger.replace_payment(pay)

    # -- description for people --

    def describe(self) -> dict[str, str]:
        return {
            "host": self.target,
            "tls_cert": str(self.cert_path),
            "admin_macaroon": str(self.admin_macaroon_path),
            "invoice_macaroon": str(self.invoice_macaroon_path),
            "readonly_macaroon": str(self.readonly_macaroon_path),
            "network": self.network,
            "pubkey": self.pubkey,
        }


# ---------------------------------------------------------------------------
# HTTP control port for the CLI (JSON in, JSON out)


def _one_set(inv: Invoice, settle_index: int, *, sql: bool = False) -> Invoice:
    """An AMP invoice as SubscribeInvoices sends one payment set's settlement
    (the set whose number is `settle_index`), live and in the settle backlog:
    that set's state and HTLCs only (lnd fetches the invoice for that set id:
    channeldb/invoices.go UpdateInvoice and InvoicesSettledSince,
    invoices/sql_store.go fetchInvoiceData). The bbolt store leaves the
    invoice's settle_index and settle_date 0; the SQL store's backlog
    (`sql`) gives them the set's (its FetchSettledAMPSubInvoices row puts the
    set's settle_index and settled_at in the invoice's place). Any other
    invoice as is."""
    if not inv.is_amp:
        return inv
    one = Invoice()
    one.CopyFrom(inv)
    set_id = b""
    for key, state in inv.amp_invoice_state.items():
        if state.settle_index != settle_index:
            del one.amp_invoice_state[key]
        else:
            set_id = bytes.fromhex(key)
            if sql:
                one.settle_index = state.settle_index
                one.settle_date = state.settle_time
    del one.htlcs[:]
    one.htlcs.extend(h for h in inv.htlcs if h.amp.set_id == set_id)
    return one


def _final(inv: Invoice) -> bool:
    """lnd's ContractState.IsFinal, which judges the stored state: an AMP
    invoice stays OPEN there even when shown SETTLED, so its stream goes on."""
    return inv.state == Invoice.CANCELED or (inv.state == Invoice.SETTLED and not inv.is_amp)


def _invoice_json(inv: Invoice) -> dict[str, Any]:
    return {
        "payment_hash": inv.r_hash.hex(),
        "payment_request": inv.payment_request,
        "add_index": inv.add_index,
        "settle_index": inv.settle_index,
        "state": Invoice.InvoiceState.Name(inv.state),
        "amount_msat": inv.value_msat,
        "amt_paid_msat": inv.amt_paid_msat,
        "preimage": inv.r_preimage.hex(),
        "is_keysend": inv.is_keysend,
    }


def _records(raw: Mapping[str, str] | None) -> dict[int, bytes]:
    """JSON custom records: {"7629169": "<hex>"}."""
    return {int(k): bytes.fromhex(v) for k, v in (raw or {}).items()}


def _control(sim: LndSim, path: str, body: dict[str, Any]) -> Any:
    if path == "/info":
        return sim.describe()
    if path == "/invoice":
        inv = sim.create_invoice(
            int(body.get("amount_msat", 0)),
            memo=body.get("memo", ""),
            description_hash=body.get("description_hash", ""),
            expiry=int(body.get("expiry", DEFAULT_EXPIRY)),
        )
        return _invoice_json(inv)
    if path == "/pay":
        htlcs = [_records(r) for r in body.get("htlc_records", [])] or None
        inv = sim.pay_invoice(
            body.get("payment_request") or body["payment_hash"],
            amount_msat=body.get("amount_msat"),
            parts=int(body.get("parts", 1)),
            htlc_records=htlcs,
        )
        return _invoice_json(inv)
    if path == "/keysend":
        inv = sim.keysend(int(body["amount_msat"]), _records(body.get("custom_records")))
        return _invoice_json(inv)
    if path == "/amp":
        inv = sim.amp_payment(int(body["amount_msat"]), _records(body.get("custom_records")))
        return {**_invoice_json(inv), "set_id": next(iter(inv.amp_invoice_state))}
    if path == "/mine":
        return {"block_height": sim.mine(int(body.get("blocks", 1)))}
    if path == "/cancel":
        return _invoice_json(sim.cancel_invoice(body["payment_hash"]))
    if path == "/outgoing":
        pay = sim.make_payment(
            int(body["amount_msat"]),
            fee_msat=int(body.get("fee_msat", 0)),
            destination=body.get("destination"),
            custom_records=_records(body.get("custom_records")),
            payment_request=body.get("payment_request", ""),
            status=body.get("status", "SUCCEEDED"),
        )
        return {"payment_index": pay.payment_index, "payment_hash": pay.payment_hash}
    if path == "/bulk_settle":
        count = int(body["count"])
        amount = int(body.get("amount_msat", 1000))
        shuffle = bool(body.get("shuffle", False))
        return {"settle_index": sim.bulk_settle(count, amount, shuffle=shuffle)}
    if path == "/faults":
        if "unavailable_for" in body:
            sim.faults.unavailable_for(float(body.pop("unavailable_for")))
        for key, value in body.items():
            if not hasattr(sim.faults, key):
                raise KeyError(key)
            setattr(sim.faults, key, value)
        return {"faults": vars(sim.faults)}
    if path == "/bake":
        baked = sim.bake(body["permissions"], str(body.get("name", "baked.macaroon")))
        return {"macaroon": str(baked)}
    if path == "/drop_streams":
        sim.drop_streams()
        return {"ok": True}
    if path == "/restart":
        threading.Thread(target=sim.restart, args=(float(body.get("down_for", 0)),)).start()
        return {"ok": True}
    raise KeyError(path)


def serve_control(sim: LndSim, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """A tiny JSON-over-HTTP control port: POST /pay, /keysend, /amp, /faults, ... ."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
                result, status = _control(sim, self.path, body), 200
            except KeyError as exc:
                result, status = {"error": f"unknown or missing: {exc}"}, 404
            except (SimError, ValueError, TypeError) as exc:
                result, status = {"error": str(exc)}, 400
            data = json.dumps(result).encode() + b"\n"  # a shell prompt starts on its own line
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True, name="lnd-sim-control").start()
    return httpd


def parser() -> argparse.ArgumentParser:
    """The command line, apart from `main` so tests/test_docs.py can check the
    docs' command lines against it."""
    parser = argparse.ArgumentParser(
        prog="python -m lnplugin_sim.lnd_sim",
        description="Run the LND simulator: gRPC over TLS with admin/invoice macaroons.",
    )
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--port", type=int, default=10009, help="gRPC port (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--network", default="regtest", choices=NETWORKS)
    parser.add_argument(
        "--control-port", type=int, default=None, help="JSON control port (default: off)"
    )
    parser.add_argument(
        "--replay-order",
        default="settle",
        choices=REPLAY_ORDERS,
        help="settle backlog order: settle_index (bbolt store) or add_index (native SQL store)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    sim = LndSim(
        args.data_dir,
        port=args.port,
        host=args.host,
        network=args.network,
        replay_order=args.replay_order,
    ).start()
    info = sim.describe()
    if args.control_port is not None:
        httpd = serve_control(sim, args.control_port, args.host)
        info["control"] = f"http://{args.host}:{httpd.server_address[1]}"
    for key, value in info.items():
        print(f"{key}: {value}")
    print(
        f"try: lnplugin serve --node lnd --network {sim.network} --lnd-host {sim.target} "
        f"--lnd-cert {sim.cert_path} --lnd-macaroon {sim.admin_macaroon_path}"
    )
    sys.stdout.flush()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sim.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
