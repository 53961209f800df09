#!/usr/bin/env python3
"""Webhook and SSE benchmark against a real `lnplugin serve` process.

1. Webhook latency: for each of N settlements (default 1,000), the time from
   sending `POST /dev/pay` to the signed `invoice.incoming.settled` webhook
   arriving at a local receiver. Reports p50/p99 (target: p99 <= 100 ms).
2. API throughput: `GET /invoices/<hash>` requests/s at concurrency 8 with no
   SSE clients, then with S (default 500) idle SSE clients connected to
   `GET /events`; printed as a ratio (target >= 0.8).
3. SSE notification latency with those S clients connected: for M
   settlements, one after another, the time from sending `POST /dev/pay` to
   each client's socket having the settled event, i.e. when a reader's
   select() returned with it (one timestamp per select() call, so parsing
   500 sockets in turn is not counted). Reports p50/p99 over all (client,
   settlement) pairs, and per settlement the first client's latency (request,
   commit, hub wake-up) and the spread to the last client (the fan-out).
   The clients are raw sockets read by `--reader-procs` processes (default
   2) with selectors, not a thread per client.

Server and benchmark share the machine (2 cores here), so the figures
include the benchmark's own CPU use (conservative): e.g. the readers compete
with the server for the cores while it fans out.

    python contrib/bench/bench_webhooks.py
    python contrib/bench/bench_webhooks.py --settlements 200 --sse-clients 100
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import selectors
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, cast

import requests

_HASH = re.compile(rb'"payment_hash":"([0-9a-f]{64})"')
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; the constant is 35 there
_TIMESPEC = struct.Struct("@qq")  # struct timespec on 64-bit Linux


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(value: float) -> str:
    return f"{value * 1000:.1f} ms"


class WebhookReceiver:
    """Records when each settled webhook arrives, by payment hash."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.cond = threading.Condition()
        bench = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                now = time.perf_counter()
                event = json.loads(body)
                if event["type"] == "invoice.incoming.settled":
                    with bench.cond:
                        bench.arrived.setdefault(event["data"]["payment_hash"], now)
                        bench.cond.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hook"

    def wait(self, payment_hash: str, timeout: float = 10.0) -> float | None:
        with self.cond:
            self.cond.wait_for(lambda: payment_hash in self.arrived, timeout)
            return self.arrived.get(payment_hash)


def _read_streams(socks: list[socket.socket], out: Connection) -> None:
    """Reader process: select() over its share of the SSE sockets and send
    `(payment_hash, seen_at, read_at)` for every settled event back, one batch per
    select(). `seen_at` is the kernel's receive timestamp of the bytes
    (SO_TIMESTAMPNS, read with recvmsg), the moment they reached the socket:
    how long this reader took to be scheduled, to wake from select() or to
    get round to that socket is not counted, so the figure is the server's
    (and the loopback's), not the benchmark's own Python. The clock is
    CLOCK_REALTIME, one for every process: the sender's t0 is time.time().
    Where the kernel gives no timestamp, the time select() returned is used.
    `read_at` is that time in any case: what the benchmark measured before,
    printed beside the kernel's figure to show the reader's own share."""
    sel = selectors.DefaultSelector()
    for sock in socks:
        sel.register(sock, selectors.EVENT_READ, bytearray())
    ancillary = socket.CMSG_SPACE(_TIMESPEC.size)
    while sel.get_map():
        ready = sel.select(1.0)
        now = time.time()
        batch: list[tuple[str, float, float]] = []
        for key, _ in ready:
            seen_at = now
            try:
                ready_sock = cast(socket.socket, key.fileobj)
                chunk, anc, _flags, _addr = ready_sock.recvmsg(65536, ancillary)
                for level, kind, data in anc:
                    if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
                        sec, nsec = _TIMESPEC.unpack(data[: _TIMESPEC.size])
                        seen_at = sec + nsec / 1e9
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                sel.unregister(key.fileobj)
                continue
            buf: bytearray = key.data
            buf += chunk
            while (end := buf.find(b"\n\n")) >= 0:
                block = bytes(buf[:end])
                del buf[: end + 2]
                if b"event: invoice.incoming.settled" in block:
                    found = _HASH.search(block)
                    if found:
                        batch.append((found.group(1).decode(), seen_at, now))
        if batch:
            out.send(batch)


class SSEClients:
    """S raw SSE connections to `GET /events`, read by `procs` reader processes
    (selectors on raw sockets, no thread per client), so that the benchmark's
    own reading is not what is measured."""

    def __init__(self, host: str, port: int, token: str, count: int, procs: int) -> None:
        self.arrived: dict[str, list[float]] = {}  # kernel receive timestamps
        self.read: dict[str, list[float]] = {}  # when a reader's select() returned
        self.lock = threading.Lock()
        self.refused = 0
        self.socks: list[socket.socket] = []
        request = (
            f"GET /events HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        ).encode()
        for _ in range(count):
            sock = socket.create_connection((host, port))
            sock.sendall(request)
            head = sock.recv(4096)
            if not head.startswith(b"HTTP/1.1 200"):
                self.refused += 1
                sock.close()
                continue
            sock.setblocking(False)
            # The kernel stamps each arrival (see _read_streams).
            sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
            self.socks.append(sock)
        ctx = multiprocessing.get_context("fork")  # the children inherit the sockets
        self.procs: list[Any] = []
        pipes = []
        for i in range(procs):
            receive, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_read_streams, args=(self.socks[i::procs], send), daemon=True)
            proc.start()
            send.close()
            self.procs.append(proc)
            pipes.append(receive)
        self.thread = threading.Thread(target=self._collect, args=(pipes,), daemon=True)
        self.thread.start()

    def _collect(self, pipes: list[Connection]) -> None:
        while pipes:
            for ready in wait(pipes):
                conn = cast(Connection, ready)  # `wait` returns what it was given
                try:
                    batch = conn.recv()
                except EOFError:
                    pipes.remove(conn)
                    continue
                with self.lock:
                    for payment_hash, seen_at, read_at in batch:
                        self.arrived.setdefault(payment_hash, []).append(seen_at)
                        self.read.setdefault(payment_hash, []).append(read_at)

    def wait(self, payment_hash: str, count: int, timeout: float = 10.0) -> list[float]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                got = list(self.arrived.get(payment_hash, []))
            if len(got) >= count:
                return got
            time.sleep(0.002)
        return got

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()
            proc.join(5)
        for sock in self.socks:
            sock.close()


