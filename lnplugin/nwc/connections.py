"""Making a wallet connection: shared by `lnplugin nwc connect` and the admin route.

The app's key pair is generated here, its public half stored, and its secret
half returned once inside the connection URI; nothing keeps it afterwards.

Each connection also gets its own wallet key (NIP-47: "ideally unique keys
are used for each individual connection"), so a relay cannot link the apps
of one wallet. It is a spare key when there is one: the running server
already listens on those, so an app that sends a request the moment it has
the URI is heard. Otherwise a fresh key, which the server takes up at its
next key poll, within a second (`nwc/keyring.py`).

The URI carries NIP-47's `lud16` when a Lightning Address can be named: the
one asked for, else the only one lnplugin serves. Nothing ties a connection
to one of several addresses (every address pays into the same node), so of
several none is picked unasked (`lightning_address`).
"""

from __future__ import annotations

from collections.abc import Sequence

from lnplugin.lnurl import domain_of, identifier
from lnplugin.store import Store, addresses
from lnplugin.store import nwc as db


class NoRelay(ValueError):
    pass


class NoAddress(ValueError):
    """The Lightning Address asked for (`--lud16`, `lud16`) is not served here."""


def lightning_address(
    store: Store, public_url: str | None, asked: str | None
) -> tuple[str | None, bool]:
    """`user@domain` for the connection's URI, or None; and whether several
    addresses could have been and none was asked for (the command line says
    how to pick one). `asked` is a username or a full address of this
    server; without it, the one address served, if there is exactly one.
    Raises `NoAddress`."""
    if asked is not None:
        if not public_url:
            raise NoAddress("a Lightning Address needs --public-url (LNPLUGIN_PUBLIC_URL)")
        username, at, domain = asked.partition("@")
        if at and domain.lower() != domain_of(public_url):
            raise NoAddress(f"{asked!r} is not served here (the domain is {domain_of(public_url)})")
        if addresses.by_username(store.conn, username) is None:
            raise NoAddress(f"no Lightning Address {username!r}; see `lnplugin address list`")
        return identifier(username, public_url), False
    if not public_url:
        return None, False
    names = addresses.usernames(store.conn, 2)
    if len(names) != 1:
        return None, len(names) > 1
    return identifier(names[0], public_url), False


def check(scopes: Sequence[str], relays: Sequence[str]) -> list[str]:
    """The scopes, checked, when a connection can be made with them and these
    relays; raises `UnknownScope` or `NoRelay`. Needs no store, so the command
    line refuses before it opens (or creates) one."""
    clean = db.check_scopes(list(scopes))
    if not relays:
        raise NoRelay("a connection needs a relay: give --nwc-relay (LNPLUGIN_NWC_RELAY)")
    return clean


def connect(
    store: Store,
    scopes: Sequence[str],
    label: str | None,
    relays: Sequence[str],
    lud16: str | None = None,
) -> tuple[int, str]:
    """Returns (connection id, URI); `lud16` (from `lightning_address`) goes
    in the URI, and is stored with the connection: the URI is shown once.
    Raises `UnknownScope` or `NoRelay`.

    The nostr key code is imported here: the server imports this module for
    its admin route, and nostr-sdk's bindings are the largest import of its
    start, which a server without NWC never needs."""
    import nostr_sdk as ns

    from lnplugin.nwc import protocol as p

    clean = check(scopes, relays)
    app = ns.Keys.generate()
    with store.transaction() as tx:
        service = db.take_spare(tx) or p.new_key_pair()
        connection_id = db.create(tx, app.public_key().to_hex(), clean, label, service, lud16)
    uri = p.connection_uri(service[0], list(relays), app.secret_key().to_hex(), lud16)
    return connection_id, uri
