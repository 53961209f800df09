"""Schema migrations, applied in order and recorded in `schema_version`.

Each migration is a function of a `sqlite_utils.Database` that runs inside the
store's opening transaction, so a failed migration leaves the file untouched.
Append new migrations; never edit an applied one. Numbers reserved: 2 for
webhooks, 3 for Core Lightning plugin mode.
"""

from __future__ import annotations

import os
import sqlite3
import time
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Imported by `migrate` when a migration is due: every command opens the
    # store, and nearly always finds nothing to migrate.
    import sqlite_utils

Migration = Callable[["sqlite_utils.Database"], None]
MIGRATIONS: dict[int, tuple[str, Migration]] = {}


def migration(number: int, name: str) -> Callable[[Migration], Migration]:
    def register(fn: Migration) -> Migration:
        if number in MIGRATIONS:
            raise RuntimeError(f"migration {number} registered twice")
        MIGRATIONS[number] = (name, fn)
        return fn

    return register


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer lnplugin. Running an older one on it
    could misread columns it does not know, so it is refused: to roll back an
    upgrade, restore the backup taken before it (docs/operations.md)."""


def current_version(conn: sqlite3.Connection) -> int:
    """The schema version the store records; 0 for a new file."""
    table = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if table is None:
        return 0
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return row[0] or 0


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date; returns the resulting version."""
    version = current_version(conn)
    latest = max(MIGRATIONS)
    if version > latest:
        raise SchemaTooNew(
            f"its schema version {version} is newer than this lnplugin's ({latest}): run the "
            "newer lnplugin, or restore the backup taken before the upgrade"
        )
    if version == latest:
        return version
    import sqlite_utils

    db = sqlite_utils.Database(conn)
    if "schema_version" not in db.table_names():
        db.table("schema_version").create(
            {"version": int, "name": str, "applied_at": int}, pk="version", not_null={"name"}
        )
    for number in sorted(n for n in MIGRATIONS if n > version):
        name, fn = MIGRATIONS[number]
        fn(db)
        db.table("schema_version").insert(
            {"version": number, "name": name, "applied_at": int(time.time())}
        )
        version = number
    return version


@migration(1, "invoices, events, cursors, tokens, idempotency keys")
def _initial(db: sqlite_utils.Database) -> None:
    # `id` is dense (rows are never deleted), so the "all" list pages by
    # arithmetic on it. `list_seq` is dense per type among listed rows
    # (settled incoming, all outgoing), so those lists page the same way.
    db.table("invoices").create(
        {
            "id": int,
            "identifier": str,
            "type": str,
            "payment_hash": str,
            "payment_request": str,
            "state": str,
            "amount_msat": int,
            "amount_received_msat": int,
            "fee_msat": int,
            "description": str,
            "description_hash": str,
            "comment": str,
            "metadata": str,
            "payer_name": str,
            "payer_email": str,
            "payer_pubkey": str,
            "created_at": int,
            "expiry": int,
            "expires_at": int,
            "settled_at": int,
            "preimage": str,
            "payment_secret": str,
            "destination": str,
            "is_keysend": int,
            "custom_records": str,
            "boostagram": str,
            "keysend_message": str,
            "webhook_url": str,
            "list_seq": int,
            "source": str,
        },
        pk="id",
        not_null={
            "identifier",
            "type",
            "payment_hash",
            "payment_request",
            "state",
            "amount_received_msat",
            "fee_msat",
            "created_at",
            "expiry",
            "expires_at",
            "is_keysend",
            "source",
        },
        defaults={
            "payment_request": "",
            "amount_received_msat": 0,
            "fee_msat": 0,
            "is_keysend": 0,
            "source": "api",
        },
    )
    db.table("invoices").create_index(["identifier"], unique=True)
    db.table("invoices").create_index(["type", "payment_hash"], unique=True)
    db.table("invoices").create_index(["type", "list_seq"], unique=True)
    db.table("invoices").create_index(["payment_hash"])
    db.execute("CREATE INDEX idx_invoices_open ON invoices(expires_at) WHERE state = 'OPEN'")

    # The outbox: every state change appends one row in the same transaction.
    # Webhook delivery and SSE (`Last-Event-ID` = seq) read from here.
    db.table("events").create(
        {
            "seq": int,
            "event_id": str,
            "type": str,
            "invoice_id": int,
            "payment_hash": str,
            "created_at": int,
            "payload": str,
        },
        pk="seq",
        not_null={"event_id", "type", "created_at", "payload"},
    )
    db.table("events").create_index(["event_id"], unique=True)
    db.table("events").create_index(["invoice_id"])

    db.table("cursors").create(
        {"name": str, "value": int, "updated_at": int}, pk="name", not_null={"value"}
    )

    db.table("tokens").create(
        {
            "id": int,
            "label": str,
            "token_hash": str,
            "scopes": str,
            "created_at": int,
            "revoked_at": int,
        },
        pk="id",
        not_null={"token_hash", "scopes", "created_at"},
    )
    db.table("tokens").create_index(["token_hash"], unique=True)

    db.table("idempotency_keys").create(
        {
            "token_id": int,
            "key": str,
            "body_hash": str,
            "invoice_id": int,
            "created_at": int,
        },
        pk=("token_id", "key"),
        not_null={"body_hash", "invoice_id", "created_at"},
    )


