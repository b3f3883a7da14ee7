"""GPU engines in the bundle contract: optimization profiles, their choice by shape, and cache keys.

Pure functions, shared by the export side (`longvec build-engine` builds TensorRT plans) and the runtime (the
native TensorRT backend picks a profile per batch; onnxruntime's TensorRT provider caches its engines under the
same kind of key). A TensorRT engine is valid only for the GPU model, compute capability and TensorRT version it
was built with, and for the exact graph: all of them are in the key, so a stale engine is never picked up.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from longvec.runtime.bundle.feeds import POOL_INPUT

# Short texts (queries) are padded to the smallest bucket that holds them, not to a whole window.
SHORT_BUCKETS: tuple[int, ...] = (32, 64, 128)
# pool_weights rows per window a profile admits: its own pooling, the document, and every chunk span it touches
# (~4 at 128-token chunks in 256-token windows; 256 leaves room down to 1-token chunks)
MAX_POOL_ROWS = 256
# Batch sizes of GPU engines: as many windows as the runtime sends a GPU per call (runtime.core.pipeline.GPU_BATCHING)
GPU_MAX_BATCH = 256


@dataclass(frozen=True)
class Profile:
    """One optimization profile: batch and sequence ranges (inclusive), and the pooled graph's rows range."""

    min_batch: int
    opt_batch: int
    max_batch: int
    min_seq: int
    opt_seq: int
    max_seq: int
    max_rows: int = MAX_POOL_ROWS

    def __post_init__(self) -> None:
        if not (1 <= self.min_batch <= self.opt_batch <= self.max_batch and 1 <= self.min_seq <= self.opt_seq):
            raise ValueError(f"profile ranges must satisfy 1 <= min <= opt <= max: {self}")
        if self.opt_seq > self.max_seq or self.max_rows < 1:
            raise ValueError(f"profile ranges must satisfy 1 <= min <= opt <= max: {self}")

    def fits(self, batch: int, seq: int, rows: int = 1) -> bool:
        return (
            self.min_batch <= batch <= self.max_batch and self.min_seq <= seq <= self.max_seq and rows <= self.max_rows
        )

    def shapes(self, names: Sequence[str], which: str) -> dict[str, tuple[int, ...]]:
        """Input shapes at "min", "opt" or "max" for the graph's inputs (pool_weights is [batch, rows, seq])."""
        batch = {"min": self.min_batch, "opt": self.opt_batch, "max": self.max_batch}[which]
        seq = {"min": self.min_seq, "opt": self.opt_seq, "max": self.max_seq}[which]
        rows = {"min": 1, "opt": min(4, self.max_rows), "max": self.max_rows}[which]
        return {n: (batch, rows, seq) if n == POOL_INPUT else (batch, seq) for n in names}


def window_profiles(windows: Sequence[int], max_batch: int, buckets: Sequence[int] = SHORT_BUCKETS) -> list[Profile]:
    """One profile per window length used (every window of a long document has exactly that length, so min = max
    and the engine is tuned for it) with batch 1..max_batch, then one per length bucket below the smallest window
    for short texts. Ordered by sequence length: `select_profile` takes the first that fits."""
    if not windows or max_batch < 1:
        raise ValueError("need at least one window length and max_batch >= 1")
    lengths = sorted(set(windows))
    profiles = []
    low = 1
    for b in sorted(set(buckets)):
        if b >= lengths[0]:
            break
        profiles.append(Profile(1, max_batch, max_batch, low, b, b))
        low = b + 1
    for w in lengths:
        profiles.append(Profile(1, max_batch, max_batch, min(low, w), w, w))
        low = w + 1
    return profiles


def select_profile(profiles: Sequence[Profile], batch: int, seq: int, rows: int = 1) -> int:
    """Index of the tightest profile holding a batch of this shape (the first fitting one, profiles being ordered
    by length); ValueError when none does."""
    for i, p in enumerate(profiles):
        if p.fits(batch, seq, rows):
            return i
    raise ValueError(f"no optimization profile holds batch {batch} x {seq} with {rows} pool rows")


def cache_key(gpu: str, compute_capability: str, tensorrt: str, onnxruntime: str, graph_sha256: str) -> str:
    """A folder name unique to (GPU model, compute capability, TensorRT version, onnxruntime version, graph)."""

    def slug(s: str) -> str:
        return re.sub(r"[^A-Za-z0-9.]+", "-", s).strip("-").lower() or "unknown"

    if not re.fullmatch(r"[0-9a-f]{64}", graph_sha256):
        raise ValueError(f"graph_sha256 must be 64 hex digits, got {graph_sha256!r}")
    return (
        f"{slug(gpu)}-sm{slug(compute_capability).replace('.', '')}-trt{slug(tensorrt)}-ort{slug(onnxruntime)}"
        f"-{graph_sha256[:16]}"
    )


def shape_option(shapes: Mapping[str, tuple[int, ...]]) -> str:
    """onnxruntime's TensorRT provider syntax for a profile's shapes: "input_ids:1x64,attention_mask:1x64"."""
    return ",".join(f"{name}:{'x'.join(str(d) for d in dims)}" for name, dims in shapes.items())
