"""What an encoder call costs, and what cutting batches where lengths jump saves (runtime/core/batching.py).

1. The cost model: median time of one encoder call over a grid of batch rows x padded width, fitted as
   a + b x (rows x width); a / b is the call's fixed cost in padded tokens (`Batching.call_tokens`).
2. The effect: the same queries embedded in groups of 1, 4, 14, 32 and all at once (the groups a server under
   load merges, and the library's own call), with batches cut by the cost model (call_tokens as set) and by the
   budget alone (call_tokens=0, the greedy packing before), interleaved, repeated, medians.

    python bench/batch_cost.py bundles/all-MiniLM-L6-v2 [--threads 2] [--repeats 5] [--out bench/out/batch_cost.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from harness.machine import machine
from harness.workloads import read_queries
from timing import median_seconds, timing_args

from longvec.runtime import Embedder
from longvec.runtime.backends import pools_on_device

ROWS = (1, 2, 4, 8, 16, 32, 64)
WIDTHS = (12, 16, 24, 32, 48, 64)


def call_ms(emb: Embedder, rows: int, width: int, repeats: int) -> float:
    ids = np.full((rows, width), 1000, np.int64)  # any in-vocabulary id: the work does not depend on it
    mask = np.ones_like(ids)
    weights = np.full((rows, 1, width), 1.0 / width, np.float32)
    backend = emb.backend

    def once() -> None:
        if pools_on_device(backend):
            backend.run_pooled(ids, mask, weights)
        else:
            backend.run(ids, mask)

    return 1000 * median_seconds(once, repeats)


def fit(grid: dict[tuple[int, int], float]) -> tuple[float, float]:
    """(a ms, b ms per padded token), least squares on relative error (the small calls count as much)."""
    keys = list(grid)
    tokens = np.array([r * w for r, w in keys], np.float64)
    ms = np.array([grid[k] for k in keys])
    design = np.stack([np.ones_like(tokens), tokens], 1) / ms[:, None]
    (a, b), *_ = np.linalg.lstsq(design, np.ones_like(ms), rcond=None)
    return float(a), float(b)


def group_rate(emb: Embedder, texts: list[str], group: int) -> float:
    t = time.perf_counter()
    for i in range(0, len(texts), group):
        emb.embed(texts[i : i + group])
    return len(texts) / (time.perf_counter() - t)


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    data = Path(os.environ.get("LONGVEC_DATA", root.parent / "shared" / "data")) / "squad-longdoc-dev"
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path)
    timing_args(p, repeats=5)
    p.add_argument("--queries", type=Path, default=data / "queries.jsonl")
    p.add_argument("--n-queries", type=int, default=320)
    p.add_argument("--groups", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 14, 32, 0])
    p.add_argument("--out", type=Path, default=Path("bench/out/batch_cost.json"))
    args = p.parse_args()

    load_before = os.getloadavg()
    emb = Embedder.load(args.bundle, threads=args.threads, spin=False)
    grid = {(r, w): call_ms(emb, r, w, 7) for r in ROWS for w in WIDTHS}
    a, b = fit(grid)
    print(f"call cost: {a:.2f} ms + {b:.4f} ms per padded token -> a call is worth {a / b:.1f} tokens")

    texts = read_queries(args.queries, args.n_queries)
    packings = {
        "cut by cost": emb,
        "budget only": Embedder(
            emb.backend, emb.tokenizer, emb.manifest, emb.window, replace(emb.batching, call_tokens=0), emb.name
        ),
    }
    emb.embed(texts[:32])
    rates: dict[str, dict[int, list[float]]] = {k: {g: [] for g in args.groups} for k in packings}
    for r in range(args.repeats):
        names = list(packings) if r % 2 == 0 else list(packings)[::-1]  # alternate who goes first
        for g in args.groups:
            for name in names:
                rates[name][g].append(group_rate(packings[name], texts, g or len(texts)))
    lines = [f"| texts per call | {' | '.join(packings)} | ratio |", "|---|---|---|---|"]
    summary = {}
    for g in args.groups:
        cut, greedy = (float(np.median(rates[k][g])) for k in packings)
        summary[g or len(texts)] = {"cut_by_cost": cut, "budget_only": greedy, "ratio": cut / greedy}
        lines.append(f"| {g or len(texts)} | {cut:.1f} | {greedy:.1f} | {cut / greedy:.2f}x |")
    table = "\n".join(lines)
    print(f"queries/s, median of {args.repeats} (call_tokens {emb.batching.call_tokens} vs 0):\n{table}")
    result = {
        "machine": machine(),
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "config": {k: str(v) for k, v in vars(args).items()},
        "grid_ms": {f"{r}x{w}": ms for (r, w), ms in grid.items()},
        "fit": {"a_ms": a, "b_ms_per_token": b, "call_tokens": a / b},
        "groups": summary,
        "raw": rates,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}; wrote {args.out}")


if __name__ == "__main__":
    main()
