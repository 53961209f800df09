#!/usr/bin/env python3
"""The floor under an NWC `make_invoice`, for bench_nwc.py: a wallet service
that does only what NIP-47 itself asks of one, and nothing lnplugin adds.

It subscribes to requests for its key on the relay, and answers each: parse
and verify the event, decrypt it (NIP-44), encrypt a fixed `make_invoice`
result and sign the response with nostr-sdk, publish. No store, no
exactly-once bookkeeping, no node, one thread. Its sockets ACK at once, as
lnplugin's do (see lnplugin/nwc/relay.py).

    python contrib/bench/nwc_echo.py ws://127.0.0.1:PORT SECRET_HEX
"""

from __future__ import annotations

import json
import socket
import sys

import nostr_sdk as ns
from websockets.sync.client import connect

RESULT = {
    "type": "incoming",
    "state": "pending",
    "invoice": "lnbcrt10n1echo",
    "payment_hash": "00" * 32,
    "amount": 1000,
    "created_at": 0,
}


def main() -> None:
    url, secret = sys.argv[1], sys.argv[2]
    keys = ns.Keys(ns.SecretKey.parse(secret))
    me = keys.public_key().to_hex()
    with connect(url, max_size=2**22) as ws:
        sock = ws.socket
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ws.send(json.dumps(["REQ", "echo", {"kinds": [23194], "#p": [me], "limit": 0}]))
        print("ready", flush=True)
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


if __name__ == "__main__":
    main()
