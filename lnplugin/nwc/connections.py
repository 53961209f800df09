"""Making a wallet connection: shared by `lnplugin nwc connect` and the admin route.

The app's key pair is generated here, its public half stored, and its secret
half returned once inside the connection URI; nothing keeps it afterwards.

Each connection also gets its own wallet key (NIP-47: "ideally unique keys
are used for each individual connection"), so a relay cannot link the apps
of one wallet. It is a spare key when there is one: the running server
already listens on those, so an app that sends a request the moment it has
the URI is heard. Otherwise a fresh key, which the server takes up at its
next key poll, within a second (`nwc/keyring.py`).
"""

from __future__ import annotations

from collections.abc import Sequence

import nostr_sdk as ns

from lnplugin.nwc import protocol as p
from lnplugin.store import Store
from lnplugin.store import nwc as db


class NoRelay(ValueError):
    pass


def check(scopes: Sequence[str], relays: Sequence[str]) -> list[str]:
    """The scopes, checked, when a connection can be made with them and these
    relays; raises `UnknownScope` or `NoRelay`. Needs no store, so the command
    line refuses before it opens (or creates) one."""
    clean = db.check_scopes(list(scopes))
    if not relays:
        raise NoRelay("a connection needs a relay: give --nwc-relay (LNPLUGIN_NWC_RELAY)")
    return clean


def connect(
    store: Store, scopes: Sequence[str], label: str | None, relays: Sequence[str]
) -> tuple[int, str]:
    """Returns (connection id, URI). Raises `UnknownScope` or `NoRelay`."""
    clean = check(scopes, relays)
    app = ns.Keys.generate()
    with store.transaction() as tx:
        service = db.take_spare(tx) or p.new_key_pair()
        connection_id = db.create(tx, app.public_key().to_hex(), clean, label, service)
    uri = p.connection_uri(service[0], list(relays), app.secret_key().to_hex())
    return connection_id, uri