@migration(2, "webhook endpoints, deliveries, service-wide webhook secret")
def _webhooks(db: sqlite_utils.Database) -> None:
    # Endpoints registered through POST /webhook_endpoints. `after_seq` is the
    # outbox position at creation: an endpoint receives only later events.
    db.table("webhook_endpoints").create(
        {
            "id": str,
            "url": str,
            "description": str,
            "filter_types": str,
            "secret": str,
            "created_at": int,
            "after_seq": int,
        },
        pk="id",
        not_null={"url", "filter_types", "secret", "created_at", "after_seq"},
    )
    # One row per (target, event): the unit of retry. `endpoint_id` is '' for
    # an invoice's own `webhook` URL (signed with the service-wide secret).
    # `payload` is set only for test events, which are not in the outbox.
    db.table("webhook_deliveries").create(
        {
            "id": int,
            "endpoint_id": str,
            "url": str,
            "event_seq": int,
            "event_id": str,
            "event_type": str,
            "payload": str,
            "status": str,
            "attempts": int,
            "retry_index": int,
            "next_attempt_at": float,
            "last_status_code": int,
            "last_error": str,
            "last_attempt_at": float,
            "delivered_at": float,
            "created_at": float,
        },
        pk="id",
        not_null={
            "endpoint_id",
            "url",
            "event_id",
            "event_type",
            "status",
            "attempts",
            "retry_index",
            "created_at",
        },
        defaults={"endpoint_id": "", "status": "pending", "attempts": 0, "retry_index": 0},
    )
    db.table("webhook_deliveries").create_index(["endpoint_id", "event_id"], unique=True)
    db.execute(
        "CREATE INDEX idx_webhook_deliveries_due ON webhook_deliveries(next_attempt_at) "
        "WHERE status = 'pending'"
    )
    db.table("webhook_keys").create(
        {"name": str, "secret": str, "created_at": int}, pk="name", not_null={"secret"}
    )


@migration(3, "Core Lightning plugin mode: captured HTLC records, cursor kinds")
def _cln_plugin(db: sqlite_utils.Database) -> None:
    # Custom TLV records the `htlc_accepted` hook saw, by payment hash. CLN
    # never lists them, so they are kept here until (and after) the follower
    # joins them to the invoice row: whichever side arrives second merges.
    # `records` is Alby's wire form (decimal type -> base64), like invoices.custom_records.
    db.table("htlc_records").create(
        {"payment_hash": str, "records": str, "received_at": int},
        pk="payment_hash",
        not_null={"records", "received_at"},
    )
    # What a cursor's number means (CLN: updated_index, or pay_index before
    # 23.08). When it changes, the number is meaningless and the cursor restarts at 0.
    db.table("cursor_kinds").create(
        {"name": str, "kind": str, "updated_at": int}, pk="name", not_null={"kind"}
    )


@migration(4, "drop the payment_hash index the (type, payment_hash) index covers")
def _drop_payment_hash_index(db: sqlite_utils.Database) -> None:
    # Every lookup by hash names the type (or `type IN (...)`), so the unique
    # (type, payment_hash) index serves it; this one only cost a random-page
    # write per insert.
    db.execute("DROP INDEX IF EXISTS idx_invoices_payment_hash")


