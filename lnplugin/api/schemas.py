"""Request bodies, validated by pydantic with one reason per field.

Integers are strict (no floats, no booleans): money is integer sats or msat,
and silently truncating 1.5 sats would be a bug in the client we should show.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
)

from lnplugin import fiat, invoicing, lnurl, ssrf
from lnplugin.labels import MAX_LABEL, label_problem
from lnplugin.store import addresses

MAX_MSAT = 21_000_000 * 100_000_000 * 1000
MAX_DESCRIPTION_BYTES = 639  # what a BOLT11 `d` field can carry
MAX_METADATA_BYTES = 4096
MAX_EXPIRY = 365 * 24 * 3600
HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")  # a SHA-256, such as a payment hash
_PUBKEY = re.compile(r"^[0-9a-fA-F]{64}([0-9a-fA-F]{2})?$")


class Body(BaseModel):
    """A request body; `context.body_as` validates it and then its cross-field rules."""

    def cross_field_errors(self) -> dict[str, str]:
        """Rules that involve more than one field: {field: reason}."""
        return {}


class LineItem(BaseModel):
    """One line of an invoice; `unit_price` is in the invoice's currency: sats
    for BTC, minor units (cents) for a fiat currency."""

    model_config = ConfigDict(extra="forbid")

    description: StrictStr = Field(min_length=1, max_length=256)
    unit_price: StrictInt = Field(ge=0, le=MAX_MSAT // 1000)
    quantity: StrictInt = Field(default=1, ge=1, le=1_000_000)


class InvoiceCreate(Body):
    """POST /invoices. Unknown keys are ignored, as Alby's API does."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={"examples": [{"amount": 21, "description": "coffee"}]},
    )

    amount: StrictInt | None = Field(default=None, ge=0, le=MAX_MSAT // 1000)
    amount_msat: StrictInt | None = Field(default=None, ge=0, le=MAX_MSAT)
    description: StrictStr | None = None
    memo: StrictStr | None = None
    description_hash: StrictStr | None = None
    comment: StrictStr | None = Field(default=None, max_length=2000)
    metadata: dict[str, Any] | None = None
    payer_name: StrictStr | None = Field(default=None, max_length=256)
    payer_email: StrictStr | None = Field(default=None, max_length=320)
    payer_pubkey: StrictStr | None = None
    expiry: StrictInt = Field(default=86400, ge=1, le=MAX_EXPIRY)
    # BTC (amount in sats) or an ISO 4217 code (amount in its minor units,
    # converted at the current rate; see lnplugin.fiat).
    currency: StrictStr | None = None
    items: list[LineItem] | None = Field(default=None, max_length=100)
    webhook: StrictStr | None = Field(default=None, max_length=2048)
    # Given (and no preimage): a hold invoice for this hash.
    payment_hash: StrictStr | None = None
    preimage: StrictStr | None = None
    # The invoice's final CLTV delta in blocks (for a hold invoice: how long
    # a payment may be held). Checked by `invoicing.check_cltv_delta`, the
    # rule NWC's make_hold_invoice follows too; the bounds here only
    # document it, since a hold invoice's minimum depends on the server's
    # --hold-cancel-margin.
    min_cltv_expiry_delta: Any = Field(
        default=None,
        json_schema_extra={
            "anyOf": [
                {
                    "type": "integer",
                    "minimum": invoicing.MIN_CLTV_DELTA,
                    "maximum": invoicing.MAX_CLTV_DELTA,
                },
                {"type": "null"},
            ],
            "description": (
                "The invoice's final CLTV delta in blocks (BOLT 11 `c`); for a hold invoice, "
                "how long a payment may be held, its `settle_deadline` being the block height "
                "when paid plus this. Default: the node's (hold invoices: 80). "
                f"{invoicing.MIN_CLTV_DELTA}-{invoicing.MAX_CLTV_DELTA}; for a hold invoice "
                "more than the server's --hold-cancel-margin (default 24)."
            ),
        },
    )

    @field_validator("description", "memo")
    @classmethod
    def _description(cls, value: str | None) -> str | None:
        if value is not None and len(value.encode("utf-8")) > MAX_DESCRIPTION_BYTES:
            raise ValueError(
                f"must be at most {MAX_DESCRIPTION_BYTES} bytes of UTF-8 (the BOLT11 limit); "
                "send description_hash for longer descriptions (not on Core Lightning)"
            )
        return value

    @field_validator("description_hash", "payment_hash")
    @classmethod
    def _hash(cls, value: str | None) -> str | None:
        if value is not None and not HEX64.fullmatch(value):
            raise ValueError("must be 64 hex characters (a SHA-256)")
        return value.lower() if value else value

    @field_validator("webhook")
    @classmethod
    def _webhook(cls, value: str | None) -> str | None:
        return value if value is None else ssrf.check_url(value)

    @field_validator("payer_pubkey")
    @classmethod
    def _pubkey(cls, value: str | None) -> str | None:
        if value is not None and not _PUBKEY.fullmatch(value):
            raise ValueError("must be a hex public key (64 or 66 hex characters)")
        return value.lower() if value else value

    @field_validator("payer_email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+", value):
            raise ValueError("must be an email address")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            size = len(json.dumps(value, separators=(",", ":")).encode("utf-8"))
            if size > MAX_METADATA_BYTES:
                raise ValueError(f"must be at most {MAX_METADATA_BYTES} bytes as JSON ({size})")
        return value

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str | None) -> str | None:
        if value is None:
            return None
        code = value.upper()
        if code != "BTC" and code not in fiat.MINOR_UNITS:
            raise ValueError("must be BTC or an ISO 4217 code lnplugin knows, such as USD or EUR")
        return code

    @property
    def fiat_currency(self) -> str | None:
        """The fiat currency the invoice is priced in, or None for BTC."""
        return self.currency if self.currency not in (None, "BTC") else None

    @property
    def items_total(self) -> int | None:
        if self.items is None:
            return None
        return sum(item.unit_price * item.quantity for item in self.items)

    @property
    def price(self) -> int | None:
        """`amount`, or the items' total when it is absent (sats or minor units)."""
        return self.amount if self.amount is not None else self.items_total

    def cross_field_errors(self) -> dict[str, str]:
        errors: dict[str, str] = {}
        total = self.items_total
        if self.amount is None and self.amount_msat is None and total is None:
            errors["amount"] = "is required (sats; 0 for any amount), or send amount_msat or items"
        if total is not None and self.amount is not None and total != self.amount:
            errors["items"] = f"add up to {total}, not the amount {self.amount}; send one of them"
        if total is not None and self.amount_msat is not None:
            errors["items"] = "cannot be combined with amount_msat; prices are in amount's unit"
        if total is not None and total > MAX_MSAT // 1000:
            errors["items"] = "add up to more than 21 million bitcoin"
        if self.fiat_currency is not None:
            if self.amount_msat is not None:
                errors["amount_msat"] = (
                    f"cannot be combined with currency {self.currency}; send amount in its "
                    "minor units"
                )
            elif not self.price:
                errors["amount"] = (
                    f"must be more than 0 {self.currency} minor units for a fiat price "
                    "(an any-amount invoice has no price)"
                )
        if (
            self.amount is not None
            and self.amount_msat is not None
            and self.amount * 1000 != self.amount_msat
        ):
            errors["amount_msat"] = "disagrees with amount; send one of them"
        if self.description is not None and self.memo is not None and self.description != self.memo:
            errors["memo"] = "disagrees with description; send one of them"
        if self.description_hash is not None and (self.description or self.memo):
            errors["description_hash"] = "cannot be combined with description or memo"
        if self.preimage is not None:
            # The node makes the preimage of a regular invoice; a hold invoice's
            # stays with the client until it settles.
            errors["preimage"] = (
                "is not accepted here; send payment_hash alone for a hold invoice and the "
                "preimage to POST /invoices/<payment_hash>/settle"
            )
        return errors

    @property
    def requested_msat(self) -> int | None:
        """The msat of a BTC-priced invoice (None: any amount). A fiat price is
        converted by the route, at the current rate."""
        msat = self.amount_msat if self.amount_msat is not None else (self.price or 0) * 1000
        return msat or None  # 0 means any amount

    @property
    def text(self) -> str | None:
        return self.description if self.description is not None else self.memo


