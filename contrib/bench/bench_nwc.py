#!/usr/bin/env python3
"""Nostr Wallet Connect benchmark: a real relay process (rust-nostr's local
relay, `lnplugin_sim.nostr_relay`), a real `lnplugin serve --nwc-relay`, and
a client on raw websockets that signs and encrypts with nostr-sdk. Two results, each in one run:

- make_invoice round trip (request published → response received) p99 ÷ a
  bare publish-and-receive round trip through the same relay (target ≤ 2).
  Rounds alternate between the two, so other load on the host hits both;
- settlement (`POST /dev/pay` answered) → `payment_received` at the client,
  p50/p99 with `--connections` connections subscribed (target p99 ≤ 100 ms
  with 100). Every connection gets each payment's notification: printed
  are the time to the first connection's and to the last one's.

    python contrib/bench/bench_nwc.py
    python contrib/bench/bench_nwc.py --requests 100 --payments 20 --connections 100
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import nostr_sdk as ns
import requests
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from lnplugin.nwc.connections import connect as nwc_connect  # noqa: E402
from lnplugin.store import Store, tokens  # noqa: E402
from tests.nwc_relay import Relay, free_port  # noqa: E402

WARMUP = 3  # the first round trips of each round and side are not counted


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def sign(keys: ns.Keys, kind: int, content: str, tags: list[list[str]]) -> str:
    builder = ns.EventBuilder(ns.Kind(kind), content).tags([ns.Tag.parse(t) for t in tags])
    return keys.sign_event(builder.finalize_unsigned(keys.public_key())).as_json()


def ack_now(sock: socket.socket) -> None:
    """As lnplugin does on its relay sockets (lnplugin/nwc/relay.py): ACK at
    once what arrived, so the relay's next small write is not held by Nagle
    until our delayed ACK."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