@migration(5, "webhook delivery generation, bumped by every redeliver")
def _delivery_generation(db: sqlite_utils.Database) -> None:
    # A redeliver can land while an attempt of the same row is on the wire.
    # The attempt carries the generation it was dispatched with, so its
    # outcome can tell it has been superseded instead of overwriting the
    # redeliver's reset (see `webhooks.record_attempt`).
    db.table("webhook_deliveries").add_column("generation", int, not_null_default=0)


@migration(6, "hold invoices: settle deadline and cancel reason")
def _hold_invoices(db: sqlite_utils.Database) -> None:
    # `settle_deadline`: the block height by which an ACCEPTED hold invoice
    # must be settled or canceled (its earliest HTLC's expiry). `cancel_reason`
    # says who canceled an invoice and why (an API call, or lnplugin itself
    # before the deadline), for the invoice object and its canceled event.
    db.table("invoices").add_column("settle_deadline", int)
    db.table("invoices").add_column("cancel_reason", str)
    # 1 for a hold invoice (minted for the client's payment hash).
    db.table("invoices").add_column("hold", int, not_null_default=0)
    # Settle or cancel decisions on hold invoices that lnplugin itself holds
    # the HTLCs of (Core Lightning plugin mode), written before the HTLCs
    # are answered: lightningd replays unanswered HTLCs after a restart, and
    # they are then answered from here.
    db.table("hold_decisions").create(
        {"payment_hash": str, "state": str, "preimage": str, "decided_at": int},
        pk="payment_hash",
        not_null={"state", "decided_at"},
    )


@migration(7, "Lightning Addresses; invoices record the address they were paid to")
def _lightning_addresses(db: sqlite_utils.Database) -> None:
    # One row per LUD-16 address. `payer_data` is LUD-18's request object as
    # JSON text ({"name": {"mandatory": false}, ...}). The keysend pair is the
    # TLV record (type, UTF-8 value) a Podcasting 2.0 keysend to this address
    # carries; it is unique so a keysend names at most one address.
    db.table("lightning_addresses").create(
        {
            "id": int,
            "username": str,
            "min_sendable_msat": int,
            "max_sendable_msat": int,
            "description": str,
            "image": str,
            "comment_allowed": int,
            "payer_data": str,
            "webhook_url": str,
            "success_message": str,
            "keysend_custom_key": int,
            "keysend_custom_value": str,
            "created_at": int,
            "updated_at": int,
        },
        pk="id",
        not_null={
            "username",
            "min_sendable_msat",
            "max_sendable_msat",
            "description",
            "comment_allowed",
            "keysend_custom_key",
            "keysend_custom_value",
            "created_at",
            "updated_at",
        },
        defaults={"comment_allowed": 0},
    )
    db.table("lightning_addresses").create_index(["username"], unique=True)
    db.table("lightning_addresses").create_index(
        ["keysend_custom_key", "keysend_custom_value"], unique=True
    )
    # The username an invoice was minted for (LNURL callback) or a keysend
    # was attributed to. Kept as text, not a foreign key: removing an address
    # must not rewrite the history of what it was paid.
    db.table("invoices").add_column("lightning_address", str)
    db.execute(
        "CREATE INDEX idx_invoices_lightning_address ON invoices(lightning_address, id) "
        "WHERE lightning_address IS NOT NULL"
    )


@migration(8, "rss::payment fetches; the raw x-rss-payment header; boost filters")
def _rss_payments(db: sqlite_utils.Database) -> None:
    # One row per incoming payment whose comment, keysend message or
    # description carried `rss::payment::<action> <url> <message>`: the
    # fetch of `url` and its outcome. `state` is pending (due at
    # `next_attempt_at`), fetched, refused (domain or address not allowed,
    # never retried) or failed (the retry schedule ran out, or the answer
    # can never be used). `header` is the raw x-rss-payment value as received.
    db.table("rss_payments").create(
        {
            "invoice_id": int,
            "url": str,
            "action": str,
            "state": str,
            "attempts": int,
            "next_attempt_at": int,
            "last_error": str,
            "header": str,
            "created_at": int,
            "updated_at": int,
        },
        pk="invoice_id",
        not_null={"url", "state", "attempts", "created_at", "updated_at"},
        defaults={"attempts": 0},
    )
    db.execute(
        "CREATE INDEX idx_rss_payments_due ON rss_payments(next_attempt_at) WHERE state = 'pending'"
    )
    # The boost filters on lists read the normalised boostagram's fields.
    for name, path in (("feed", "$.guid"), ("item", "$.episode_guid"), ("action", "$.action")):
        db.execute(
            f"CREATE INDEX idx_invoices_boost_{name} ON invoices("
            f"json_extract(boostagram, '{path}'), list_seq) WHERE boostagram IS NOT NULL"
        )
    # Start the fetch worker at the end of the outbox: boosts settled before
    # this version are not fetched all at once on the first start.
    db.execute(
        "INSERT INTO cursors (name, value, updated_at) "
        "SELECT 'rss_payment', COALESCE(MAX(seq), 0), CAST(strftime('%s') AS INTEGER) FROM events "
        "WHERE true ON CONFLICT(name) DO NOTHING"
    )