class HoldSettle(Body):
    """POST /invoices/<payment_hash>/settle."""

    model_config = ConfigDict(extra="forbid")

    preimage: StrictStr

    @field_validator("preimage")
    @classmethod
    def _preimage(cls, value: str) -> str:
        if not HEX64.fullmatch(value):
            raise ValueError("must be 64 hex characters (32 bytes)")
        return value.lower()


class HoldCancel(Body):
    """POST /invoices/<payment_hash>/cancel: no body, or an empty object.

    A cancel cannot be undone, so a body it does not understand (not JSON,
    a field such as a reason that would be dropped) is refused with a 400
    before anything is canceled, as a settle's is."""

    model_config = ConfigDict(extra="forbid")


class NwcConnectionCreate(Body):
    """POST /nwc/connections (and `lnplugin nwc connect`)."""

    model_config = ConfigDict(extra="forbid")

    scopes: list[Literal["invoices:create", "invoices:read", "transactions:read"]] = Field(
        min_length=1, max_length=3
    )
    label: StrictStr | None = Field(default=None, max_length=MAX_LABEL)
    # The Lightning Address put in the URI (NIP-47 `lud16`): a username or
    # `username@domain` of this server; default the only one served.
    lud16: StrictStr | None = Field(default=None, min_length=1, max_length=320)

    @field_validator("label")
    @classmethod
    def _printable_label(cls, value: str | None) -> str | None:
        problem = None if value is None else label_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


