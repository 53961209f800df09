"""Making a wallet connection: shared by `lnplugin nwc connect` and the admin route.

The app's key pair is generated here, its public half stored, and its secret
half returned once inside the connection URI; nothing keeps it afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence

import nostr_sdk as ns

from lnplugin.nwc import protocol as p
from lnplugin.store import Store
from lnplugin.store import nwc as db


class NoRelay(ValueError):
    pass


def connect(
    store: Store, scopes: Sequence[str], label: str | None, relays: Sequence[str]
) -> tuple[int, str]:
    """Returns (connection id, URI). Raises `UnknownScope` or `NoRelay`."""
    clean = db.check_scopes(list(scopes))
    if not relays:
        raise NoRelay("a connection needs a relay: give --nwc-relay (LNPLUGIN_NWC_RELAY)")
    app = ns.Keys.generate()
    with store.transaction() as tx:
        service = p.keys_from_hex(db.service_secret(tx))
        connection_id = db.create(tx, app.public_key().to_hex(), clean, label)
    uri = p.connection_uri(service.public_key().to_hex(), list(relays), app.secret_key().to_hex())
    return connection_id, uri
