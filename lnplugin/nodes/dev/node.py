"""The embedded dev node: a Lightning node that is not connected to any network.

It behaves like a real node where lnplugin can see it: it keeps a persistent
secp256k1 key, mints real signed BOLT11 invoices, keeps each preimage, and
publishes settlements as a feed with a monotonically increasing settle index.
Its state lives in its own SQLite file (`devnode.sqlite`), apart from
lnplugin's store, exactly as a real node keeps its own database; so
`lnplugin dev pay` from another process works like a payment arriving from
the network, and the follower picks it up the same way it would from LND.

Hold invoices follow LND's semantics: minted for a payment hash without the
preimage, a payment leaves them ACCEPTED with a settle deadline (the block
height at which the simulated HTLC expires), and they end SETTLED by the
preimage or CANCELED. The chain is simulated too: a block height that only
`mine` moves, so a test can walk a held invoice up to its deadline.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import coincurve

from lnplugin import bolt11
from lnplugin.boostagram import KEYSEND_PREIMAGE, records_from_json, records_to_json
from lnplugin.datadir import ensure_dir, private_database, private_file
from lnplugin.nodes.base import (
    CURRENCY_BY_NETWORK,
    Feature,
    InvoiceNotFound,
    InvoiceNotOpen,
    InvoiceRequest,
    InvoiceUpdate,
    Node,
    NodeError,
    NodeInfo,
    NodeInvoice,
    NodeMisconfigured,
)
from lnplugin.store.db import Checkpointer, open_error

log = logging.getLogger(__name__)

KEY_FILE = "node.key"
DB_FILE = "devnode.sqlite"
POLL_SECONDS = 0.05  # how often the feed looks for payments made by other processes
START_HEIGHT = 100  # the simulated chain's height in a new dev node
# The CLTV delta the dev node's hold invoices ask for (LND's default): a held
# HTLC expires this many blocks after the payment arrives.
HTLC_CLTV_DELTA = 80


def _cltv_delta(payment_request: str) -> int:
    """The final CLTV delta a hold invoice asked for (its own, or the default):
    a held HTLC expires that many blocks after the payment arrives."""
    try:
        return bolt11.decode(payment_request).min_final_cltv_expiry_delta
    except bolt11.Bolt11Error:
        return HTLC_CLTV_DELTA


# What the hold feed asks every `POLL_SECONDS` (through an index: see __init__).
CHANGES_AFTER = "SELECT * FROM dev_invoices WHERE change_index > ? ORDER BY change_index"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS dev_invoices (
    payment_hash TEXT PRIMARY KEY,
    payment_request TEXT NOT NULL,
    preimage TEXT NOT NULL,
    payment_secret TEXT,
    amount_msat INTEGER,
    description TEXT,
    description_hash TEXT,
    created_at INTEGER NOT NULL,
    expiry INTEGER NOT NULL,
    state TEXT NOT NULL,
    amount_received_msat INTEGER NOT NULL DEFAULT 0,
    settled_at INTEGER,
    settle_index INTEGER UNIQUE,
    is_keysend INTEGER NOT NULL DEFAULT 0,
    custom_records TEXT
);
CREATE TABLE IF NOT EXISTS dev_chain (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    height INTEGER NOT NULL
);
"""
# Columns added after the first release, for dev node files made before them:
# `hold` (preimage '' until settled), the settle deadline of an ACCEPTED hold
# invoice, and `change_index`, the position of ACCEPTED/CANCELED changes,
# which the live feed passes on beside the settle index.
_ADDED_COLUMNS = {
    "hold": "INTEGER NOT NULL DEFAULT 0",
    "settle_deadline": "INTEGER",
    "change_index": "INTEGER",
}


def load_or_create_key(data_dir: Path) -> coincurve.PrivateKey:
    """The node identity, created once and kept with owner-only permissions."""
    path = data_dir / KEY_FILE
    if path.exists():
        try:
            private_file(path)  # a copy restored loose is tightened, as the store is
            return coincurve.PrivateKey(bytes.fromhex(path.read_text().strip()))
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise NodeMisconfigured(f"cannot read the dev node's key {path} ({reason})") from None
        except ValueError:  # not hex, or not a valid secp256k1 secret
            raise NodeMisconfigured(
                f"{path} is not a hex secp256k1 key: move it aside to make a new dev node "
                "(its invoices can then no longer be paid)"
            ) from None
    ensure_dir(data_dir)
    key = coincurve.PrivateKey()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key.secret.hex() + "\n")
    return key