@migration(9, "invoices get a public id (128 random bits) for their QR codes and checkout page")
def _public_ids(db: sqlite_utils.Database) -> None:
    # The checkout page and QR codes are reached without a token, so the id in
    # their URLs must be unguessable: 128 random bits. `identifier` has 72 and
    # is the API's list cursor, so it stays as it is. Rows from before get
    # 128 random bits from SQLite (hex, without the time prefix new ids have).
    db.execute("ALTER TABLE invoices ADD COLUMN public_id TEXT")
    db.execute("UPDATE invoices SET public_id = lower(hex(randomblob(16))) WHERE public_id IS NULL")
    db.execute("CREATE UNIQUE INDEX idx_invoices_public_id ON invoices(public_id)")


@migration(10, "Nostr Wallet Connect: connections, answered requests, notification outbox")
def _nwc(db: sqlite_utils.Database) -> None:
    # A connection is the app's public key and what it may do; the app's
    # secret is printed once in the URI and never stored.
    db.execute(
        "CREATE TABLE nwc_connections ("
        " id INTEGER PRIMARY KEY, app_pubkey TEXT NOT NULL UNIQUE, label TEXT,"
        " scopes TEXT NOT NULL, created_at INTEGER NOT NULL, revoked_at INTEGER)"
    )
    # Every answered request event, by its id: a request seen again (a second
    # relay, a replay, a restart) is answered with this stored response, and
    # make_invoice mints once. The row is claimed before the method runs
    # (response NULL) and `response` is the signed response event's JSON.
    db.execute(
        "CREATE TABLE nwc_requests ("
        " event_id TEXT PRIMARY KEY, connection_id INTEGER NOT NULL,"
        " method TEXT NOT NULL, response TEXT, created_at INTEGER NOT NULL)"
    )
    db.execute("CREATE INDEX idx_nwc_requests_created ON nwc_requests(created_at)")
    # Notifications to send, fanned out from the outbox with the fan-out's
    # cursor in the same transaction; a row is deleted once a relay took it.
    db.execute(
        "CREATE TABLE nwc_notifications ("
        " id INTEGER PRIMARY KEY, connection_id INTEGER NOT NULL,"
        " body TEXT NOT NULL, created_at INTEGER NOT NULL)"
    )
    # The service's own nostr key (the wallet's identity in every URI). Like
    # the webhook secrets, it lives in the 0600 database.
    db.execute(
        "CREATE TABLE nwc_service_key (id INTEGER PRIMARY KEY CHECK (id = 1),"
        " secret_hex TEXT NOT NULL, created_at INTEGER NOT NULL)"
    )


@migration(11, "per-token rate limits and signed requests; fiat-priced invoices")
def _token_limits_and_fiat(db: sqlite_utils.Database) -> None:
    # A token's own request rate ("100/minute"); NULL means the server's
    # --token-rate-limit. `signing_secret` is the HMAC key of a token that
    # must sign its requests (NULL: signing not required). It is stored as
    # the webhook secrets are, in the clear in a 0600 file: an HMAC has to
    # be recomputed with the key itself, so a hash of it would be useless.
    db.table("tokens").add_column("rate_limit", str)
    db.table("tokens").add_column("signing_secret", str)
    # Nonces of signed requests seen within the timestamp window, so a
    # captured request cannot be replayed; rows older than the window are pruned.
    db.table("request_nonces").create(
        {"token_id": int, "nonce": str, "seen_at": int},
        pk=("token_id", "nonce"),
        not_null={"seen_at"},
    )
    db.execute("CREATE INDEX idx_request_nonces_seen_at ON request_nonces(seen_at)")
    # Fiat pricing. `price_*` is what the invoice was priced in (ISO 4217
    # code, minor units, the rate as a decimal string of that currency per
    # BTC, where the rate came from and when); `fiat_*` is Alby's display
    # pair, filled at creation when a display currency is configured.
    # `items` is the line items as JSON text.
    invoices = db.table("invoices")
    invoices.add_column("price_currency", str)
    invoices.add_column("price_amount", int)
    invoices.add_column("price_rate", str)
    invoices.add_column("price_rate_source", str)
    invoices.add_column("price_rate_at", int)
    invoices.add_column("fiat_currency", str)
    invoices.add_column("fiat_in_cents", int)
    invoices.add_column("items", str)


