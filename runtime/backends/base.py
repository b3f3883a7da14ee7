"""The one narrow interface between longvec and an inference engine, and what an engine declares about itself.

A backend maps a padded batch `(input_ids, attention_mask)` to token states `[batch, seq, hidden]` (float32), or,
when it pools on its side (`capabilities.pools`: a pooled graph), a batch plus pool weights to pooled sums:
`run_pooled(input_ids, attention_mask, pool_weights [batch, rows, seq]) -> pooled_sums [batch, rows, hidden]`
(float32 accumulation). Everything above it (windows, batching, pooling weights, running sums) is identical for
every engine: for a states backend the runtime applies the same weights on the host (runtime.core.stitch).

What the layers above need to know of an engine (does it pool, is it on a GPU, how many windows or positions it
admits per call, what to call it) is declared data, `Capabilities`, never probed attribute by attribute: a
wrapper forwards it whole (`BackendWrapper`), and the batching policy reads it in one place
(runtime.core.pipeline.Batching.for_backend). `make check` fails on a `getattr` probe of a capability outside
this package (tests/runtime/backends/test_capability_probes.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeGuard

import numpy as np

from longvec.runtime.errors import BundleError, InputError


@dataclass(frozen=True)
class Capabilities:
    provider: str  # what runs the encoder, for `inspect`, `/health`, `/info` and bench output
    pools: bool = False  # takes pool weights itself (`run_pooled`): only pooled sums leave the engine
    on_gpu: bool = False  # the encoder runs on a GPU: larger batches pay off (runtime.core.pipeline.GPU_BATCHING)
    max_batch: int | None = None  # windows per call the engine admits (a TensorRT plan: its largest profile)
    max_seq: int | None = None  # positions per window the engine admits (a TensorRT plan: its longest profile)


class Backend(Protocol):
    hidden_size: int
    capabilities: Capabilities

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


class PoolingBackend(Backend, Protocol):
    def run_pooled(self, input_ids: np.ndarray, attention_mask: np.ndarray, pool_weights: np.ndarray) -> np.ndarray: ...


def pools_on_device(backend: Backend) -> TypeGuard[PoolingBackend]:
    """True when the backend takes pool weights itself (a pooled graph, on the CPU or a GPU)."""
    return backend.capabilities.pools


def describe(backend: Backend) -> str:
    """What runs the encoder, e.g. "onnxruntime CUDAExecutionProvider (pooled graph)"."""
    return backend.capabilities.provider


class BackendWrapper:
    """Runs `inner` unchanged and declares its capabilities: the one base of every wrapper (cancellation,
    timing, tracing, memoizing). Subclasses change `call`, which both `run` and (for a pooled graph) `run_pooled`
    go through, so a wrapper pools where its inner backend pools; when the protocol grows, this is the one place
    that forwards it."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.hidden_size = inner.hidden_size
        self.capabilities = inner.capabilities

    def call(self, method: Callable[..., np.ndarray], *args: np.ndarray) -> np.ndarray:
        return method(*args)

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.call(self.inner.run, input_ids, attention_mask)

    def run_pooled(self, input_ids: np.ndarray, attention_mask: np.ndarray, pool_weights: np.ndarray) -> np.ndarray:
        inner = self.inner
        if not pools_on_device(inner):
            raise TypeError(f"{describe(inner)} returns token states, not pooled sums")
        return self.call(inner.run_pooled, input_ids, attention_mask, pool_weights)

    def close(self) -> None:
        self.inner.close()


def identity_rows(shape: tuple[int, ...]) -> np.ndarray:
    """One-hot pool rows [batch, seq, seq]: pooled sums of these are the token states themselves (how a pooled
    graph answers `run`)."""
    batch, seq = shape
    return np.broadcast_to(np.eye(seq, dtype=np.float32), (batch, seq, seq)).copy()


def check_hidden_size(path: Path | str, got: int, want: int) -> None:
    """A model swapped for one of another size fails at load naming the file, not at the first embed."""
    if got != want:
        raise BundleError(path, f"the graph's output hidden size is {got}, manifest.json says hidden_size={want}")


def check_window(capabilities: Capabilities, window: int) -> None:
    """At load: a window longer than the engine admits (a plan built for shorter windows) fails here, naming
    both, not at the first long document."""
    if capabilities.max_seq is not None and window > capabilities.max_seq:
        raise InputError(
            f"window {window} is longer than {capabilities.provider} admits ({capabilities.max_seq} positions): "
            "load with a window it holds, or rebuild it for this window (`longvec build-engine --windows`)"
        )