class DevNode(Node):
    """Implements `DevPayments` (`pay`, `keysend`) and `HoldInvoices` besides `Node`."""

    kind = "dev"
    features = frozenset(
        {Feature.KEYSEND_RECORDS, Feature.DEV_PAYMENTS, Feature.FEED_HEAD, Feature.HOLD_INVOICES}
    )

    def __init__(self, data_dir: Path, network: str = "regtest") -> None:
        """Raises `StoreError` when its database cannot be opened (damaged, unwritable)."""
        self.data_dir = Path(data_dir)
        self.network = network
        self.currency = CURRENCY_BY_NETWORK[network]
        self._key = load_or_create_key(self.data_dir)
        self.pubkey = self._key.public_key.format(compressed=True).hex()
        self._path = str(self.data_dir / DB_FILE)
        self._local = threading.local()
        self._wake = threading.Condition()
        self._closed = threading.Event()
        self._write_lock = threading.Lock()
        self._checkpointer = Checkpointer(self._path)
        try:
            private_database(Path(self._path))
            self._conn.executescript(_SCHEMA)
            self._conn.execute(
                "INSERT OR IGNORE INTO dev_chain (id, height) VALUES (1, ?)", (START_HEIGHT,)
            )
            have = {r[1] for r in self._conn.execute("PRAGMA table_info(dev_invoices)")}
            for name, decl in _ADDED_COLUMNS.items():
                if name not in have:
                    self._conn.execute(f"ALTER TABLE dev_invoices ADD COLUMN {name} {decl}")
            # The hold feed asks for changes past its position every
            # `POLL_SECONDS`: without this, a scan of every invoice each time.
            self._conn.execute(
                "CREATE INDEX IF NOT EXISTS dev_invoices_change_index"
                " ON dev_invoices (change_index)"
            )
        except (OSError, sqlite3.Error) as exc:
            raise open_error(self._path, exc) from None

    @property
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode = WAL")
            # As lnplugin's store (see lnplugin/store/db.py): a commit survives a
            # process crash without an fsync each; a power cut may lose the last ones.
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA wal_autocheckpoint = 0")  # self._checkpointer does it
            conn.execute("PRAGMA busy_timeout = 10000")
            self._local.conn = conn
        return conn

    def _write(self, sql: str, params: tuple[object, ...]) -> sqlite3.Cursor:
        """One autocommitted write, queued on this node's lock first: API threads
        minting at once would otherwise meet in SQLite's busy handler, which
        sleeps in growing steps (the create tail was up to a second). The busy
        timeout still covers writers in other processes (`lnplugin dev pay`)."""
        with self._write_lock:
            cursor = self._conn.execute(sql, params)
        self._checkpointer.poke()
        return cursor

    # -- Node interface -------------------------------------------------------

    def get_info(self) -> NodeInfo:
        return NodeInfo(
            kind="dev",
            pubkey=self.pubkey,
            alias="lnplugin-dev",
            network=self.network,
            version="dev",
            connected_to_network=False,
            block_height=self.block_height(),
        )

    def create_invoice(self, request: InvoiceRequest) -> NodeInvoice:
        preimage = secrets.token_bytes(32)
        return self._mint(request, hashlib.sha256(preimage).hexdigest(), preimage.hex())

    def _mint(self, request: InvoiceRequest, payment_hash: str, preimage: str) -> NodeInvoice:
        """Sign and keep an invoice; `preimage` is '' for a hold invoice."""
        payment_secret = secrets.token_hex(32)
        now = int(time.time())
        payment_request = bolt11.encode(
            currency=self.currency,
            amount_msat=request.amount_msat,
            timestamp=now,
            payment_hash=payment_hash,
            payment_secret=payment_secret,
            private_key=self._key.secret,
            # BOLT11 needs exactly one of d and h; an empty `d` is valid.
            description=(request.description or "") if request.description_hash is None else None,
            description_hash=request.description_hash,
            expiry=request.expiry,
            # A hold invoice asks for a long CLTV delta, as LND's do: the time
            # its HTLC may be held. Regular ones keep BOLT11's default of 18
            # unless the client asked for another.
            min_final_cltv_expiry_delta=(
                request.min_final_cltv_expiry_delta
                if preimage
                else request.min_final_cltv_expiry_delta or HTLC_CLTV_DELTA
            ),
        )
        try:
            self._write(
                "INSERT INTO dev_invoices (payment_hash, payment_request, preimage,"
                " payment_secret, amount_msat, description, description_hash, created_at,"
                " expiry, state, hold) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'OPEN', ?)",
                (
                    payment_hash,
                    payment_request,
                    preimage,
                    payment_secret,
                    request.amount_msat,
                    request.description,
                    request.description_hash,
                    now,
                    request.expiry,
                    int(not preimage),
                ),
            )
        except sqlite3.IntegrityError:
            raise NodeError(f"an invoice with payment hash {payment_hash} exists") from None
        return self._invoice(self._written(payment_hash))

    def lookup_invoice(self, payment_hash: str) -> NodeInvoice | None:
        row = self._row(payment_hash)
        return self._invoice(row) if row else None

    def settlements(self, cursor: int) -> Iterator[InvoiceUpdate]:
        while not self._closed.is_set():
            rows = self._settled_after(cursor, 1000)
            for row in rows:
                cursor = row["settle_index"]
                yield InvoiceUpdate(self._invoice(row), cursor)
            if not rows:
                with self._wake:
                    self._wake.wait(POLL_SECONDS)

    def settled_since(self, cursor: int) -> Iterator[InvoiceUpdate]:
        while rows := self._settled_after(cursor, 1000):
            for row in rows:
                cursor = row["settle_index"]
                yield InvoiceUpdate(self._invoice(row), cursor)

    def node_alias(self, pubkey: str) -> str | None:
        return "lnplugin-dev" if pubkey == self.pubkey else None

    # -- Hold invoices ------------------------------------------------------------

    def create_hold_invoice(self, request: InvoiceRequest, payment_hash: str) -> NodeInvoice:
        return self._mint(request, payment_hash.lower(), "")

    def settle_invoice(self, preimage: str) -> NodeInvoice:
        """Settle an ACCEPTED hold invoice. As in LND, an invoice that is not
        ACCEPTED (not paid yet, settled, canceled) cannot be settled; nor can
        one whose simulated HTLC has expired (the chain reached its settle
        deadline: on a real node the payer's peer takes it back on chain)."""
        payment_hash = hashlib.sha256(bytes.fromhex(preimage)).hexdigest()
        now = int(time.time())
        cur = self._write(
            "UPDATE dev_invoices SET state = 'SETTLED', preimage = ?, settled_at = ?,"
            " settle_index = (SELECT COALESCE(MAX(settle_index), 0) + 1 FROM dev_invoices)"
            " WHERE payment_hash = ? AND state = 'ACCEPTED'"
            " AND settle_deadline > (SELECT height FROM dev_chain)",
            (preimage.lower(), now, payment_hash),
        )
        if cur.rowcount != 1:
            row = self._row(payment_hash)
            if row is None:
                raise InvoiceNotFound(f"no invoice with payment hash {payment_hash}")
            if row["state"] == "ACCEPTED":
                raise InvoiceNotOpen(
                    f"the HTLC held for invoice {payment_hash} expired at block "
                    f"{row['settle_deadline']}; it can only be canceled"
                )
            raise InvoiceNotOpen(
                f"invoice {payment_hash} is {row['state'].lower()}, not accepted; "
                "only a paid hold invoice can be settled"
            )
        self._wake_feed()
        return self._invoice(self._written(payment_hash))

    def cancel_invoice(self, payment_hash: str, reason: str | None = None) -> NodeInvoice:
        cur = self._write(
            "UPDATE dev_invoices SET state = 'CANCELED', amount_received_msat = 0,"
            " change_index = (SELECT COALESCE(MAX(change_index), 0) + 1 FROM dev_invoices)"
            " WHERE payment_hash = ? AND state IN ('OPEN', 'ACCEPTED')",
            (payment_hash,),
        )
        row = self._row(payment_hash)
        if row is None:
            raise InvoiceNotFound(f"no invoice with payment hash {payment_hash}")
        if cur.rowcount != 1 and row["state"] != "CANCELED":
            raise InvoiceNotOpen(f"invoice {payment_hash} is settled and cannot be canceled")
        self._wake_feed()
        return self._invoice(row)

    def hold_updates(self) -> Iterator[InvoiceUpdate]:
        """ACCEPTED and CANCELED changes by `change_index`, from now on (also
        those made by `lnplugin dev pay` in another process)."""
        changes = self._last_change()
        while not self._closed.is_set():
            rows = self._conn.execute(CHANGES_AFTER, (changes,)).fetchall()
            for row in rows:
                changes = row["change_index"]
                yield InvoiceUpdate(self._invoice(row), 0)
            if not rows:
                with self._wake:
                    self._wake.wait(POLL_SECONDS)

    # -- Simulated chain ------------------------------------------------------------

    def block_height(self) -> int:
        return int(self._conn.execute("SELECT height FROM dev_chain").fetchone()[0])

    def mine(self, blocks: int = 1) -> int:
        """Move the simulated chain on by `blocks`; returns the new height."""
        if blocks < 1:
            raise NodeError("blocks must be at least 1")
        self._write("UPDATE dev_chain SET height = height + ?", (blocks,))
        return self.block_height()

    def close(self) -> None:
        self._checkpointer.close()
        self._closed.set()
        with self._wake:
            self._wake.notify_all()

    # -- Simulated payments -----------------------------------------------------

    def pay(self, target: str, amount_msat: int | None = None) -> NodeInvoice:
        """Pay an open invoice, given its BOLT11 or payment hash: a regular
        invoice settles, a hold invoice becomes ACCEPTED (its HTLC held).

        Raises InvoiceNotFound, InvoiceNotOpen, or NodeError (amount problems).
        The conditional UPDATE makes a double payment impossible even when two
        processes pay the same invoice at once: one statement is one SQLite
        write transaction, so its settle_index subquery cannot race either.
        """
        payment_hash = self._hash_of(target)
        row = self._row(payment_hash)
        if row is None:
            raise InvoiceNotFound(f"no invoice with payment hash {payment_hash} on the dev node")
        if row["amount_msat"] is None and amount_msat is None:
            raise NodeError("this invoice has no amount; pass amount_msat")
        if amount_msat is not None and amount_msat <= 0:
            raise NodeError("amount_msat must be positive")
        asked = row["amount_msat"]
        if asked is not None and amount_msat is not None and amount_msat < asked:
            raise NodeError(f"amount_msat {amount_msat} is less than the invoice amount {asked}")
        paid = amount_msat if amount_msat is not None else row["amount_msat"]
        now = int(time.time())
        if row["hold"]:
            # The HTLCs are locked in and held; the node cannot settle without
            # the preimage, so the invoice waits ACCEPTED until its deadline.
            cur = self._write(
                "UPDATE dev_invoices SET state = 'ACCEPTED', amount_received_msat = ?,"
                " settle_deadline = (SELECT height FROM dev_chain) + ?, change_index ="
                " (SELECT COALESCE(MAX(change_index), 0) + 1 FROM dev_invoices)"
                " WHERE payment_hash = ? AND state = 'OPEN' AND created_at + expiry > ?",
                (paid, _cltv_delta(row["payment_request"]), payment_hash, now),
            )
        else:
            cur = self._write(
                "UPDATE dev_invoices SET state = 'SETTLED', amount_received_msat = ?,"
                " settled_at = ?, settle_index = (SELECT COALESCE(MAX(settle_index), 0) + 1"
                " FROM dev_invoices) WHERE payment_hash = ? AND state = 'OPEN'"
                " AND created_at + expiry > ?",
                (paid, now, payment_hash, now),
            )
        if cur.rowcount != 1:
            current = self._row(payment_hash)
            state = current["state"] if current else "unknown"
            if state == "OPEN":
                state = "expired"
            raise InvoiceNotOpen(f"invoice {payment_hash} is not open (it is {state.lower()})")
        self._wake_feed()
        return self._invoice(self._written(payment_hash))

    def keysend(self, amount_msat: int, records: Mapping[int, bytes]) -> NodeInvoice:
        """Receive a spontaneous payment carrying custom TLV records.

        Like LND, the node inserts a settled invoice on the fly with an empty
        payment request. A 5482373484 record (the sender's preimage) is
        dropped, as lnplugin's lnd adapter and CLN's keysend plugin drop it:
        the same records read the same on every node, and the preimage is
        the invoice's own, made here.
        """
        if amount_msat <= 0:
            raise NodeError("amount_msat must be positive")
        records = {t: v for t, v in records.items() if t != KEYSEND_PREIMAGE}
        preimage = secrets.token_bytes(32)
        payment_hash = hashlib.sha256(preimage).hexdigest()
        now = int(time.time())
        self._write(
            "INSERT INTO dev_invoices (payment_hash, payment_request, preimage, amount_msat,"
            " created_at, expiry, state, amount_received_msat, settled_at, settle_index,"
            " is_keysend, custom_records) VALUES (?, '', ?, ?, ?, 86400, 'SETTLED', ?, ?,"
            " (SELECT COALESCE(MAX(settle_index), 0) + 1 FROM dev_invoices), 1, ?)",
            (
                payment_hash,
                preimage.hex(),
                amount_msat,
                now,
                amount_msat,
                now,
                records_to_json(records),
            ),
        )
        self._wake_feed()
        return self._invoice(self._written(payment_hash))

    # -- helpers ------------------------------------------------------------------

    def _wake_feed(self) -> None:
        with self._wake:
            self._wake.notify_all()

    def _hash_of(self, target: str) -> str:
        text = target.strip()
        if len(text) == 64:
            try:
                bytes.fromhex(text)
                return text.lower()
            except ValueError:
                pass
        try:
            return bolt11.decode(text).payment_hash
        except bolt11.Bolt11Error as exc:
            raise NodeError(f"not a payment hash or a valid BOLT11 invoice: {exc}") from None

    def _row(self, payment_hash: str) -> sqlite3.Row | None:
        return self._conn.execute(
            "SELECT * FROM dev_invoices WHERE payment_hash = ?", (payment_hash,)
        ).fetchone()

    def feed_head(self) -> int | None:
        """`FeedHead`: the highest settle_index handed out."""
        row = self._conn.execute("SELECT MAX(settle_index) FROM dev_invoices").fetchone()
        return int(row[0] or 0)

    def history_replaced(self) -> bool:
        """`FeedHead`: never known apart from the head, which is asked afresh."""
        return False

    def _written(self, payment_hash: str) -> sqlite3.Row:
        """The row this node has just written; rows are never deleted, so a miss
        means the dev database was changed under us, which is reported, not hidden."""
        row = self._row(payment_hash)
        if row is None:
            raise NodeError(f"invoice {payment_hash} vanished from the dev node's database")
        return row

    def _last_change(self) -> int:
        return self._conn.execute("SELECT MAX(change_index) FROM dev_invoices").fetchone()[0] or 0

    def _settled_after(self, cursor: int, limit: int) -> list[sqlite3.Row]:
        return self._conn.execute(
            "SELECT * FROM dev_invoices WHERE settle_index > ? ORDER BY settle_index LIMIT ?",
            (cursor, limit),
        ).fetchall()

    def _invoice(self, row: sqlite3.Row) -> NodeInvoice:
        settled = row["state"] == "SETTLED"
        return NodeInvoice(
            payment_hash=row["payment_hash"],
            payment_request=row["payment_request"],
            state=row["state"],
            amount_msat=row["amount_msat"],
            created_at=row["created_at"],
            expiry=row["expiry"],
            description=row["description"],
            description_hash=row["description_hash"],
            amount_received_msat=row["amount_received_msat"],
            settled_at=row["settled_at"],
            preimage=row["preimage"] if settled else None,
            payment_secret=row["payment_secret"],
            custom_records=records_from_json(row["custom_records"]),
            is_keysend=bool(row["is_keysend"]),
            settle_deadline=row["settle_deadline"],
        )
