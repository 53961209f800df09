#!/usr/bin/env python3
"""LNURL-pay benchmark: a real `lnplugin serve` on the dev node, concurrency 8.

Two ratios, each against a baseline measured in the same run (rounds
alternate between the case and its baseline; medians of the rounds are
compared, so a burst of other load on the host hits both sides):

- LNURL callback (`GET /lnurlp/<u>/callback?amount=...`, which mints on the
  node) server CPU per request ÷ `POST /invoices` (target <= 1.2): the
  public mint path adds little above the API's own;
- `GET /.well-known/lnurlp/<u>` requests/s ÷ `GET /health` (target >= 0.8):
  discovery, rate limiter included, is nearly as cheap as the cheapest route.

Printed for information: discovery of an address that asks for LUD-18
`auth`, which stores a fresh k1 per answer (a write), against `GET /health`.

The rate limits are raised for the run so that the limiter counts every
request but never refuses one.

    python contrib/bench/bench_lnurl.py
    python contrib/bench/bench_lnurl.py --requests 500 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import requests
from bench_api import drive  # the same driver and /proc CPU reading as bench_api.py

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from lnplugin.store import Store, tokens  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(data: Path) -> tuple[subprocess.Popen[str], str, str]:
    store = Store(data / "lnplugin.sqlite")
    with store.transaction() as tx:
        _, token = tokens.create(tx, ["admin"], "bench")
    store.close()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
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
            "--public-url",
            url,
            "--rate-limit",
            "10000000/minute",
            "--rate-limit-callback",
            "10000000/minute",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        # Per-token limits still count every request, but never refuse one here.
        env={
            **os.environ,
            "LNPLUGIN_LOG_LEVEL": "error",
            "LNPLUGIN_TOKEN_RATE_LIMIT": "1000000000/minute",
        },
    )
    assert proc.stdout is not None
    proc.stdout.readline()  # the banner: the server listens
    return proc, url, token


def compare(pid: int, url: str, token: str, case, baseline, n: int, rounds: int):  # type: ignore[no-untyped-def]
    """Alternate rounds of `case` and `baseline`; medians of each side's results."""
    ours: list[dict[str, float]] = []
    theirs: list[dict[str, float]] = []
    for make in (case, baseline):
        drive(pid, url, token, make, min(200, n))  # warm up both
    for _ in range(rounds):
        ours.append(drive(pid, url, token, case, n))
        theirs.append(drive(pid, url, token, baseline, n))

    def median(results: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in results)

    errors = sum(r["errors"] for r in ours + theirs)
    return (
        {k: median(ours, k) for k in ("rps", "cpu_ms", "p50", "p99")},
        {k: median(theirs, k) for k in ("rps", "cpu_ms", "p50", "p99")},
        errors,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"lnplugin LNURL benchmark; {os.cpu_count()} cores; concurrency 8")
    with tempfile.TemporaryDirectory(prefix="lnbench") as tmp:
        proc, url, token = start(Path(tmp))
        try:
            made = requests.post(
                url + "/lightning_addresses",
                json={"username": "bench", "comment_allowed": 100},
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )
            made.raise_for_status()
            requests.post(
                url + "/lightning_addresses",
                json={"username": "bench-auth", "payer_data": {"auth": {"mandatory": True}}},
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            ).raise_for_status()
            callback = "/lnurlp/bench/callback?amount=10000&comment=thanks"

            def against(case, baseline):  # type: ignore[no-untyped-def]
                """`case` and its `baseline`, in alternating rounds on this server."""
                return compare(proc.pid, url, token, case, baseline, args.requests, args.rounds)

            health_case = lambda n: ("GET", "/health", None)  # noqa: E731
            mint, create, e1 = against(
                lambda n: ("GET", callback, None),
                lambda n: ("POST", "/invoices", {"amount": 10, "comment": "thanks"}),
            )
            discover, health, e2 = against(
                lambda n: ("GET", "/.well-known/lnurlp/bench", None), health_case
            )
            discover_auth, health2, e3 = against(
                lambda n: ("GET", "/.well-known/lnurlp/bench-auth", None), health_case
            )
        finally:
            proc.terminate()
            proc.wait(timeout=20)

    print(f"{'case':40} {'rps':>7} {'p50 ms':>7} {'p99 ms':>7} {'cpu ms/req':>10}")
    for name, r in (
        ("GET /lnurlp/<u>/callback (mints)", mint),
        ("POST /invoices", create),
        ("GET /.well-known/lnurlp/<u>", discover),
        ("GET /health", health),
        ("GET /.well-known/lnurlp/<u> (auth k1)", discover_auth),
        ("GET /health (with the line above)", health2),
    ):
        print(f"{name:40} {r['rps']:7.0f} {r['p50']:7.2f} {r['p99']:7.2f} {r['cpu_ms']:10.3f}")
    cpu_ratio = mint["cpu_ms"] / create["cpu_ms"]
    rps_ratio = discover["rps"] / health["rps"]
    print(
        f"callback CPU / POST /invoices CPU = {cpu_ratio:.2f} (target <= 1.2: "
        f"{'PASS' if cpu_ratio <= 1.2 else 'MISS'})"
    )
    print(
        f"discovery rps / health rps = {rps_ratio:.2f} (target >= 0.8: "
        f"{'PASS' if rps_ratio >= 0.8 else 'MISS'})"
    )
    print(f"discovery with auth rps / health rps = {discover_auth['rps'] / health2['rps']:.2f}")
    if e1 or e2 or e3:
        print(f"{e1 + e2 + e3} requests failed")


if __name__ == "__main__":
    main()
