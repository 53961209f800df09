"""What an LND macaroon grants, read from the file itself (no node needed).

`lnplugin doctor` warns when the macaroon lnplugin is given could spend the
node's funds (lnd's `admin.macaroon`, say), and it should say so even while
lnd is down. lnd writes the permissions into the macaroon's identifier, in
clear: the identifier is a version byte (3) and a protobuf `MacaroonId`
whose repeated `ops` field lists each entity with its actions
(docs/protocols.md#lnd-macaroon-format). Reading them needs no key; this
module only reads, it never verifies a signature (lnd does that).

Only the binary (v2) macaroon format lnd writes is parsed; anything else is
`MacaroonFormatError`, and doctor then says it could not read the file.
"""

from __future__ import annotations

from dataclasses import dataclass

# Permissions that move funds or can mint a macaroon that does (docs/protocols.md).
SPENDING: dict[str, str] = {
    "offchain:write": "can pay invoices and send over channels",
    "onchain:write": "can send on-chain funds",
    "macaroon:generate": "can bake a macaroon with any permission, admin included",
    "signer:generate": "can sign with the node's keys",
}
# Single-method permissions (`uri:/pkg.Service/Method`) that spend.
SPENDING_METHODS = frozenset(
    {
        "/lnrpc.Lightning/SendPayment",
        "/lnrpc.Lightning/SendPaymentSync",
        "/lnrpc.Lightning/SendToRoute",
        "/lnrpc.Lightning/SendToRouteSync",
        "/lnrpc.Lightning/SendCoins",
        "/lnrpc.Lightning/SendMany",
        "/lnrpc.Lightning/BakeMacaroon",
        "/routerrpc.Router/SendPaymentV2",
        "/routerrpc.Router/SendToRouteV2",
        "/walletrpc.WalletKit/SendOutputs",
        "/walletrpc.WalletKit/FundPsbt",
        "/walletrpc.WalletKit/SignPsbt",
        "/walletrpc.WalletKit/FinalizePsbt",
    }
)

# Every RPC lnplugin calls, with the permission lnd's rpcserver.go and
# invoicesrpc/invoices_server.go require for it (docs/protocols.md#lnd-permissions-per-rpc).
# A macaroon grants a method with that entity:action, or with the single-method
# permission `uri:<method>` (lnd's macaroons/service.go checks the first, then
# the second). `lnplugin doctor` checks a macaroon against this list, and a
# refusal from lnd is reported with the method's two.
RPC_PERMISSIONS: dict[str, str] = {
    "/lnrpc.Lightning/AddInvoice": "invoices:write",
    "/lnrpc.Lightning/LookupInvoice": "invoices:read",
    "/lnrpc.Lightning/ListInvoices": "invoices:read",
    "/lnrpc.Lightning/SubscribeInvoices": "invoices:read",
    "/lnrpc.Lightning/ListPayments": "offchain:read",
    "/lnrpc.Lightning/GetInfo": "info:read",
    "/invoicesrpc.Invoices/AddHoldInvoice": "invoices:write",
    "/invoicesrpc.Invoices/SettleInvoice": "invoices:write",
    "/invoicesrpc.Invoices/CancelInvoice": "invoices:write",
    "/invoicesrpc.Invoices/SubscribeSingleInvoice": "invoices:read",
    "/invoicesrpc.Invoices/LookupInvoiceV2": "invoices:write",  # doctor's probe only
}


# What lnplugin needs (docs/protocols.md#lnd-permissions-per-rpc) and the
# least-privilege bake for it.
LND_BAKE = (
    "lncli bakemacaroon --save_to=lnplugin.macaroon "
    "invoices:read invoices:write offchain:read info:read"
)
# The per-method form docs/lnd.md offers: exactly the RPCs lnplugin calls.
LND_BAKE_METHODS = "lncli bakemacaroon --save_to=lnplugin.macaroon " + " ".join(
    f"uri:{method}" for method in RPC_PERMISSIONS
)


def permits(permissions: frozenset[str], method: str) -> bool:
    """Whether a macaroon granting `permissions` may call `method` (one of
    `RPC_PERMISSIONS`), as lnd decides: its entity:action, or `uri:<method>`."""
    return RPC_PERMISSIONS[method] in permissions or f"uri:{method}" in permissions