@migration(12, "invoices record when their checkout page was first opened")
def _viewed_at(db: sqlite_utils.Database) -> None:
    # Set once, by the first GET of the invoice's checkout page, in the
    # transaction that writes its `invoice.viewed` event (NULL: never opened).
    db.table("invoices").add_column("viewed_at", int)


@migration(13, "NWC: which wallet connection made each invoice it minted")
def _nwc_invoice_owners(db: sqlite_utils.Database) -> None:
    # Written with the invoice, in its transaction. A connection settles and
    # cancels only the hold invoices it made itself: another app's payment
    # hash (which any payer sees in the invoice) is no handle on its escrow.
    db.execute(
        "CREATE TABLE nwc_invoices (invoice_id INTEGER PRIMARY KEY, connection_id INTEGER NOT NULL)"
    )


@migration(14, "NWC connections remember the encryption their app uses")
def _nwc_encryption(db: sqlite_utils.Database) -> None:
    # The scheme ("nip44_v2" or "nip04") of the connection's latest request;
    # NULL until its app has sent one. Notifications went out in that scheme
    # alone; since NIP-47 asks a wallet offering both to publish both, they
    # go out in both again and the column is no longer written or read.
    db.table("nwc_connections").add_column("encryption", str)


@migration(15, "LUD-18 auth challenges (k1) issued by Lightning Address discovery")
def _lnurl_auth_k1(db: sqlite_utils.Database) -> None:
    # One row per k1 an address's discovery answer handed out; the callback
    # deletes it when a payer's signature of it is accepted (single use), and
    # rows past `expires_at` are refused and swept when new ones are issued.
    db.execute(
        "CREATE TABLE lnurl_auth_k1 (k1 TEXT PRIMARY KEY, username TEXT NOT NULL, "
        "issued_at INTEGER NOT NULL, expires_at INTEGER NOT NULL) WITHOUT ROWID"
    )
    db.execute("CREATE INDEX idx_lnurl_auth_k1_expires_at ON lnurl_auth_k1(expires_at)")


@migration(16, "NWC: a wallet key per connection, and spare keys already listened on")
def _nwc_connection_keys(db: sqlite_utils.Database) -> None:
    # NIP-47: "ideally unique keys are used for each individual connection",
    # so a relay cannot tell that two apps talk to one wallet. NULL: a
    # connection made before this, which keeps the shared `nwc_service_key`
    # its URI names. The secrets sit in the 0600 file, as that key does.
    connections = db.table("nwc_connections")
    connections.add_column("service_pubkey", str)
    connections.add_column("service_secret", str)
    db.execute("CREATE UNIQUE INDEX idx_nwc_connections_service ON nwc_connections(service_pubkey)")
    # Keys the running server already subscribes to and has published an
    # info event for: a new connection takes one, so an app that uses its
    # URI at once (requests are ephemeral; one sent before the server
    # listens on the key is lost) is heard (docs/nwc.md).
    db.execute(
        "CREATE TABLE nwc_spare_keys (pubkey TEXT PRIMARY KEY, secret_hex TEXT NOT NULL,"
        " created_at INTEGER NOT NULL) WITHOUT ROWID"
    )


@migration(17, "Core Lightning hold invoices: the HTLCs a settle decision answered")
def _hold_decision_htlcs(db: sqlite_utils.Database) -> None:
    # JSON [[short_channel_id, htlc id], ...] of the HTLCs held when the
    # invoice was settled: lightningd replays exactly those after a restart,
    # and any other HTLC to the settled hash (a second payment) is failed, as
    # a node fails a payment to a paid invoice. NULL (decided before this, or
    # canceled): every replayed HTLC is answered as decided.
    db.table("hold_decisions").add_column("htlcs", str)