class DevMine(Body):
    model_config = ConfigDict(extra="forbid")

    blocks: StrictInt = Field(default=1, ge=1, le=10_000)


class DevPay(Body):
    model_config = ConfigDict(extra="forbid")

    payment_request: StrictStr | None = None
    payment_hash: StrictStr | None = None
    amount_msat: StrictInt | None = Field(default=None, gt=0, le=MAX_MSAT)

    def cross_field_errors(self) -> dict[str, str]:
        if (self.payment_request is None) == (self.payment_hash is None):
            return {"payment_request": "send exactly one of payment_request or payment_hash"}
        if self.payment_hash is not None and not HEX64.fullmatch(self.payment_hash):
            return {"payment_hash": "must be 64 hex characters"}
        return {}


class DevKeysend(Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"amount_msat": 5000, "custom_records": {"34349334": "hi"}}]
        },
    )

    amount_msat: StrictInt = Field(gt=0, le=MAX_MSAT)
    custom_records: dict[str, StrictStr] = Field(default_factory=dict)

    @field_validator("custom_records")
    @classmethod
    def _records(cls, value: dict[str, str]) -> dict[str, str]:
        for key, record in value.items():
            # ASCII digits only, and at most 20 (2^64 has 20), before int() reads it.
            if not (key.isascii() and key.isdigit()) or len(key) > 20 or int(key) >= 2**64:
                raise ValueError(f"TLV type {key!r} must be a decimal number below 2^64")
            if int(key) < 65536:
                raise ValueError(f"TLV type {key} is below 65536 and not a custom record")
            if record.startswith("hex:"):
                try:
                    bytes.fromhex(record[4:])
                except ValueError:
                    raise ValueError(f"record {key}: hex: value is not valid hex") from None
        return value


class DecodeBody(Body):
    model_config = ConfigDict(extra="ignore")

    invoice: StrictStr


# -- Response shapes, for the OpenAPI document (`lnplugin.api.openapi`) -------------
#
# These describe what `lnplugin.alby` and the routes return; they are not used to
# build responses (that stays a dict, for speed in lists). The schemathesis test
# checks every response against them, so a drift between the two fails a test.
# `extra="allow"`: fields may be added without breaking clients.


class Error(BaseModel):
    """Every error: Alby's shape, plus `errors` naming each bad field."""

    model_config = ConfigDict(extra="forbid")

    code: int
    error: bool
    message: str
    errors: dict[str, str] | None = Field(
        default=None, description="field -> reason, for validation errors"
    )


class FiatPrice(BaseModel):
    """What a fiat-priced invoice was priced in, at which rate."""

    currency: str = Field(description="ISO 4217 code")
    amount: int = Field(description="in the currency's minor units (cents)")
    rate: str = Field(description="units of the currency per BTC, as a decimal string")
    rate_source: str = Field(description="the providers the rate is the median of")
    rate_at: str | None = Field(description="when the rate was fetched (ISO 8601 UTC)")