_V2 = 2
_ID_VERSION_3 = 3
_FIELD_EOS, _FIELD_LOCATION, _FIELD_IDENTIFIER, _FIELD_VID, _FIELD_SIGNATURE = 0, 1, 2, 4, 6


class MacaroonFormatError(ValueError):
    """Not a v2 binary macaroon with an lnd (bakery v3) identifier."""


@dataclass(frozen=True, slots=True)
class Macaroon:
    location: str
    permissions: frozenset[str]  # "entity:action", e.g. "invoices:read", "uri:/lnrpc..."
    caveats: tuple[str, ...]  # first-party caveats as text, e.g. "time-before ..."

    def spending(self) -> list[str]:
        """Each permission that can move funds, with what it allows."""
        found = [f"{p} ({why})" for p, why in SPENDING.items() if p in self.permissions]
        found += sorted(
            f"{p} (calls {p[4:]})"
            for p in self.permissions
            if p.startswith("uri:") and p[4:] in SPENDING_METHODS
        )
        return found


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise MacaroonFormatError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _packets(data: bytes, pos: int) -> tuple[list[tuple[int, bytes]], int]:
    """Fields up to and including the next end-of-section marker."""
    fields: list[tuple[int, bytes]] = []
    while True:
        kind, pos = _varint(data, pos)
        if kind == _FIELD_EOS:
            return fields, pos
        length, pos = _varint(data, pos)
        if pos + length > len(data):
            raise MacaroonFormatError("field runs past the end")
        fields.append((kind, data[pos : pos + length]))
        pos += length


def _protobuf(data: bytes) -> list[tuple[int, bytes]]:
    """(field number, bytes) for each length-delimited field; varints skipped."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise MacaroonFormatError("protobuf field runs past the end")
            out.append((number, data[pos : pos + length]))
            pos += length
        else:
            raise MacaroonFormatError(f"unexpected protobuf wire type {wire}")
    return out


def _permissions(identifier: bytes) -> frozenset[str]:
    if not identifier or identifier[0] != _ID_VERSION_3:
        raise MacaroonFormatError("identifier is not an lnd (bakery v3) identifier")
    perms: set[str] = set()
    for number, op in _protobuf(identifier[1:]):
        if number != 3:  # 1 nonce, 2 storage id
            continue
        entity = ""
        actions: list[str] = []
        for field, value in _protobuf(op):
            text = value.decode("utf-8", errors="replace")
            if field == 1:
                entity = text
            elif field == 2:
                actions.append(text)
        perms.update(f"{entity}:{action}" for action in actions)
    return frozenset(perms)


def decode(raw: bytes) -> Macaroon:
    """Read a binary v2 macaroon as lnd writes it (`admin.macaroon`, `lncli
    bakemacaroon --save_to`). Raises `MacaroonFormatError`."""
    if not raw or raw[0] != _V2:
        raise MacaroonFormatError("not a binary v2 macaroon")
    header, pos = _packets(raw, 1)
    location = next((v for k, v in header if k == _FIELD_LOCATION), b"")
    identifier = next((v for k, v in header if k == _FIELD_IDENTIFIER), None)
    if identifier is None:
        raise MacaroonFormatError("no identifier")
    caveats: list[str] = []
    while True:
        section, pos = _packets(raw, pos)
        if not section:  # an empty section ends the caveats
            break
        cid = next((v for k, v in section if k == _FIELD_IDENTIFIER), b"")
        third_party = any(k == _FIELD_VID for k, _ in section)
        text = cid.decode("utf-8", errors="replace")
        caveats.append(f"third-party: {text}" if third_party else text)
    signature = _packets_tail(raw, pos)
    if len(signature) != 32:
        raise MacaroonFormatError("no 32-byte signature")
    return Macaroon(
        location=location.decode("utf-8", errors="replace"),
        permissions=_permissions(identifier),
        caveats=tuple(caveats),
    )


def _packets_tail(raw: bytes, pos: int) -> bytes:
    kind, pos = _varint(raw, pos)
    if kind != _FIELD_SIGNATURE:
        raise MacaroonFormatError("no signature field")
    length, pos = _varint(raw, pos)
    return raw[pos : pos + length]