@migration(18, "canceled invoices have received 0, as their payer has the money back")
def _canceled_received_nothing(db: sqlite_utils.Database) -> None:
    # Until 17, a hold invoice canceled while its HTLCs were held kept their
    # sum in `amount_received_msat` (on LND until lnplugin heard of the
    # cancel from the node). The payer has that money back, and invoices
    # canceled since are stored with 0; without this, the API, exports and
    # NWC went on showing the older ones as paid that much.
    db.execute(
        "UPDATE invoices SET amount_received_msat = 0 "
        "WHERE state = 'CANCELED' AND amount_received_msat != 0"
    )


@migration(19, "API: which token made each invoice it minted")
def _token_invoice_owners(db: sqlite_utils.Database) -> None:
    # Written with the invoice, in its transaction. A token that may create
    # invoices but not read them settles and cancels only those it made, as
    # an NWC connection does (migration 13): a payment hash is no secret, and
    # the answer is the whole invoice, payer data included. Invoices minted
    # before this have no row: only a token that may read them can act.
    db.execute(
        "CREATE TABLE token_invoices (invoice_id INTEGER PRIMARY KEY, token_id INTEGER NOT NULL)"
    )


@migration(20, "the node the follower's cursors count positions of")
def _followed_node(db: sqlite_utils.Database) -> None:
    # The node's identity public key, written when first seen. The cursors
    # are positions in that node's feeds: another node (a wiped data dir, or
    # lnplugin pointed elsewhere) numbers its own from 1, and the cursors
    # start over (`cursors.sync_node`).
    db.execute(
        "CREATE TABLE followed_node (id INTEGER PRIMARY KEY CHECK (id = 1),"
        " pubkey TEXT NOT NULL, updated_at INTEGER NOT NULL)"
    )


@migration(21, "NWC list_transactions: invoices by creation and by settlement time")
def _transaction_time_indexes(db: sqlite_utils.Database) -> None:
    # NWC lists newest-created first, `from`/`until` going by when a
    # transaction settled (its creation while unsettled). Without these every
    # `list_transactions` sorted the whole table: 0.5-1.3 s on a million
    # invoices. `store.nwc.transactions` names them (INDEXED BY).
    db.execute("CREATE INDEX idx_invoices_created ON invoices(created_at)")
    db.execute(
        "CREATE INDEX idx_invoices_settled ON invoices(settled_at) WHERE settled_at IS NOT NULL"
    )


def _tally(name: str, key: str, delta: str) -> str:
    """A trigger statement adding `delta` to the tally `name`/`key`."""
    return (
        f"INSERT INTO tallies (name, key, n) VALUES ('{name}', {key}, {delta}) "
        f"ON CONFLICT(name, key) DO UPDATE SET n = n + ({delta});"
    )


# What `/metrics` counts by trigger, as (tally name, table, the columns an
# update may move a row by, which rows count, the key they are counted under).
# Only tables whose rows change state: the outbox is append-only, and what
# is counted from it (events, settlements) is carried from scrape to scrape
# (`store.metrics.Running`), which costs the settlement path nothing.
TALLIES = (
    ("deliveries", "webhook_deliveries", "status", "1", "{row}.status"),
    ("rss_payments", "rss_payments", "state", "1", "{row}.state"),
)


@migration(22, "running counts for /metrics, kept by triggers")
def _tallies(db: sqlite_utils.Database) -> None:
    # `/metrics` counted webhook deliveries and rss::payment fetches by status
    # with a GROUP BY over their whole tables at every scrape (a delivery row
    # per event and endpoint: millions on a busy store). Triggers keep the
    # counts in the transaction that changes the rows, so they survive
    # restarts and always agree with the tables (`store.metrics`).
    db.execute(
        "CREATE TABLE tallies (name TEXT NOT NULL, key TEXT NOT NULL, n INTEGER NOT NULL,"
        " PRIMARY KEY (name, key)) WITHOUT ROWID"
    )
    for tally in TALLIES:
        _tally_triggers(db, *tally)