class Invoice(BaseModel):
    """Alby's invoice object (incoming invoices, keysends, outgoing payments).

    Every field is in every answer (`alby.invoice_json`), null when it does
    not apply, so the document marks them all `required` (a client generated
    from it would otherwise make the newer ones optional)."""

    model_config = ConfigDict(extra="allow", json_schema_serialization_defaults_required=True)

    amount: int = Field(description="sats")
    amount_msat: int
    amount_received_msat: int
    boostagram: dict[str, Any] | None
    comment: str | None
    created_at: str | None
    creation_date: int
    currency: str
    custom_records: dict[str, Any]
    description: str | None
    description_hash: str | None
    destination: str | None
    expires_at: str | None
    expiry: int | None
    fee: int
    fee_msat: int
    fiat_currency: str | None
    fiat_in_cents: int | None
    identifier: str | None
    is_keysend: bool
    keysend_message: str | None
    lightning_address: str | None = Field(
        default=None, description="the Lightning Address it was paid through, if any"
    )
    memo: str | None
    metadata: Any
    payer_email: str | None
    payer_name: str | None
    payer_pubkey: str | None
    payment_hash: str
    payment_request: str | None
    preimage: str | None
    qr_code_png: str | None = Field(
        default=None, description="public URL of the QR code (PNG); null without --public-url"
    )
    qr_code_svg: str | None = Field(
        default=None, description="public URL of the QR code (SVG); null without --public-url"
    )
    checkout_url: str | None = Field(
        default=None, description="the public checkout page; null without --public-url"
    )
    r_hash_str: str
    settled: bool
    settled_at: str | None
    state: Literal["CREATED", "ACCEPTED", "SETTLED", "EXPIRED", "CANCELED"]
    settle_deadline: int | None = Field(
        default=None, description="hold invoices: block height by which to settle or cancel"
    )
    cancel_reason: str | None = Field(default=None, description="who canceled it, and why")
    items: list[LineItem] | None = Field(default=None, description="line items, if given")
    price: FiatPrice | None = Field(default=None, description="a fiat-priced invoice's price")
    type: Literal["incoming", "outgoing"]
    value: int
    viewed_at: str | None = Field(
        default=None, description="when its checkout page was first opened (ISO 8601 UTC)"
    )


class AddressPayForm(BaseModel):
    """The checkout form of a Lightning Address (`application/x-www-form-urlencoded`)."""

    amount: str = Field(description="sats, a whole number within the address's range")
    comment: str | None = Field(default=None, description="LUD-12 comment, if taken")
    name: str | None = Field(default=None, description="LUD-18 payer name, if the address asks")


class DecodedInvoice(BaseModel):
    model_config = ConfigDict(extra="allow")

    currency: str
    network: str | None
    created_at: int
    expiry: int
    expires_at: int
    is_expired: bool
    payee: str
    payee_alias: str | None
    amount: int | None
    amount_msat: int | None
    msatoshi: int | None = Field(description="the amount in msat, under Alby's older name")
    description: str | None
    description_hash: str | None
    payment_hash: str
    payment_secret: str | None
    payment_metadata: str | None = Field(description="hex, when the invoice carries it")
    min_final_cltv_expiry: int
    features: list[Any]
    route_hints: list[list[dict[str, Any]]]
    fallbacks: list[dict[str, Any]]
    signature: str


class Delivery(BaseModel):
    model_config = ConfigDict(extra="allow")

    event_id: str
    type: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status_code: int | None
    last_error: str | None
    last_attempt_at: str | None
    next_attempt_at: str | None
    delivered_at: str | None
    created_at: str | None


