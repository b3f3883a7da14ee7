"""Span pooling cost against one read of the states: kernels.span_mean of a 128k-token x 384 document into 1,000
spans vs a plain `states.sum()`, median of repeats. Prints one JSON line."""

from __future__ import annotations

import argparse
import json

import numpy as np
from timing import median_seconds

from longvec.kernels import span_mean


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--tokens", type=int, default=131072)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--spans", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    states = np.random.default_rng(0).standard_normal((args.tokens, args.dim), dtype=np.float32)
    edges = np.linspace(0, args.tokens, args.spans + 1).astype(np.int64)
    spans = np.stack([edges[:-1], edges[1:]], axis=1)
    pooled_ms = 1000 * median_seconds(lambda: span_mean(states, spans), args.repeats)
    sum_ms = 1000 * median_seconds(lambda: states.sum(), args.repeats)
    out = {
        "tokens": args.tokens,
        "dim": args.dim,
        "spans": args.spans,
        "span_mean_ms": pooled_ms,
        "sum_ms": sum_ms,
        "ratio": pooled_ms / sum_ms,
        "repeats": args.repeats,
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
