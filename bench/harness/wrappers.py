"""Backends for measuring longvec itself: wrappers around a real backend (timed, traced, and the base the
benchmarks' memoizing one builds on) and a null encoder; `with_backend` puts one in front of an Embedder.

A wrapper forwards `run`, `close` and `hidden_size`; when the Backend protocol grows a method, the base class
here is the one place to forward it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from longvec.runtime.backends import Backend, describe, pools_on_device
from longvec.runtime.embedder import Embedder


class BackendWrapper:
    """Runs `inner` unchanged; subclasses change `call`, which both `run` and (for a pooled graph) `run_pooled`
    go through, so a wrapper pools where its inner backend pools."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.hidden_size = inner.hidden_size
        self.pools = pools_on_device(inner)
        self.provider = describe(inner)

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


class TimedBackend(BackendWrapper):
    """Adds up the time spent inside the backend: the encoder's share of an end-to-end call, measured within that
    same call (immune to the load drifting between one system's run and another's)."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self.seconds = 0.0

    def call(self, method: Callable[..., np.ndarray], *args: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        out = method(*args)
        self.seconds += time.perf_counter() - start
        return out


class TracedBackend(BackendWrapper):
    """Calls `after()` when each run has returned (e.g. to record the resident memory at that point)."""

    def __init__(self, inner: Backend, after: Callable[[], None]) -> None:
        super().__init__(inner)
        self.after = after

    def call(self, method: Callable[..., np.ndarray], *args: np.ndarray) -> np.ndarray:
        out = method(*args)
        self.after()
        return out


class NullBackend:
    """Zero states at once: what is left of a call's time is longvec's own work."""

    def __init__(self, hidden_size: int) -> None:
        self.hidden_size = hidden_size

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return np.zeros((*input_ids.shape, self.hidden_size), dtype=np.float32)

    def close(self) -> None:
        pass


def with_backend(embedder: Embedder, backend: Backend) -> Embedder:
    """The same tokenizer, manifest and window in front of another backend (usually a wrapper of its own)."""
    return Embedder(backend, embedder.tokenizer, embedder.manifest, embedder.window, embedder.batching)
