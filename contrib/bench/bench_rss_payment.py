"""Benchmark the rss::payment worker's outbox scan against the webhook fan-out's.

The rss::payment worker is one more reader of the outbox: every settled
event passes through it, and it must not fall behind the webhook fan-out
during a bulk catch-up (a node reconnecting with a backlog). One store of
--count settled invoices with their events (1 % of them boosts whose comment
says `rss::payment::boost <url> ...`) is made in a temporary directory; then,
best of --repeat passes each, from cursor 0 to the end of the outbox:
  (a) baseline: the webhook fan-out (`store.webhooks.fan_out`) with one
      endpoint subscribed to settlements, writing a delivery row per event
      (a bare batched read of the outbox is printed too, as the floor);
  (b) the rss::payment worker's scheduling (`RssPaymentWorker.schedule`),
      writing a fetch row per boost. No URL is fetched.
It prints events/s for each and (b)/(a), with the target: at most 1.0, the
scan costs no more than the fan-out it runs beside.

Run:  python contrib/bench/bench_rss_payment.py [--count 50000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from lnplugin.rss_payment import FetchSettings, RssPaymentWorker  # noqa: E402
from lnplugin.store import Store, cursors, events, invoices  # noqa: E402
from lnplugin.store import rss_payments as rss_db  # noqa: E402
from lnplugin.store import webhooks as hooks_db  # noqa: E402

TARGET_RATIO = 1.0


def fill(store: Store, count: int) -> None:
    now = int(time.time())
    with store.transaction() as tx:
        rows = []
        for i in range(count):
            boost = i % 100 == 0
            rows.append(
                invoices.complete(
                    {
                        "type": "incoming",
                        "payment_hash": hashlib.sha256(str(i).encode()).hexdigest(),
                        "state": "SETTLED",
                        "amount_msat": 21000,
                        "amount_received_msat": 21000,
                        "description": "coffee",
                        "comment": f"rss::payment::boost https://app.example/p/{i} great show"
                        if boost
                        else None,
                        "created_at": now,
                        "expiry": 3600,
                        "expires_at": now + 3600,
                        "settled_at": now,
                        "list_seq": i + 1,
                    }
                )
            )
        # Subscribed before the events exist, so the fan-out has a row to write for each.
        hooks_db.create_endpoint(tx, "https://hooks.example/ln", None, [events.INCOMING_SETTLED])
        invoices.insert_many(tx, rows)
        events.append_many(tx, [(events.INCOMING_SETTLED, row) for row in rows])


def drain(store: Store, step: Callable[[object], int], cursor: str, batch: int) -> float:
    with store.transaction() as tx:
        tx.execute("UPDATE cursors SET value = 0 WHERE name = ?", (cursor,))
        tx.execute("DELETE FROM webhook_deliveries")
        tx.execute("DELETE FROM rss_payments")
    start = time.perf_counter()
    while True:
        with store.transaction() as tx:
            if step(tx) < batch:
                break
    return time.perf_counter() - start


def bare_read(store: Store, batch: int = 500) -> float:
    """Every event read in batches, nothing decoded or written: the floor."""
    start = time.perf_counter()
    seq = 0
    while rows := events.after(store.conn, seq, batch):
        seq = rows[-1]["seq"]
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.sqlite")
        fill(store, args.count)
        with store.transaction() as tx:
            cursors.advance(tx, hooks_db.CURSOR, 0)
            cursors.advance(tx, rss_db.CURSOR, 0)
        worker = RssPaymentWorker(store, FetchSettings(domains=("app.example",)))
        fan_out = min(
            drain(store, hooks_db.fan_out, hooks_db.CURSOR, hooks_db.FAN_OUT_BATCH)  # type: ignore[arg-type]
            for _ in range(args.repeat)
        )
        scan = min(drain(store, worker.schedule, rss_db.CURSOR, 500) for _ in range(args.repeat))
        floor = min(bare_read(store) for _ in range(args.repeat))
        scheduled = store.conn.execute("SELECT COUNT(*) FROM rss_payments").fetchone()[0]
        store.close()
    print(f"events: {args.count}, boosts scheduled: {scheduled}")
    print(f"bare outbox read:        {args.count / floor:10,.0f} events/s (the floor)")
    print(f"(a) webhook fan-out:     {args.count / fan_out:10,.0f} events/s")
    print(f"(b) rss::payment scan:   {args.count / scan:10,.0f} events/s")
    ratio = scan / fan_out
    print(f"(b)/bare read time: {scan / floor:.2f} (for information)")
    verdict = "meets" if ratio <= TARGET_RATIO else "MISSES"
    print(f"(b)/(a) time: {ratio:.2f} (target <= {TARGET_RATIO}: {verdict})")
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
