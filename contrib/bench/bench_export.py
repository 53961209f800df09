"""Benchmark `lnplugin export` (CSV and JSON Lines) against reading the same rows bare.

One store of --count invoices (half of them keysends carrying a boostagram
and a chat message) is made in a temporary directory; then, best of
--repeat passes each:
  (a) baseline: every row read with the store's own typed read (`SELECT` of
      every column into `StoredInvoice`), one statement, nothing written;
  (b) the export's stream (`lnplugin.export.stream`), all chunks joined: the
      keyset batches, the per-row record, and the CSV or JSON encoding.
It prints rows/s for each and export time / baseline time, with the target:
the export should cost at most 8x a bare read (it decodes two JSON columns
and encodes a row of 43 fields per invoice), so that 100,000 invoices export
in a few seconds.

Run:  python contrib/bench/bench_export.py [--count 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from lnplugin.export import stream  # noqa: E402
from lnplugin.store import Store, invoices  # noqa: E402
from lnplugin.store.models import SELECT_COLUMNS, invoice_factory  # noqa: E402

TARGET_RATIO = 8.0
BOOST = {
    "action": "boost",
    "app_name": "Fountain",
    "podcast": 'The "Quoted", Pod',
    "feedID": 920666,
    "episode": "Ep 1",
    "ts": 123,
    "value_msat_total": 21000,
    "sender_name": "@alice",
    "message": "great show,\nsecond line",
}


def fill(store: Store, count: int) -> None:
    now = int(time.time())
    rows = []
    for i in range(count):
        keysend = i % 2 == 1
        fields = {
            "type": "incoming",
            "payment_hash": hashlib.sha256(str(i).encode()).hexdigest(),
            "state": "SETTLED",
            "amount_msat": 0 if keysend else 21000,
            "amount_received_msat": 21000,
            "description": None if keysend else f'order {i}, "large"',
            "created_at": now - count + i,
            "expiry": 86400,
            "expires_at": now - count + i + 86400,
            "settled_at": now - count + i + 1,
            "preimage": "00" * 32,
            "is_keysend": int(keysend),
            "list_seq": i + 1,
        }
        if keysend:
            fields.update(
                invoices.record_fields(
                    {7629169: json.dumps(BOOST).encode(), 34349334: b"hello from chat"}
                )
            )
        rows.append(invoices.complete(fields))
    with store.transaction() as tx:
        invoices.insert_many(tx, rows)


def best(fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        size = fn()
        times.append(time.perf_counter() - start)
    return min(times), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "lnplugin.sqlite", synchronous="OFF")
        fill(store, args.count)
        conn = store.conn

        def bare() -> int:
            cur = conn.cursor()
            cur.row_factory = invoice_factory
            return len(cur.execute(f"SELECT {SELECT_COLUMNS} FROM invoices").fetchall())

        def export(fmt: str, type_: str | None = None) -> Callable[[], int]:
            return lambda: len("".join(stream(conn, fmt, type_=type_)))  # type: ignore[arg-type]

        base, rows = best(bare, args.repeat)
        print(f"{rows} invoices, half keysends with a boostagram; best of {args.repeat}")
        print(f"  bare typed read   {rows / base:>10,.0f} rows/s")
        worst = 0.0
        # Every invoice `fill` makes is incoming: `type=incoming` exports the
        # same rows through the type filter (which once sorted every batch).
        for fmt, type_ in (("csv", None), ("jsonl", None), ("csv", "incoming")):
            took, size = best(export(fmt, type_), args.repeat)
            ratio = took / base
            worst = max(worst, ratio)
            name = fmt if type_ is None else f"{fmt} type={type_}"
            print(
                f"  export {name:<20} {rows / took:>10,.0f} rows/s  {size / 1e6:6.1f} MB  "
                f"{ratio:5.1f}x the bare read"
            )
        verdict = "ok" if worst <= TARGET_RATIO else "ABOVE TARGET"
        print(f"export / bare read: {worst:.1f}x (target <= {TARGET_RATIO:.0f}x): {verdict}")
        store.close()


if __name__ == "__main__":
    main()
