"""Timing for the bench scripts: one warm-up call, then the median of repeated wall-clock runs; and the two
settings every timing script takes."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def timing_args(p: argparse.ArgumentParser, repeats: int, threads: int = 2) -> None:
    """--threads (compute threads of the measured code) and --repeats (timed runs; the median is reported)."""
    p.add_argument("--threads", type=int, default=threads)
    p.add_argument("--repeats", type=int, default=repeats, help="timed runs; the median is reported")
