"""Span pooling cost against one read of the states: a segment-sum span mean of a 128k-token x 384 document into
1,000 spans vs a plain `states.sum()`. NOT the runtime's path: longvec pools spans through pool-weight matmuls per
window (runtime/core/stitch.py); the kernel this measured (kernels.span_mean) left the package in issue 18 for
having no production caller, and this copy keeps `longvec bench`'s "span" extra running until it measures that path.
The two alternate within each repeat (one warm-up each), so load drifts hit both;
the ratio is of their medians. The load average before and after is recorded. Prints one JSON line."""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def span_mean(states: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """Mean of states over each span: one read of the states into segment sums, then prefix sums over segments."""
    cuts = np.unique(np.concatenate(([0, states.shape[0]], spans.ravel())))
    seg = np.add.reduceat(states, cuts[:-1], axis=0, dtype=np.float32)
    prefix = np.zeros((seg.shape[0] + 1, seg.shape[1]), dtype=np.float64)
    np.cumsum(seg, axis=0, dtype=np.float64, out=prefix[1:])
    edge = np.searchsorted(cuts, spans)
    counts = np.maximum(spans[:, 1] - spans[:, 0], 1)[:, None]
    return ((prefix[edge[:, 1]] - prefix[edge[:, 0]]) / counts).astype(np.float32)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--tokens", type=int, default=131072)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--spans", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args()
    states = np.random.default_rng(0).standard_normal((args.tokens, args.dim), dtype=np.float32)
    edges = np.linspace(0, args.tokens, args.spans + 1).astype(np.int64)
    spans = np.stack([edges[:-1], edges[1:]], axis=1)
    fns = {"span_mean": lambda: span_mean(states, spans), "sum": lambda: states.sum()}
    times: dict[str, list[float]] = {k: [] for k in fns}
    load_before = os.getloadavg()
    for fn in fns.values():
        fn()
    for r in range(args.repeats):
        for name in list(fns)[r % 2 :] + list(fns)[: r % 2]:  # alternate which goes first
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    pooled_ms, sum_ms = (1000 * float(np.median(times[k])) for k in ("span_mean", "sum"))
    out = {
        "tokens": args.tokens,
        "dim": args.dim,
        "spans": args.spans,
        "span_mean_ms": pooled_ms,
        "sum_ms": sum_ms,
        "ratio": pooled_ms / sum_ms,
        "repeats": args.repeats,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
