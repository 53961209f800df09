"""Lightning Addresses, managed with an `admin` token: `/lightning_addresses`.

An address decides what the public LNURL routes (`api/lnurlp.py`) tell any
payer, and each one can make the node mint invoices without a token, so
only `admin` may create or change them. Errors keep Alby's shape here; only
the public routes answer in LUD-06's.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from lnplugin import lnurl
from lnplugin.api import context
from lnplugin.api.auth import require
from lnplugin.api.errors import APIError
from lnplugin.api.schemas import AddressCreate, AddressUpdate
from lnplugin.api.webhooks import guard_target
from lnplugin.store import addresses
from lnplugin.store.addresses import Address

bp = Blueprint("lightning_addresses", __name__)
EP = "/lightning_addresses"


def address_json(row: Address, public_url: str | None) -> dict[str, Any]:
    """The API object of an address; the public links are null without `--public-url`."""
    links: dict[str, Any] = {
        "lightning_address": None,
        "lnurl": None,
        "lnurlp_url": None,
        "keysend_url": None,
    }
    if public_url:
        discovery = lnurl.discovery_url(public_url, row.username)
        links = {
            "lightning_address": lnurl.identifier(row.username, public_url),
            "lnurl": lnurl.encode_lnurl(discovery),
            "lnurlp_url": discovery,
            "keysend_url": lnurl.keysend_url(public_url, row.username),
        }
    return {
        "username": row.username,
        **links,
        "min_sendable_msat": row.min_sendable_msat,
        "max_sendable_msat": row.max_sendable_msat,
        "description": row.description,
        "image": row.image,
        "comment_allowed": row.comment_allowed,
        "payer_data": row.payer_data_request,
        "webhook": row.webhook_url,
        "success_message": row.success_message,
        "keysend_custom_key": row.keysend_custom_key,
        "keysend_custom_value": row.keysend_custom_value,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def _json(row: Address) -> dict[str, Any]:
    return address_json(row, context.service().settings.public_url)


def _duplicate(exc: addresses.DuplicateAddress) -> APIError:
    reason = (
        "is taken by another address"
        if exc.field == "username"
        else "another address has this keysend_custom_key and keysend_custom_value"
    )
    return APIError(409, "Conflict", {exc.field: reason})


def _found(username: str) -> Address:
    row = addresses.by_username(context.service().store.conn, username)
    if row is None:
        raise APIError(404, f"No Lightning Address {username!r}")
    return row


@bp.post(EP)
@require("admin")
def create() -> Any:
    body = context.body_as(AddressCreate)
    if body.webhook is not None:
        guard_target(body.webhook, "webhook")
    try:
        with context.service().store.transaction() as tx:
            row = addresses.insert(tx, body.columns())
    except addresses.DuplicateAddress as exc:
        raise _duplicate(exc) from None
    return _json(row), 201


@bp.get(EP)
@require("admin")
def list_addresses() -> Any:
    return [_json(row) for row in addresses.list_all(context.service().store.conn)]


@bp.get(f"{EP}/<username>")
@require("admin")
def get(username: str) -> Any:
    return _json(_found(username))


@bp.patch(f"{EP}/<username>")
@require("admin")
def patch(username: str) -> Any:
    body = context.body_as(AddressUpdate)
    if body.webhook is not None:
        guard_target(body.webhook, "webhook")
    columns = body.columns()
    try:
        with context.service().store.transaction() as tx:
            current = addresses.by_username(tx, username)
            if current is None:
                raise APIError(404, f"No Lightning Address {username!r}")
            low = columns.get("min_sendable_msat", current.min_sendable_msat)
            high = columns.get("max_sendable_msat", current.max_sendable_msat)
            if low > high:
                raise APIError(
                    400,
                    "Invalid request",
                    {"max_sendable_msat": f"must be at least min_sendable_msat ({low})"},
                )
            row = addresses.update(tx, username, columns) if columns else current
    except addresses.DuplicateAddress as exc:
        raise _duplicate(exc) from None
    assert row is not None
    return _json(row)


@bp.delete(f"{EP}/<username>")
@require("admin")
def delete(username: str) -> Any:
    """Invoices already minted for the address keep its name (and can still be paid)."""
    with context.service().store.transaction() as tx:
        row = addresses.by_username(tx, username)
        if row is None:
            raise APIError(404, f"No Lightning Address {username!r}")
        addresses.delete(tx, username)
    return {**_json(row), "deleted": True}
