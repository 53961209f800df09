"""The wallet keys NWC answers on (lnplugin/nwc/keyring.py): the shared key,
each connection's own, and the spares a new connection takes, against a
real store, with the announcements recorded instead of sent to a relay."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import nostr_sdk as ns
import pytest

from lnplugin.nwc.connections import connect
from lnplugin.nwc.keyring import REVOKED_HEARD, Keyring
from lnplugin.store import Store
from lnplugin.store import nwc as db


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "lnplugin.sqlite")
    yield store
    store.close()


def test_spares_are_announced_before_a_connection_can_take_one(store: Store) -> None:
    """So an app that sends a request the moment it has its URI is heard:
    requests are ephemeral, and one sent to a key nobody listens on is lost."""
    stored_when_announced: list[int] = []
    announced: list[str] = []

    def announce(keys: list[ns.Keys]) -> None:
        stored_when_announced.append(db.spare_count(store.conn))
        announced.extend(k.public_key().to_hex() for k in keys)

    ring = Keyring(store, announce)
    shared = ring.load().public_key().to_hex()
    spares = {pub for pub, _ in db.wallet_keys(store.conn)}  # no connection yet: all spares
    assert len(spares) == db.SPARES == db.spare_count(store.conn)
    assert stored_when_announced == [0]  # announced first, stored after
    assert set(announced) == spares | {shared} == set(ring.pubkeys())
    _, uri = connect(store, ["invoices:read"], "app", ["ws://127.0.0.1:1"])
    taken = ns.NostrWalletConnectUri.parse(uri).public_key().to_hex()
    assert taken in spares and db.spare_count(store.conn) == db.SPARES - 1
    # A new spare in its place, and the taken key again: its info event now
    # offers its connection's scopes, not all the wallet offers.
    announced_now = {k.public_key().to_hex() for k in ring.take_up()}
    [new] = announced_now - {taken}
    assert taken in announced_now and new not in spares
    assert ring.scopes(taken) == frozenset({"invoices:read"}) and ring.scopes(new) is None
    assert db.spare_count(store.conn) == db.SPARES
    assert ring.take_up() == []  # nothing changed since: one read, no write


def test_keys_of_connections_made_elsewhere_are_taken_up(store: Store) -> None:
    ring = Keyring(store, lambda keys: None)
    ring.load()
    with store.transaction() as tx:  # another process used every spare ...
        while db.take_spare(tx):
            pass
    _, uri = connect(store, ["invoices:create"], "app", ["ws://127.0.0.1:1"])
    fresh = ns.NostrWalletConnectUri.parse(uri).public_key().to_hex()
    assert ring.get(fresh) is None  # ... so this one got a fresh key
    assert fresh in [k.public_key().to_hex() for k in ring.take_up()]
    assert ring.get(fresh) is not None and db.spare_count(store.conn) == db.SPARES


def test_a_revoked_connection_keeps_its_key_so_its_app_hears_unauthorized(store: Store) -> None:
    ring = Keyring(store, lambda keys: None)
    ring.load()
    connection_id, uri = connect(store, ["invoices:read"], "app", ["ws://127.0.0.1:1"])
    with store.transaction() as tx:
        assert db.revoke(tx, connection_id)
    connect(store, ["invoices:read"], "another", ["ws://127.0.0.1:1"])
    assert ring.take_up()  # the ring is rebuilt from the store ...
    assert (
        ring.get(ns.NostrWalletConnectUri.parse(uri).public_key().to_hex()) is not None
    )  # ... with it


def test_a_revoked_connections_key_is_heard_for_a_while_then_dropped_and_never_announced(
    store: Store,
) -> None:
    """Every key ever made stayed on the relay filter, and each relay
    reconnect published an info event for each: with apps coming and going
    the REQ and that burst grew without end, until a relay turned the server
    away on every reconnect (rust-nostr's relay after ~6,000 events)."""
    now = [time.time()]
    announced: list[str] = []
    ring = Keyring(
        store, lambda keys: announced.extend(k.public_key().to_hex() for k in keys), lambda: now[0]
    )
    ring.load()
    made = [connect(store, ["invoices:read"], f"app {i}", ["ws://127.0.0.1:1"]) for i in range(3)]
    ring.take_up()
    keys = [ns.NostrWalletConnectUri.parse(uri).public_key().to_hex() for _, uri in made]
    with store.transaction() as tx:
        for connection_id, _ in made[:2]:
            assert db.revoke(tx, connection_id)
    ring.take_up()
    live = {k.public_key().to_hex() for k in ring.live()}
    assert keys[2] in live and not live & set(keys[:2])  # no info event for a revoked app
    now[0] += REVOKED_HEARD - 60
    ring.take_up()
    assert all(ring.get(k) is not None for k in keys)  # its app still hears UNAUTHORIZED
    now[0] += 120
    ring.take_up()
    assert [ring.get(k) is not None for k in keys] == [False, False, True]
    assert set(keys[:2]).isdisjoint(ring.pubkeys())  # off the relay filter
    # A server started now never announces them either.
    announced.clear()
    Keyring(store, lambda keys: announced.extend(k.public_key().to_hex() for k in keys)).load()
    assert keys[2] in announced and set(keys[:2]).isdisjoint(announced)