def start_server(data_dir: Path, port: int, extra: list[str]) -> tuple[subprocess.Popen[str], str]:
    exe = Path(sys.executable).parent / "lnplugin"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "lnplugin"]
    env = {
        **os.environ,
        "LNPLUGIN_WEBHOOK_ALLOW": "127.0.0.0/8",
        "LNPLUGIN_LOG_LEVEL": "warning",
        "LNPLUGIN_TOKEN_RATE_LIMIT": "1000000000/minute",  # counted, never refused
    }
    proc = subprocess.Popen(
        [*cmd, "serve", "--data-dir", str(data_dir), "--port", str(port), *extra],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    lines = [proc.stdout.readline().strip() for _ in range(3)]
    return proc, lines[-1]


def throughput(base: str, token: str, payment_hash: str, seconds: float, workers: int) -> float:
    done = [0] * workers
    stop = time.perf_counter() + seconds

    def run(i: int) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        while time.perf_counter() < stop:
            reply = session.get(f"{base}/invoices/{payment_hash}", timeout=10)
            assert reply.status_code == 200
            done[i] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settlements", type=int, default=1000, help="webhook settlements")
    parser.add_argument("--sse-clients", type=int, default=500, help="idle SSE clients")
    parser.add_argument("--sse-settlements", type=int, default=100, help="settlements with SSE")
    parser.add_argument("--seconds", type=float, default=5.0, help="each throughput run")
    parser.add_argument("--concurrency", type=int, default=8, help="throughput client threads")
    parser.add_argument(
        "--reader-procs", type=int, default=2, help="processes reading the SSE clients"
    )
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="lnplugin-bench-wh-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc, token = start_server(data_dir, port, [])
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {token}"
    try:
        receiver = WebhookReceiver()
        reply = api.post(
            f"{base}/webhook_endpoints",
            json={"url": receiver.url, "filter_types": ["invoice.incoming.settled"]},
        )
        assert reply.status_code == 201, reply.text

        def invoice() -> str:
            made = api.post(f"{base}/invoices", json={"amount": 1})
            assert made.status_code == 201, made.text
            return str(made.json()["payment_hash"])

        # 1. dev pay -> webhook received
        latencies: list[float] = []
        missing = 0
        for _ in range(args.settlements):
            payment_hash = invoice()
            t0 = time.perf_counter()
            paid = api.post(f"{base}/dev/pay", json={"payment_hash": payment_hash})
            assert paid.status_code == 200, paid.text
            arrived = receiver.wait(payment_hash)
            if arrived is None:
                missing += 1
            else:
                latencies.append(arrived - t0)
        print(f"webhook: {len(latencies)} settlements, {missing} missing")
        print(
            f"  dev pay -> webhook received: p50 {ms(pct(latencies, 0.5))}, "
            f"p99 {ms(pct(latencies, 0.99))}, max {ms(max(latencies))} (target p99 <= 100 ms)"
        )

        # 2. throughput without / with idle SSE clients
        target = invoice()
        base_rps = throughput(base, token, target, args.seconds, args.concurrency)
        clients = SSEClients("127.0.0.1", port, token, args.sse_clients, args.reader_procs)
        print(f"sse: {len(clients.socks)} clients connected, {clients.refused} refused")
        with_rps = throughput(base, token, target, args.seconds, args.concurrency)
        print(
            f"GET /invoices/<hash>: {base_rps:.0f} req/s without SSE clients, "
            f"{with_rps:.0f} req/s with {len(clients.socks)}: ratio {with_rps / base_rps:.2f} "
            "(target >= 0.8)"
        )

        # 3. notification latency to every connected client
        sse_lat: list[float] = []
        first: list[float] = []
        spread: list[float] = []
        short = 0
        for _ in range(args.sse_settlements):
            payment_hash = invoice()
            t0 = time.time()  # the readers' clock: the kernel's receive timestamps
            api.post(f"{base}/dev/pay", json={"payment_hash": payment_hash})
            got = clients.wait(payment_hash, len(clients.socks))
            short += len(clients.socks) - len(got)
            sse_lat.extend(t - t0 for t in got)
            if got:
                first.append(min(got) - t0)
                spread.append(max(got) - min(got))
        print(
            f"sse notification ({args.sse_settlements} settlements x {len(clients.socks)} "
            f"clients, {short} missing): p50 {ms(pct(sse_lat, 0.5))}, "
            f"p99 {ms(pct(sse_lat, 0.99))} (target p99 <= 100 ms)"
        )
        print(
            f"  per settlement: first client p50 {ms(pct(first, 0.5))}, "
            f"p99 {ms(pct(first, 0.99))}; first -> last client p50 {ms(pct(spread, 0.5))}, "
            f"p99 {ms(pct(spread, 0.99))} ({args.reader_procs} reader processes)"
        )
        clients.close()
    finally:
        proc.terminate()
        proc.wait(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
