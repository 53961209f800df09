"""The wallet keys Nostr Wallet Connect answers on, and the spares among them.

NIP-47: "ideally unique keys are used for each individual connection". A
relay sees which keys talk to which, so with one wallet key for every
connection it could tell that two apps belong to one wallet. So each
connection made since store migration 16 has its own wallet key; those made
before keep the shared key their URI names.

Requests are ephemeral: one sent to a key nobody subscribes to yet is gone,
not queued. So the ring also holds `store.nwc.SPARES` spare keys, already
subscribed to and announced (info event published) before they are stored,
and a new connection takes one (`nwc/connections.py`): its app can send a
request the moment the URI is printed. A connection made by another process
past the spares has a fresh key, taken up at the next `take_up`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import nostr_sdk as ns

from lnplugin.nwc import protocol as p
from lnplugin.store import Store
from lnplugin.store import nwc as db


class Keyring:
    """Every wallet key answered on, by public key hex: the shared one, each
    connection's own (revoked ones too, so their apps hear `UNAUTHORIZED`),
    the spares. The dict is replaced whole, never changed in place, so the
    relay, request and notification threads read it without a lock."""

    def __init__(self, store: Store, announce: Callable[[list[ns.Keys]], None]) -> None:
        self.store = store
        # Called with keys new to the ring, before spares among them are
        # stored: subscribe to them and publish their info events.
        self._announce = announce
        self.shared: ns.Keys | None = None
        self._ring: dict[str, ns.Keys] = {}
        self._seen: tuple[int, int] | None = None
        self._lock = threading.Lock()

    def load(self) -> ns.Keys:
        """The shared key (made on first use), with every other key taken up."""
        if self.shared is None:
            with self.store.transaction() as tx:
                self.shared = p.keys_from_hex(db.service_secret(tx))
            self.take_up()
        return self.shared

    def get(self, pubkey: str) -> ns.Keys | None:
        return self._ring.get(pubkey)

    def pubkeys(self) -> list[str]:
        return list(self._ring)

    def all(self) -> list[ns.Keys]:
        return list(self._ring.values())

    def take_up(self) -> list[ns.Keys]:
        """Take up keys made since the last look (one cheap read when none
        were) and top the spares up to `db.SPARES`; returns the new keys."""
        shared = self.shared
        assert shared is not None, "load() first"
        with self._lock:
            conn = self.store.conn
            made, spare = db.keys_version(conn)
            if (made, spare) == self._seen:
                return []
            ring = {shared.public_key().to_hex(): shared}
            for pubkey, secret in db.wallet_keys(conn):
                ring[pubkey] = self._ring.get(pubkey) or p.keys_from_hex(secret)
            spares = [p.new_key_pair() for _ in range(max(0, db.SPARES - spare))]
            for pubkey, secret in spares:
                ring[pubkey] = p.keys_from_hex(secret)
            new = [keys for pubkey, keys in ring.items() if pubkey not in self._ring]
            self._ring = ring
            if new:
                self._announce(new)
            if spares:
                with self.store.transaction(wake=False) as tx:  # read by no waiter
                    db.add_spares(tx, spares)
            # What the store holds now, unless another process made a
            # connection meanwhile (then the next look takes it up).
            self._seen = (made, spare + len(spares))
        return new