def _tally_triggers(
    db: sqlite_utils.Database, name: str, table: str, columns: str, counted: str, key: str
) -> None:
    """Count `table`'s rows as they are now, then keep the count by triggers."""
    new = {"row": "NEW"}
    old = {"row": "OLD"}
    src = {"row": table}
    db.execute(
        f"INSERT INTO tallies (name, key, n) SELECT '{name}', {key.format(**src)}, COUNT(*)"
        f" FROM {table} WHERE {counted.format(**src)} GROUP BY 2"
    )
    db.execute(
        f"CREATE TRIGGER tally_{table}_insert AFTER INSERT ON {table}"
        f" WHEN {counted.format(**new)} BEGIN {_tally(name, key.format(**new), '1')} END"
    )
    db.execute(
        f"CREATE TRIGGER tally_{table}_delete AFTER DELETE ON {table}"
        f" WHEN {counted.format(**old)} BEGIN {_tally(name, key.format(**old), '-1')} END"
    )
    # An update that moves a row out of its count, or into one (two
    # triggers: each side has its own condition).
    db.execute(
        f"CREATE TRIGGER tally_{table}_update_out AFTER UPDATE OF {columns} ON {table}"
        f" WHEN {counted.format(**old)} BEGIN {_tally(name, key.format(**old), '-1')} END"
    )
    db.execute(
        f"CREATE TRIGGER tally_{table}_update_in AFTER UPDATE OF {columns} ON {table}"
        f" WHEN {counted.format(**new)} BEGIN {_tally(name, key.format(**new), '1')} END"
    )


@migration(23, "drop the settlement-path /metrics triggers an early migration 22 made")
def _drop_settlement_tallies(db: sqlite_utils.Database) -> None:
    # Migration 22 as first released (briefly, on main) also counted events
    # and settlements by triggers on `events` and `invoices`; 22 was then
    # changed to leave them out (they cost ~20 % of settlement ingest, and
    # `/metrics` counts those over the outbox instead). A store migrated by
    # that first 22 kept them, since 22 was recorded as applied. A no-op on
    # any other store.
    for table in ("events", "invoices"):
        for suffix in ("insert", "delete", "update_out", "update_in"):
            db.execute(f"DROP TRIGGER IF EXISTS tally_{table}_{suffix}")
    db.execute("DELETE FROM tallies WHERE name IN ('events', 'settlements')")


@migration(24, "API: the token that made an invoice before 19, from its Idempotency-Key")
def _token_invoice_owners_from_keys(db: sqlite_utils.Database) -> None:
    # An idempotency key is written with the invoice `POST /invoices` made
    # for that token, in its transaction, and is never pruned: it names the
    # invoice's maker exactly. Invoices made before migration 19 had no row
    # in `token_invoices`, so a token that may create but not read invoices
    # could no longer settle or cancel its own, e.g. a hold invoice whose
    # HTLCs were held across the upgrade (it was canceled at its deadline).
    # Invoices made without a key still have no maker on record.
    db.execute(
        "INSERT OR IGNORE INTO token_invoices (invoice_id, token_id)"
        " SELECT invoice_id, token_id FROM idempotency_keys"
    )


@migration(25, "a boost filter on the PodcastIndex feed id (bLIP-10 `feedID`)")
def _boost_feed_id_index(db: sqlite_utils.Database) -> None:
    # `q[feed_id]`: many keysend apps name the podcast by `feedID` alone, with
    # no `guid` for `q[feed_guid]` to match. Indexed as migration 8 indexes
    # the other boost filters.
    db.execute(
        "CREATE INDEX idx_invoices_boost_feed_id ON invoices("
        "json_extract(boostagram, '$.feedID'), list_seq) WHERE boostagram IS NOT NULL"
    )


@migration(26, "LNURL payer data under Alby's key, metadata.payer_data (was payerdata)")
def _payer_data_key(db: sqlite_utils.Database) -> None:
    # Alby's invoice object names it `metadata.payer_data`; the callback used
    # LUD-18's query parameter name. Moved, as it was received, in the rows
    # of address payments that have it (and not already the new key).
    db.execute(
        "UPDATE invoices SET metadata = json_set(json_remove(metadata, '$.payerdata'),"
        " '$.payer_data', json(json_extract(metadata, '$.payerdata')))"
        " WHERE source = 'lnurl' AND json_valid(metadata)"
        " AND json_type(metadata, '$.payerdata') = 'object'"
        " AND json_type(metadata, '$.payer_data') IS NULL"
    )