class Client:
    """Two websockets to the relay, with Nagle off on both: one subscribed to
    events tagged for `pubkeys`, one that publishes. Publishing and receiving
    on one socket would time the relay's own write coalescing instead (it
    sends the `OK` and then, moments later, the event on the same socket,
    and without TCP_NODELAY on its side the second write waits up to 40 ms
    for the first one's delayed ACK); an app reading a notification it did
    not just publish for does not meet that."""

    def __init__(self, url: str, kinds: list[int], pubkeys: list[str]) -> None:
        self.ws = connect(url, max_size=2**22).__enter__()
        self.out = connect(url, max_size=2**22).__enter__()
        for ws in (self.ws, self.out):
            ws.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.arrived: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        self.last: dict[str, Any] = {}
        self.ws.send(json.dumps(["REQ", "b", {"kinds": kinds, "#p": pubkeys}]))
        while json.loads(self.ws.recv())[0] != "EOSE":
            pass
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:  # the publisher's OKs
        try:
            for _ in self.out:
                ack_now(self.out.socket)
        except Exception:
            return

    def _read(self) -> None:
        try:
            for raw in self.ws:
                now = time.perf_counter()
                ack_now(self.ws.socket)
                msg = json.loads(raw)
                if msg[0] == "EVENT":
                    self.arrived.put((now, msg[2]))
        except Exception:
            return

    def send(self, event_json: str) -> float:
        start = time.perf_counter()
        self.out.send(f'["EVENT",{event_json}]')
        return start

    def wait(self, match: Any, timeout: float = 30.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                at, event = self.arrived.get(timeout=0.5)
            except queue.Empty:
                continue
            if match(event):
                self.last = event
                return at
        raise TimeoutError("no matching event")


def start_server(data: Path, relay_url: str) -> tuple[subprocess.Popen[str], str, str]:
    store = Store(data / "lnplugin.sqlite")
    with store.transaction() as tx:
        _, token = tokens.create(tx, ["admin"], "bench")
    store.close()
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lnplugin",
            "serve",
            "--data-dir",
            str(data),
            "--port",
            str(port),
            "--nwc-relay",
            relay_url,
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        # Every request is timed, so none may be refused by a rate limit.
        env={
            **os.environ,
            "LNPLUGIN_LOG_LEVEL": "warning",
            "LNPLUGIN_NWC_RATE_LIMIT": "1000000/second",
            "LNPLUGIN_TOKEN_RATE_LIMIT": "1000000/minute",
        },
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            # The operator's /health (with a token) has the relays' state.
            state = requests.get(f"{url}/health", headers=_auth(token), timeout=1).json()
            if state["nwc"]["relays"][0]["state"] == "connected":
                return proc, url, token
        except (requests.RequestException, KeyError, ValueError):
            pass
        time.sleep(0.1)
    proc.terminate()  # not left running after the script gives up
    proc.wait(timeout=20)
    raise SystemExit("lnplugin did not start")


def request(client: Client, app: ns.Keys, service: ns.PublicKey, amount: int) -> float:
    """One make_invoice from `app` to `service`: seconds to its answer, which
    must carry an invoice."""
    body = json.dumps({"method": "make_invoice", "params": {"amount": amount, "description": "b"}})
    event = sign(
        app,
        23194,
        app.nip44_encrypt(service, body),
        [["p", service.to_hex()], ["encryption", "nip44_v2"]],
    )
    eid = json.loads(event)["id"]
    start = client.send(event)
    took = client.wait(lambda e: e["kind"] == 23195 and ["e", eid] in e["tags"]) - start
    answer = json.loads(app.nip44_decrypt(service, client.last["content"]))
    if answer.get("error") or "invoice" not in (answer.get("result") or {}):
        raise SystemExit(f"make_invoice was not answered with an invoice: {answer}")
    return took


def start_echo(url: str, keys: ns.Keys, *mode: str) -> subprocess.Popen[str]:
    """`nwc_echo.py` on the relay as `keys`, once it says it is ready."""
    proc = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("nwc_echo.py")),
            url,
            keys.secret_key().to_hex(),
            *mode,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def round_trips(relay: Relay, data: Path, n: int, rounds: int) -> None:
    uri = ns.NostrWalletConnectUri.parse(
        nwc_connect(Store(data / "lnplugin.sqlite"), ["invoices:create"], "bench", [relay.url])[1]
    )
    app, service = ns.Keys(uri.secret()), uri.public_key()
    me = app.public_key().to_hex()
    client = Client(relay.url, [23195, 21111, 21113], [me])
    echo_keys, idle_keys = ns.Keys.generate(), ns.Keys.generate()
    echo_proc = start_echo(relay.url, echo_keys)
    idle_proc = start_echo(relay.url, idle_keys, "--no-work", me, str(n * rounds))
    idle = idle_keys.public_key().to_hex()
    bare: list[float] = []
    nwc: list[float] = []
    echo: list[float] = []
    relayed: list[float] = []
    for _ in range(rounds):
        for i in range(n):  # the floor: the same request to the minimal service
            took = request(client, app, echo_keys.public_key(), 1000 + i)
            if i >= WARMUP:
                echo.append(took)
        for i in range(n):  # under it: a request answered by a peer that does no work
            event = sign(app, 21112, f"ping {i} {time.time_ns()}", [["p", idle]])
            start = client.send(event)
            took = client.wait(lambda e: e["kind"] == 21113 and e["pubkey"] == idle) - start
            if i >= WARMUP:
                relayed.append(took)
        for i in range(n):  # bare: publish an event tagged to ourselves and receive it
            event = sign(app, 21111, f"ping {i} {time.time_ns()}", [["p", me]])
            eid = json.loads(event)["id"]
            start = client.send(event)
            took = client.wait(lambda e, eid=eid: e["id"] == eid) - start
            if i >= WARMUP:
                bare.append(took)
        for i in range(n):
            took = request(client, app, service, 1000 + i)
            if i >= WARMUP:
                nwc.append(took)
    echo_proc.kill()
    idle_proc.kill()
    ratio = p99(nwc) / p99(bare)
    print(
        f"bare publish->receive: p50 {statistics.median(bare) * 1000:.2f} ms, "
        f"p99 {p99(bare) * 1000:.2f} ms ({len(bare)} events)"
    )
    print(
        f"make_invoice round trip: p50 {statistics.median(nwc) * 1000:.2f} ms, "
        f"p99 {p99(nwc) * 1000:.2f} ms ({len(nwc)} requests)"
    )
    print(f"make_invoice p99 / bare p99 = {ratio:.2f}  (target <= 2)")
    print(f"make_invoice p50 / bare p50 = {statistics.median(nwc) / statistics.median(bare):.2f}")
    print(
        f"floor, a service doing only NIP-47's own work (nwc_echo.py): p50 "
        f"{statistics.median(echo) * 1000:.2f} ms, p99 {p99(echo) * 1000:.2f} ms; its p99 / bare "
        f"p99 = {p99(echo) / p99(bare):.2f}; make_invoice p99 / floor p99 = "
        f"{p99(nwc) / p99(echo):.2f}, p50 / floor p50 = "
        f"{statistics.median(nwc) / statistics.median(echo):.2f}"
    )
    print(
        f"request answered by a peer that does no work (pre-signed answers; the relay both "
        f"ways): p50 {statistics.median(relayed) * 1000:.2f} ms, p99 {p99(relayed) * 1000:.2f} "
        f"ms; its p99 / bare p99 = {p99(relayed) / p99(bare):.2f} (no service answering through "
        f"this relay can do better); make_invoice p99 / it = {p99(nwc) / p99(relayed):.2f}, "
        f"floor p99 / it = {p99(echo) / p99(relayed):.2f}"
    )
    print(
        f"samples over 10 ms (host noise): bare {sum(t > 0.01 for t in bare)}, "
        f"make_invoice {sum(t > 0.01 for t in nwc)}"
    )


