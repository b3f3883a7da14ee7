"""Pooled graph vs token-state graph + host pooling on CPU onnxruntime: the same windows, the same weights.

Each case runs both paths on identical inputs, interleaved (A B B A ...) so load drift hits both alike; the median
of the repeats per path and their ratio are printed and written as JSON with the load average before and after.
Cases: encoder batches (windows of 256 and 512 with the pool rows a chunked document gives; short queries with one
row) and end to end (`embed_documents` of a long text with 128-token chunks, `Embedder.load(pooled=True/False)`).

    python bench/pooled_vs_states.py --bundle bundles/all-MiniLM-L6-v2 [--repeats 9] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from longvec.runtime import Embedder
from longvec.runtime.core.stitch import host_pool


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def interleaved(a: Callable[[], object], b: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median seconds of a and b, alternating which runs first; one warm-up call each."""
    a(), b()
    times: dict[str, list[float]] = {"a": [], "b": []}
    for r in range(repeats):
        for name, fn in (("a", a), ("b", b)) if r % 2 == 0 else (("b", b), ("a", a)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return float(np.median(times["a"])), float(np.median(times["b"]))


def batch_case(states: Embedder, pooled: Embedder, batch: int, seq: int, rows: int) -> tuple[Callable, Callable]:
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 20000, (batch, seq)).astype(np.int64)
    mask = np.ones_like(ids)
    weights = rng.random((batch, rows, seq)).astype(np.float32)
    weights /= weights.sum(axis=2, keepdims=True)

    def via_states() -> np.ndarray:
        return host_pool(states.backend.run(ids, mask), weights)

    def via_pooled() -> np.ndarray:
        return pooled.backend.run_pooled(ids, mask, weights)  # type: ignore[attr-defined]

    diff = float(np.abs(via_states() - via_pooled()).max())
    assert diff < 1e-4, diff  # equal work: both compute the same numbers
    return via_states, via_pooled


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--bundle", type=Path, default=Path("bundles/all-MiniLM-L6-v2"))
    p.add_argument("--variant", default="optimized")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--text", type=Path, default=Path("examples/lighthouses.txt"))
    p.add_argument("--out", type=Path, default=Path("bench/pooled_vs_states.json"))
    args = p.parse_args()
    load_before = load_average()
    states = Embedder.load(args.bundle, variant=args.variant, threads=args.threads, pooled=False)
    pooled = Embedder.load(args.bundle, variant=args.variant, threads=args.threads, pooled=True)
    text = args.text.read_text(encoding="utf-8") * 6  # ~8.6k tokens
    cases: list[tuple[str, int, Callable, Callable]] = []
    for batch, seq, rows in ((32, 256, 5), (16, 512, 6), (64, 16, 1)):
        a, b = batch_case(states, pooled, batch, seq, rows)
        cases.append((f"encoder {batch} x {seq}, {rows} rows", batch * seq, a, b))
    n_tokens = states.count_tokens([text])[0]
    cases.append(
        (
            f"embed_documents {n_tokens}-token text, 128-token chunks",
            n_tokens,
            lambda: states.embed_documents([text]),
            lambda: pooled.embed_documents([text]),
        )
    )
    rows = []
    print(f"{'case':<52} {'states+host ms':>15} {'pooled ms':>10} {'pooled/states':>14}")
    for name, tokens, a, b in cases:
        ta, tb = interleaved(a, b, args.repeats)
        rows.append({"case": name, "tokens": tokens, "states_ms": 1000 * ta, "pooled_ms": 1000 * tb, "ratio": tb / ta})
        print(f"{name:<52} {1000 * ta:>15.1f} {1000 * tb:>10.1f} {tb / ta:>14.3f}")
    report = {
        "bundle": str(args.bundle),
        "variant": args.variant,
        "threads": args.threads,
        "repeats": args.repeats,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "providers": {"states": states.provider, "pooled": pooled.provider},
        "rows": rows,
    }
    print(f"load average before {load_before}, after {report['load_average_after']} (1, 5, 15 min)")
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
