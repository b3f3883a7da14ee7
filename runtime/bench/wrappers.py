"""Backends for measuring longvec itself: wrappers around a real backend (timed, traced, and the base the
benchmarks' memoizing one builds on) and a null encoder; `with_backend` puts one in front of an Embedder.

Every wrapper builds on the backends' one `BackendWrapper` (runtime.backends.base), which forwards `run`,
`run_pooled`, `close`, `hidden_size` and the capabilities; it is re-exported here for the repository's benchmarks.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from longvec.runtime.backends import Backend, BackendWrapper, Capabilities
from longvec.runtime.embedder import Embedder


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
        self.capabilities = Capabilities(provider="null (zero states)")

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return np.zeros((*input_ids.shape, self.hidden_size), dtype=np.float32)

    def close(self) -> None:
        pass


def with_backend(embedder: Embedder, backend: Backend) -> Embedder:
    """The same tokenizer, manifest and window in front of another backend (usually a wrapper of its own)."""
    return embedder.with_backend(backend)