def settle_and_listen(
    client: Client, url: str, token: str, conns: int, n: int
) -> tuple[list[float], list[float]]:
    """`n` payments; for each, the time to the first and to the last of the
    `conns` connections' kind 23197 notification."""
    first: list[float] = []
    last: list[float] = []
    session = requests.Session()
    auth = {"Authorization": f"Bearer {token}"}
    for _ in range(n):
        created = session.post(
            f"{url}/invoices", json={"amount": 1, "description": "n"}, headers=auth
        )
        assert created.status_code == 201, created.text
        made = created.json()
        paid = session.post(
            f"{url}/dev/pay", json={"payment_hash": made["payment_hash"]}, headers=auth
        )
        assert paid.status_code == 200, paid.text
        end = time.perf_counter()
        seen: set[str] = set()
        while len(seen) < conns:  # one 23197 per connection for this payment
            at, event = client.arrived.get(timeout=30)
            p_tag = next(t[1] for t in event["tags"] if t[0] == "p")
            if not seen:
                first.append(at - end)
            seen.add(p_tag)
        last.append(at - end)
    return first, last


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def connects(url: str, token: str) -> int:
    """How often lnplugin has connected to the relay: a rise is a drop."""
    health = requests.get(f"{url}/health", headers=_auth(token), timeout=5).json()
    return int(health["nwc"]["relays"][0]["connects"])


def wait_for_info_events(url: str, wallet_keys: list[str], timeout: float = 60.0) -> None:
    """Until the relay has the info event of every one of `wallet_keys`: the
    server publishes it once it subscribes to the key."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connect(url, max_size=2**22) as ws:
            ws.send(json.dumps(["REQ", "i", {"kinds": [13194], "authors": wallet_keys}]))
            seen = set()
            while (msg := json.loads(ws.recv(timeout=timeout)))[0] != "EOSE":
                if msg[0] == "EVENT":
                    seen.add(msg[2]["pubkey"])
        if seen >= set(wallet_keys):
            return
        time.sleep(0.2)
    raise SystemExit(f"the server did not publish info events for {len(wallet_keys)} keys")


def report(label: str, first: list[float], last: list[float], drops: int) -> None:
    print(
        f"settlement -> payment_received, {label}: "
        f"first p50 {statistics.median(first) * 1000:.1f} ms p99 {p99(first) * 1000:.1f} ms; "
        f"last p50 {statistics.median(last) * 1000:.1f} ms p99 {p99(last) * 1000:.1f} ms "
        f"(target: last p99 <= 100 ms); the relay dropped lnplugin {drops} times meanwhile"
    )


def notifications(relay: Relay, data: Path, url: str, token: str, conns: int, n: int) -> None:
    store = Store(data / "lnplugin.sqlite")
    apps, wallets = [], []  # each app's keys, and its connection's own wallet key
    for i in range(conns):
        made = nwc_connect(store, ["invoices:read", "invoices:create"], f"app {i}", [relay.url])
        uri = ns.NostrWalletConnectUri.parse(made[1])
        apps.append(ns.Keys(uri.secret()))
        wallets.append(uri.public_key())
    keys = [a.public_key().to_hex() for a in apps]
    # Made here at once, most connections have fresh wallet keys (the server
    # keeps only a few spare ones): time from when the server listens on all.
    wait_for_info_events(relay.url, [w.to_hex() for w in wallets])
    store.close()
    client = Client(relay.url, [23197], keys)
    # Each payment is published to every connection twice (NIP-44 and
    # NIP-04), as NIP-47 asks of a wallet offering both; the client listens
    # to the NIP-44 kind, as an app that reads the info event does.
    before = connects(url, token)
    first, last = settle_and_listen(client, url, token, conns, n)
    drops = connects(url, token) - before
    report(f"{conns} connections, 2 events each, {n} payments", first, last, drops)
    # Baseline in the same run: the relay alone passing one event per
    # connection from one publisher to the same subscriber.
    burst: list[float] = []
    for _ in range(n):
        events = [
            sign(apps[0], 23197, f"burst {i} {time.time_ns()}", [["p", keys[i]]])
            for i in range(conns)
        ]
        start = time.perf_counter()
        for event in events:
            client.out.send(f'["EVENT",{event}]')
        for _ in events:
            at, _event = client.arrived.get(timeout=30)
        burst.append(at - start)
    print(
        f"relay alone, {conns} events published at once: all received "
        f"p50 {statistics.median(burst) * 1000:.1f} ms p99 {p99(burst) * 1000:.1f} ms"
    )
    print(f"last payment_received p99 / relay-alone p99 = {p99(last) / p99(burst):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100, help="per round and side")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--payments", type=int, default=20)
    parser.add_argument("--connections", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-nwc-", dir="/tmp") as tmp:
        relay = Relay(Path(tmp) / "relay").start()
        try:
            proc, url, token = start_server(Path(tmp) / "data", relay.url)
        except BaseException:
            relay.kill()
            raise
        try:
            round_trips(relay, Path(tmp) / "data", args.requests, args.rounds)
            notifications(relay, Path(tmp) / "data", url, token, args.connections, args.payments)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
            relay.kill()


if __name__ == "__main__":
    main()