@migration(27, "NIP-57 zaps: the zapper key, zap requests and their receipts' deliveries")
def _zaps(db: sqlite_utils.Database) -> None:
    # The key zap receipts are signed with (the `nostrPubkey` addresses
    # advertise). Like the NWC key, it lives in the 0600 database.
    db.execute(
        "CREATE TABLE zapper_key (id INTEGER PRIMARY KEY CHECK (id = 1),"
        " secret_hex TEXT NOT NULL, created_at INTEGER NOT NULL)"
    )
    # The zap request an LNURL-pay invoice was minted for, as received (its
    # SHA-256 is the invoice's description hash), the relays its receipt
    # goes to (JSON list) and, once the invoice settled, that receipt: built
    # once, so every relay gets the same event.
    db.execute(
        "CREATE TABLE zap_requests (invoice_id INTEGER PRIMARY KEY, request TEXT NOT NULL,"
        " relays TEXT NOT NULL, receipt TEXT, created_at INTEGER NOT NULL)"
    )
    # One row per (receipt, relay): pending (due at `next_attempt_at`),
    # sent, refused (the relay's address is not public, never retried) or
    # failed (the relay refused the event, or the retries ran out).
    db.execute(
        "CREATE TABLE zap_receipts (id INTEGER PRIMARY KEY, invoice_id INTEGER NOT NULL,"
        " relay TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
        " next_attempt_at INTEGER, last_error TEXT, created_at INTEGER NOT NULL,"
        " updated_at INTEGER NOT NULL, UNIQUE (invoice_id, relay))"
    )
    db.execute(
        "CREATE INDEX idx_zap_receipts_due ON zap_receipts(next_attempt_at) WHERE state = 'pending'"
    )


# Counted by migration 28, as TALLIES are by 22 (the table came in 27).
ZAP_TALLY = ("zap_receipts", "zap_receipts", "state", "1", "{row}.state")


@migration(
    28,
    "NWC connections keep their URI's Lightning Address; zap receipts counted; "
    "hold cancel reasons kept with the decision",
)
def _nwc_lud16_and_zap_tallies(db: sqlite_utils.Database) -> None:
    # The `lud16` put in a connection's URI, which is shown once: kept so
    # `nwc list` and `GET /nwc/connections` can say which address an app was
    # given. NULL for none, and for connections made before this migration
    # (what their URIs named was not kept).
    db.execute("ALTER TABLE nwc_connections ADD COLUMN lud16 TEXT")
    # Zap receipt deliveries by state, for `/metrics`, `/info` and `/health`
    # (the receipt backlog), kept as webhook deliveries' are (migration 22).
    _tally_triggers(db, *ZAP_TALLY)
    # Why lnplugin canceled a hold invoice whose HTLCs it holds (Core
    # Lightning plugin mode), written with the decision: the invoice's
    # CANCELED is stored after the HTLCs are failed, and a process that dies
    # in between left the next one only the decision, stored then as
    # "canceled on the node". NULL for a settle, and for decisions before this.
    db.execute("ALTER TABLE hold_decisions ADD COLUMN reason TEXT")


def read_only_uri(path: str | os.PathLike[str]) -> str:
    """An SQLite URI opening `path` read-only; the path is quoted, so a `?` or `#`
    in a directory name is not taken for the URI's query or fragment."""
    return f"file:{urllib.parse.quote(os.path.abspath(os.fspath(path)))}?mode=ro"


def stored_version(path: str | os.PathLike[str]) -> int:
    """The schema version recorded in the database file at `path`, read without
    migrating or writing anything (for `lnplugin doctor`); 0 when it has none.

    Raises `sqlite3.DatabaseError` when the file is not a readable database.
    """
    conn = sqlite3.connect(read_only_uri(path), uri=True)
    try:
        has_table = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        ).fetchone()
        if not has_table:
            return 0
        return int(conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0)
    finally:
        conn.close()


def quick_check(path: str | os.PathLike[str]) -> str:
    """SQLite's `quick_check` of the file at `path`, read-only: "ok", or the
    first problem found. Reads every page, so a damaged one that no query has
    reached yet is found too (for `lnplugin doctor`).

    Raises `sqlite3.DatabaseError` when the file is not a readable database.
    """
    conn = sqlite3.connect(read_only_uri(path), uri=True)
    try:
        found = str(conn.execute("PRAGMA quick_check(1)").fetchone()[0])
    finally:
        conn.close()
    # One line: SQLite heads its report with "*** in database main ***".
    return "; ".join(line for line in found.splitlines() if not line.startswith("***"))
