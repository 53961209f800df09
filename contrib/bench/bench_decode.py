"""Benchmark lnplugin's BOLT11 decoder against the `bolt11` package and bare coincurve recovery.

Everything is measured in one run on the same inputs:
  (a) bolt11 package decode time / lnplugin decode time          target >= 20
  (b) lnplugin decode time / bare coincurve recovery time          target <= 2.5
      (PublicKey.from_signature_and_message on the same signatures and signing hashes)
  (c) decodes per second: one invoice, the 16 valid spec vectors, N distinct generated invoices
  plus, for information, bolt11 package encode time / lnplugin encode time.

Each figure is the best of --repeat passes (the least disturbed by other load on the box).
Run:  python contrib/bench/bench_decode.py [--count 1000] [--repeat 5] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from hashlib import sha256
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import bolt11  # noqa: E402
from bolt11.models.features import Feature, FeatureExtra, FeatureState  # noqa: E402
from coincurve import PublicKey  # noqa: E402

from lnplugin.bolt11 import RouteHop, decode, encode  # noqa: E402

VECTORS = ROOT / "tests" / "fixtures" / "bolt11_vectors.json"
TARGET_PACKAGE_RATIO = 20.0
TARGET_RECOVERY_RATIO = 2.5


def best_time(fn: Callable[[], object], repeat: int) -> float:
    """Best wall time of ``repeat`` calls of ``fn`` (each call runs a whole batch)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def generated_invoices(count: int, seed: int) -> list[dict]:
    """Encode arguments for ``count`` distinct, realistic invoices."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        hints = []
        if rng.random() < 0.3:
            hints = [
                [
                    RouteHop(
                        "0" + rng.choice("23") + rng.randbytes(32).hex(),
                        f"{rng.randrange(500_000, 900_000)}x{rng.randrange(3000)}"
                        f"x{rng.randrange(4)}",
                        rng.randrange(5000),
                        rng.randrange(5000),
                        rng.choice([40, 80, 144]),
                    )
                    for _ in range(rng.randint(1, 2))
                ]
            ]
        use_hash = rng.random() < 0.2
        out.append(
            {
                "currency": rng.choice(["bc", "bc", "bc", "tb", "tbs", "bcrt"]),
                "amount_msat": rng.choice(
                    [None, rng.randrange(1, 10**6) * 1000, rng.randrange(1, 10**12)]
                ),
                "timestamp": 1_700_000_000 + i,
                "payment_hash": rng.randbytes(32).hex(),
                "payment_secret": rng.randbytes(32).hex(),
                "private_key": rng.randbytes(32),
                "description": None if use_hash else f"order #{i} " + "x" * rng.randrange(60),
                "description_hash": rng.randbytes(32).hex() if use_hash else None,
                "expiry": rng.choice([None, 600, 3600, 86400]),
                "min_final_cltv_expiry_delta": rng.choice([18, 40, 80, 144]),
                "features": rng.choice([(8, 14), (8, 14, 16), (8, 14, 16, 48)]),
                "route_hints": hints,
            }
        )
    return out


def package_invoice(args: dict) -> bolt11.Bolt11:
    """The same invoice as ``args`` in the package's model (for the encode comparison)."""
    tags = [
        bolt11.Tag(bolt11.TagChar.payment_hash, args["payment_hash"]),
        bolt11.Tag(bolt11.TagChar.payment_secret, args["payment_secret"]),
    ]
    if args["description"] is not None:
        tags.append(bolt11.Tag(bolt11.TagChar.description, args["description"]))
    else:
        tags.append(bolt11.Tag(bolt11.TagChar.description_hash, args["description_hash"]))
    if args["expiry"] is not None:
        tags.append(bolt11.Tag(bolt11.TagChar.expire_time, args["expiry"]))
    tags.append(
        bolt11.Tag(bolt11.TagChar.min_final_cltv_expiry, args["min_final_cltv_expiry_delta"])
    )
    features = {
        (Feature(b // 2) if b // 2 < len(Feature) else FeatureExtra(b // 2)): FeatureState.required
        for b in args["features"]
    }
    tags.append(bolt11.Tag(bolt11.TagChar.features, bolt11.Features.from_feature_list(features)))
    for hint in args["route_hints"]:
        routes = [
            bolt11.Route(
                h.pubkey,
                h.short_channel_id,
                h.fee_base_msat,
                h.fee_proportional_millionths,
                h.cltv_expiry_delta,
            )
            for h in hint
        ]
        tags.append(bolt11.Tag(bolt11.TagChar.route_hint, bolt11.RouteHint(routes)))
    amount = args["amount_msat"]
    return bolt11.Bolt11(
        currency=args["currency"],
        date=args["timestamp"],
        tags=bolt11.Tags(tags),
        amount_msat=None if amount is None else bolt11.MilliSatoshi(amount),
    )


def recovery_inputs(invoices: Sequence[str]) -> list[tuple[bytes, bytes]]:
    """(65-byte signature, signing hash) per invoice, computed outside the timed region."""
    out = []
    for text in invoices:
        inv = bolt11.decode(text)
        sig = inv.signature
        assert sig is not None  # the package's decode of a signed invoice
        digest = sha256(sig.hrp.encode() + sig.signing_data).digest()
        out.append((sig.signature_data, digest))
    return out


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark lnplugin.bolt11 against the bolt11 package and bare coincurve "
        "recovery, on the same inputs in one run.",
    )
    parser.add_argument("--count", type=int, default=1000, help="distinct generated invoices")
    parser.add_argument("--repeat", type=int, default=5, help="passes per figure; best is kept")
    parser.add_argument("--seed", type=int, default=1, help="seed for the generated invoices")
    opts = parser.parse_args(argv)

    vectors = json.loads(VECTORS.read_text())["vectors"]
    spec = [v["invoice"] for v in vectors if v["valid"]]
    gen_args = generated_invoices(opts.count, opts.seed)
    t0 = time.perf_counter()
    generated = [encode(**a) for a in gen_args]
    assert len(set(generated)) == len(generated)
    single = spec[1]
    mixed = spec + generated
    for text in mixed:  # both decoders must accept every input, or the ratios mean nothing
        decode(text)
        bolt11.decode(text)
    rec = recovery_inputs(mixed)
    print(
        f"inputs: {len(spec)} spec vectors + {len(generated)} generated invoices "
        f"(prepared in {time.perf_counter() - t0:.1f} s); best of {opts.repeat} passes"
    )

    def ours_all() -> None:
        for text in mixed:
            decode(text)

    def package_all() -> None:
        for text in mixed:
            bolt11.decode(text)

    def recover_all() -> None:
        for sig, digest in rec:
            PublicKey.from_signature_and_message(sig, digest, hasher=None)

    t_ours = best_time(ours_all, opts.repeat)
    t_pkg = best_time(package_all, max(1, opts.repeat // 2))
    t_rec = best_time(recover_all, opts.repeat)
    n = len(mixed)
    ratio_pkg = t_pkg / t_ours
    ratio_rec = t_ours / t_rec
    print()
    print(
        f"per invoice: lnplugin {t_ours / n * 1e6:7.1f} us | bolt11 package "
        f"{t_pkg / n * 1e6:7.1f} us | bare coincurve recovery {t_rec / n * 1e6:7.1f} us"
    )
    print(
        f"(a) bolt11 package / lnplugin       = {ratio_pkg:6.1f}   target >= "
        f"{TARGET_PACKAGE_RATIO:g}   {verdict(ratio_pkg >= TARGET_PACKAGE_RATIO)}"
    )
    print(
        f"(b) lnplugin / coincurve recovery   = {ratio_rec:6.2f}   target <= "
        f"{TARGET_RECOVERY_RATIO:g}  {verdict(ratio_rec <= TARGET_RECOVERY_RATIO)}"
    )

    batch = 2000
    t_single = best_time(lambda: [decode(single) for _ in range(batch)], opts.repeat) / batch
    t_spec = best_time(lambda: [decode(s) for s in spec], opts.repeat * 20) / len(spec)
    t_gen = best_time(lambda: [decode(s) for s in generated], opts.repeat) / len(generated)
    print()
    print("(c) decodes per second")
    rows = [
        ("single invoice (spec V02)", t_single),
        (f"{len(spec)} valid spec vectors", t_spec),
        (f"{len(generated):,} distinct generated invoices", t_gen),
    ]
    for label, seconds in rows:
        print(f"    {label:<36}{1 / seconds:10,.0f}/s")

    sample = gen_args[: min(200, len(gen_args))]
    pkg_models = [(package_invoice(a), a["private_key"].hex()) for a in sample]
    for a in sample:  # warm-up + sanity: the two encoders describe the same invoice
        assert decode(encode(**a)).payment_hash == a["payment_hash"]
    t_enc = best_time(lambda: [encode(**a) for a in sample], opts.repeat) / len(sample)
    t_pkg_enc = best_time(
        lambda: [bolt11.encode(m, k) for m, k in pkg_models], max(1, opts.repeat // 2)
    ) / len(sample)
    print()
    print(
        f"encode (informational): lnplugin {t_enc * 1e6:.1f} us | bolt11 package "
        f"{t_pkg_enc * 1e6:.1f} us | ratio {t_pkg_enc / t_enc:.1f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
