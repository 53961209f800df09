#!/usr/bin/env python3
"""The floor under an NWC `make_invoice`, for bench_nwc.py: a wallet service
that does only what NIP-47 itself asks of one, and nothing lnplugin adds.

It subscribes to requests for its key on the relay, and answers each: parse
and verify the event, decrypt it (NIP-44), encrypt a fixed `make_invoice`
result and sign the response with nostr-sdk, publish. No store, no
exactly-once bookkeeping, no node, one thread. Its sockets ACK at once, as
lnplugin's do (see lnplugin/nwc/relay.py).

    python contrib/bench/nwc_echo.py ws://127.0.0.1:PORT SECRET_HEX

With `--no-work CLIENT_PUBKEY_HEX COUNT` it is the floor under that floor:
a peer that does no work at all. It signs COUNT kind-21113 answers for the
client before it says `ready`, and answers each kind-21112 event it
receives with the next of them, unread. What is left is the relay carrying
the request there and the answer back, and a Python websocket peer reading
one frame and writing one: what any service answering through this relay
costs at the least.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
from collections.abc import Iterator

import nostr_sdk as ns
from websockets.sync.client import ClientConnection, connect

RESULT = {
    "type": "incoming",
    "state": "pending",
    "invoice": "lnbcrt10n1echo",
    "payment_hash": "00" * 32,
    "amount": 1000,
    "created_at": 0,
}


@contextlib.contextmanager
def subscribed(url: str, keys: ns.Keys, kind: int) -> Iterator[ClientConnection]:
    """A socket to the relay (Nagle off) subscribed to `kind` events for
    `keys`, once `ready` is said."""
    me = keys.public_key().to_hex()
    with connect(url, max_size=2**22) as ws:
        ws.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ws.send(json.dumps(["REQ", "in", {"kinds": [kind], "#p": [me], "limit": 0}]))
        print("ready", flush=True)
        yield ws


def main() -> None:
    url, secret = sys.argv[1], sys.argv[2]
    keys = ns.Keys(ns.SecretKey.parse(secret))
    if sys.argv[3:4] == ["--no-work"]:
        no_work(url, keys, sys.argv[4], int(sys.argv[5]))
        return
    with subscribed(url, keys, 23194) as ws:
        sock = ws.socket
        for raw in ws:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            msg = json.loads(raw)
            if msg[0] != "EVENT":
                continue
            event = ns.Event.from_json(json.dumps(msg[2]))
            if not event.verify():
                continue
            app = event.author()
            json.loads(keys.nip44_decrypt(app, event.content()))
            body = json.dumps({"result_type": "make_invoice", "error": None, "result": RESULT})
            tags = [
                ns.Tag.parse(["p", app.to_hex()]),
                ns.Tag.parse(["e", event.id().to_hex()]),
                ns.Tag.parse(["encryption", "nip44_v2"]),
            ]
            builder = ns.EventBuilder(ns.Kind(23195), keys.nip44_encrypt(app, body)).tags(tags)
            answer = keys.sign_event(builder.finalize_unsigned(keys.public_key()))
            ws.send(f'["EVENT",{answer.as_json()}]')


def no_work(url: str, keys: ns.Keys, client: str, count: int) -> None:
    """Answer each request with a pre-signed event, without reading it."""
    tag = ns.Tag.parse(["p", client])
    answers = [
        '["EVENT",'
        + keys.sign_event(
            ns.EventBuilder(ns.Kind(21113), f"pong {i}")
            .tags([tag])
            .finalize_unsigned(keys.public_key())
        ).as_json()
        + "]"
        for i in range(count)
    ]
    with subscribed(url, keys, 21112) as ws:
        sock = ws.socket
        sent = 0
        for raw in ws:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            if sent < count and isinstance(raw, str) and raw.startswith('["EVENT"'):
                ws.send(answers[sent])
                sent += 1


if __name__ == "__main__":
    main()
