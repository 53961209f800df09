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

A revoked connection's key is listened on for `REVOKED_HEARD` more, so its
app hears `UNAUTHORIZED` rather than nothing, and then dropped; and only
the keys of live connections (with the shared key and the spares) are
announced. Before, every key ever made stayed on the relay filter and had
its info event published again on every relay reconnect: a server whose
apps came and went grew its REQ by 64 characters a connection and sent
one event per connection ever made each time a relay blinked, until a
relay's message or event budget turned it away on every reconnect.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

import nostr_sdk as ns

from lnplugin.nwc import protocol as p
from lnplugin.store import Store
from lnplugin.store import nwc as db

REVOKED_HEARD = 7 * 86400  # seconds a revoked connection's key is still listened on


class Keyring:
    """Every wallet key answered on, by public key hex: the shared one, each
    connection's own (revoked ones for `REVOKED_HEARD`, so their apps hear
    `UNAUTHORIZED`), the spares. The dicts are replaced whole, never changed
    in place, so the relay, request and notification threads read them
    without a lock."""

    def __init__(
        self,
        store: Store,
        announce: Callable[[list[ns.Keys]], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        # Called with live keys new to the ring, before spares among them are
        # stored: subscribe to them and publish their info events.
        self._announce = announce
        self._clock = clock
        self.shared: ns.Keys | None = None
        self._ring: dict[str, ns.Keys] = {}
        self._live: dict[str, ns.Keys] = {}  # the ring less revoked connections' keys
        # The scopes of each connection's own key, which its info event offers.
        self._scopes: dict[str, frozenset[str]] = {}
        self._seen: tuple[int, int, int] | None = None
        self._drop_at = math.inf  # when the next revoked key leaves the ring
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

    def scopes(self, pubkey: str) -> frozenset[str] | None:
        """The scopes of the connection whose wallet key this is; None for a
        spare or the shared key, which offer all the wallet does."""
        return self._scopes.get(pubkey)

    def live(self) -> list[ns.Keys]:
        """The keys whose info events are published: all but revoked connections'."""
        return list(self._live.values())

    def take_up(self) -> list[ns.Keys]:
        """Take up keys made since the last look (one cheap read when none
        were) and top the spares up to `db.SPARES`; returns the keys
        announced: new ones, and spares a connection took since (their info
        event now offers that connection's scopes)."""
        shared = self.shared
        assert shared is not None, "load() first"
        with self._lock:
            conn = self.store.conn
            made, revoked, spare = db.keys_version(conn)
            now = self._clock()
            if (made, revoked, spare) == self._seen and now < self._drop_at:
                return []
            since = int(now) - REVOKED_HEARD
            ring = {shared.public_key().to_hex(): shared}
            for pubkey, secret in db.wallet_keys(conn, revoked_since=since):
                ring[pubkey] = self._ring.get(pubkey) or p.keys_from_hex(secret)
            spares = [p.new_key_pair() for _ in range(max(0, db.SPARES - spare))]
            for pubkey, secret in spares:
                ring[pubkey] = p.keys_from_hex(secret)
            gone = db.revoked_keys(conn, since)
            live = {pubkey: keys for pubkey, keys in ring.items() if pubkey not in gone}
            scopes = db.key_scopes(conn)
            # New keys, and spares a connection took since: their info event
            # now offers that connection's methods.
            new = [
                keys
                for pubkey, keys in live.items()
                if pubkey not in self._live or scopes.get(pubkey) != self._scopes.get(pubkey)
            ]
            self._ring, self._live, self._scopes = ring, live, scopes
            self._drop_at = min(gone.values(), default=math.inf) + REVOKED_HEARD
            if new:
                self._announce(new)
            if spares:
                with self.store.transaction(wake=False) as tx:  # read by no waiter
                    db.add_spares(tx, spares)
            # What the store holds now, unless another process made a
            # connection meanwhile (then the next look takes it up).
            self._seen = (made, revoked, spare + len(spares))
        return new