class Endpoint(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    url: str
    description: str | None
    filter_types: list[str]
    created_at: str | None
    endpoint_secret: str | None = Field(default=None, description="only in the POST answer")
    deleted: bool | None = Field(default=None, description="only in the DELETE answer")


class DevPayment(BaseModel):
    model_config = ConfigDict(extra="allow")

    payment_hash: str
    state: str
    amount_received_msat: int | None
    settled_at: int | None
    is_keysend: bool


class Info(BaseModel):
    model_config = ConfigDict(extra="allow")

    version: str
    node: dict[str, Any]
    network: str
    follower: dict[str, Any]
    notice: str | None = None
    nwc: dict[str, Any] | None = Field(
        default=None, description="with --nwc-relay: each relay's state, the notification backlog"
    )
    zaps: dict[str, Any] | None = Field(
        default=None,
        description="with --zaps: the zapper pubkey, the zap receipt backlog (receipt_backlog) "
        "and the deliveries given up (receipts_failed, receipts_refused)",
    )


class Health(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: str
    version: str
    node: str
    follower: dict[str, Any] = Field(
        description="`connection` only, unless the request carries a valid token or the "
        "status key; then also cursor, head, lag, outgoing and last_error"
    )
    nwc: dict[str, Any] | None = Field(
        default=None,
        description="with --nwc-relay, and a valid token or the status key: each relay's "
        "state, the notification backlog",
    )
    zaps: dict[str, Any] | None = Field(
        default=None,
        description="with --zaps, and a valid token or the status key: the zapper pubkey, "
        "the zap receipt backlog and the deliveries given up",
    )


class NwcConnection(BaseModel):
    """A wallet connection: the app's public key, never its secret."""

    model_config = ConfigDict(extra="forbid")

    id: int
    label: str | None
    scopes: list[str]
    app_pubkey: str
    wallet_pubkey: str | None = Field(
        description="the connection's own wallet key, which its URI names; null for a "
        "connection made before keys per connection (it uses the shared key, `nwc.pubkey` "
        "in GET /health)"
    )
    lud16: str | None = Field(
        description="the Lightning Address its URI names (NIP-47 `lud16`); null for none, "
        "and for connections made before lnplugin kept it"
    )
    created_at: int
    revoked_at: int | None
    uri: str | None = Field(
        default=None, description="only when created: the connection URI, shown once"
    )


class Ticket(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ticket: str
    path: str
    expires_in: float = Field(description="seconds")
    url: str = Field(description="the path with ?ticket=, for new EventSource(url)")


# -- Lightning Addresses ----------------------------------------------------------

# LUD-06 allows up to 136,536 characters (100 KB of image), but a request body
# is at most 64 KiB (MAX_BODY_BYTES): 60,000 characters (about 44 KB of image)
# leaves room for the address's other fields, so the limit a client meets is
# this field's, named, not the body's.
MAX_IMAGE_CHARS = 60_000
_IMAGE = re.compile(r"data:image/(png|jpeg);base64,[A-Za-z0-9+/]+={0,2}")


class PayerDataOption(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mandatory: StrictBool = False


class _AddressFields(Body):
    """The settings of an address other than its username (LUD-06, 09, 12, 18)."""

    model_config = ConfigDict(extra="forbid")

    min_sendable_msat: StrictInt | None = Field(default=None, ge=1, le=MAX_MSAT)
    max_sendable_msat: StrictInt | None = Field(default=None, ge=1, le=MAX_MSAT)
    description: StrictStr | None = Field(default=None, min_length=1, max_length=1000)
    image: StrictStr | None = Field(default=None, max_length=MAX_IMAGE_CHARS + 32)
    comment_allowed: StrictInt | None = Field(default=None, ge=0, le=1000)
    payer_data: dict[str, PayerDataOption] | None = Field(
        default=None,
        description="LUD-18 payer data to ask for, by kind: name, pubkey, identifier, email "
        "or auth (a LUD-04 signature of a k1 issued by discovery, checked by the callback)",
    )
    webhook: StrictStr | None = Field(default=None, max_length=2048)
    success_message: StrictStr | None = Field(default=None, min_length=1, max_length=144)
    keysend_custom_key: StrictInt | None = Field(default=None, ge=65536, le=2**63 - 1)
    keysend_custom_value: StrictStr | None = Field(default=None, min_length=1, max_length=255)

    @field_validator("image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        if value is not None and not _IMAGE.fullmatch(value):
            raise ValueError(
                "must be a data:image/png;base64,... or data:image/jpeg;base64,... URI"
            )
        return value

    @field_validator("payer_data")
    @classmethod
    def _payer_data(
        cls, value: dict[str, PayerDataOption] | None
    ) -> dict[str, PayerDataOption] | None:
        for kind in value or {}:
            if kind not in lnurl.PAYER_DATA_KINDS:
                raise ValueError(f"unknown kind {kind!r}; use " + ", ".join(lnurl.PAYER_DATA_KINDS))
        return value

    @field_validator("webhook")
    @classmethod
    def _webhook(cls, value: str | None) -> str | None:
        return value if value is None else ssrf.check_url(value)

    def cross_field_errors(self) -> dict[str, str]:
        low, high = self.min_sendable_msat, self.max_sendable_msat
        if low is not None and high is not None and low > high:
            return {"max_sendable_msat": "must be at least min_sendable_msat"}
        return {}

    def columns(self) -> dict[str, Any]:
        """The store columns for the fields given (null clears an optional one)."""
        out: dict[str, Any] = {}
        for name in self.model_fields_set:
            value = getattr(self, name)
            if name == "payer_data":
                value = (
                    None
                    if value is None
                    else json.dumps({k: v.model_dump() for k, v in value.items()})
                )
            out["webhook_url" if name == "webhook" else name] = value
        return out


class AddressCreate(_AddressFields):
    """POST /lightning_addresses (and `lnplugin address add`)."""

    username: StrictStr

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        if not lnurl.USERNAME.fullmatch(value):
            raise ValueError("must be 1-64 characters of a-z, 0-9, '-', '_' and '.' (LUD-16)")
        if value in (".", ".."):  # a URL path segment that clients resolve away
            raise ValueError("cannot be . or ..")
        return value

    def columns(self) -> dict[str, Any]:
        """Every column of a new address, defaults filled in."""
        given = super().columns()
        return {
            "username": self.username,
            "min_sendable_msat": 1000,
            "max_sendable_msat": 100_000_000_000,
            "description": f"Payment to {self.username}",
            "comment_allowed": 255,
            "keysend_custom_key": addresses.DEFAULT_KEYSEND_KEY,
            "keysend_custom_value": self.username,
            **{k: v for k, v in given.items() if v is not None},
        }

    def cross_field_errors(self) -> dict[str, str]:
        errors = super().cross_field_errors()
        low = self.min_sendable_msat or 1000
        high = self.max_sendable_msat or 100_000_000_000
        if not errors and low > high:
            errors["max_sendable_msat"] = f"must be at least min_sendable_msat ({low})"
        return errors


class AddressUpdate(_AddressFields):
    """PATCH /lightning_addresses/<username>: only the fields given change."""

    def cross_field_errors(self) -> dict[str, str]:
        errors = super().cross_field_errors()
        for name in (
            "min_sendable_msat",
            "max_sendable_msat",
            "description",
            "comment_allowed",
            "keysend_custom_key",
            "keysend_custom_value",
        ):
            if name in self.model_fields_set and getattr(self, name) is None:
                errors[name] = "cannot be null"
        return errors


# -- Response shapes of the address and public LNURL routes (OpenAPI only) ---------


class LightningAddress(BaseModel):
    """An address as `/lightning_addresses` answers it; links null without --public-url."""

    model_config = ConfigDict(extra="allow")

    username: str
    lightning_address: str | None
    lnurl: str | None
    lnurlp_url: str | None
    keysend_url: str | None
    min_sendable_msat: int
    max_sendable_msat: int
    description: str
    image: str | None
    comment_allowed: int
    payer_data: dict[str, Any] | None
    webhook: str | None
    success_message: str | None
    keysend_custom_key: int
    keysend_custom_value: str
    created_at: int
    updated_at: int
    deleted: bool | None = Field(default=None, description="only in the DELETE answer")


class LnurlError(BaseModel):
    """LUD-06's error object, on the public LNURL routes instead of Alby's."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["ERROR"]
    reason: str


class LnurlPayRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    tag: Literal["payRequest"]
    callback: str
    minSendable: int
    maxSendable: int
    metadata: str = Field(description="JSON text of [mime type, content] pairs (LUD-06)")
    commentAllowed: int
    payerData: dict[str, dict[str, Any]] | None = Field(
        default=None,
        description="LUD-18: the payer data asked for, by kind, each with `mandatory`; "
        "`auth` also carries `k1`, a fresh single-use challenge (64 hex)",
    )
    allowsNostr: bool | None = Field(
        default=None,
        description="NIP-57: true with --zaps (addresses without mandatory payer data)",
    )
    nostrPubkey: str | None = Field(
        default=None, description="NIP-57: the key (hex) zap receipts are signed with"
    )


class LnurlInvoice(BaseModel):
    model_config = ConfigDict(extra="allow")

    pr: str
    routes: list[Any]
    verify: str = Field(description="LUD-21 verify URL")


class LnurlVerify(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: Literal["OK"]
    settled: bool
    preimage: str | None
    pr: str


class LnurlKeysend(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: Literal["OK"]
    tag: Literal["keysend"]
    pubkey: str
    customData: list[dict[str, Any]]
