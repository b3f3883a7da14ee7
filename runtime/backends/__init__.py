"""The one narrow interface between longvec and an inference engine.

A backend maps a padded batch `(input_ids, attention_mask)` to token states `[batch, seq, hidden]` (float32), or,
when it pools on its side (`pools = True`: a pooled graph), a batch plus pool weights to pooled sums:
`run_pooled(input_ids, attention_mask, pool_weights [batch, rows, seq]) -> pooled_sums [batch, rows, hidden]`
(float32 accumulation). Everything above it (windows, batching, pooling weights, running sums) is identical for
every engine: for a states backend the runtime applies the same weights on the host (runtime.core.stitch).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeGuard

import numpy as np

from longvec.runtime.backends.options import DEVICES, BackendOptions, GraphFiles
from longvec.runtime.errors import BackendUnavailable, InputError


class Backend(Protocol):
    hidden_size: int

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


class PoolingBackend(Backend, Protocol):
    pools: bool

    def run_pooled(self, input_ids: np.ndarray, attention_mask: np.ndarray, pool_weights: np.ndarray) -> np.ndarray: ...


def pools_on_device(backend: Backend) -> TypeGuard[PoolingBackend]:
    """True when the backend takes pool weights itself (wrappers that only forward `run` pool on the host)."""
    return bool(getattr(backend, "pools", False))


def describe(backend: Backend) -> str:
    """What runs the encoder, for `inspect`, `/health` and bench output, e.g. "onnxruntime CUDAExecutionProvider
    (pooled graph)"; a backend without a description (a test wrapper) is named by its class."""
    return str(getattr(backend, "provider", type(backend).__name__))


BackendFactory = Callable[[GraphFiles, int, BackendOptions], Backend]


def _onnxruntime(files: GraphFiles, hidden_size: int, options: BackendOptions) -> Backend:
    try:
        from longvec.runtime.backends.onnx import open_onnxruntime
    except ImportError as e:
        raise BackendUnavailable(
            f"onnxruntime is not installed: pip install onnxruntime (or onnxruntime-gpu) ({e})"
        ) from e
    return open_onnxruntime(files, hidden_size, options)


def _tensorrt(files: GraphFiles, hidden_size: int, options: BackendOptions) -> Backend:
    from longvec.runtime.backends.tensorrt import TensorRTBackend

    path = files.pooled or files.states
    if path is None:
        raise BackendUnavailable("this TensorRT variant names no plan file")
    if options.device == "cpu":  # a plan runs only on the GPU it was built for: say so, never switch silently
        raise BackendUnavailable(f"{path.name} is a TensorRT plan: load it with device='cuda'")
    return TensorRTBackend(path, hidden_size)


# Dispatch on the manifest's `engine` field: a table, not an if/elif chain.
ENGINES: dict[str, BackendFactory] = {"onnxruntime": _onnxruntime, "tensorrt": _tensorrt}


def open_backend(
    engine: str, files: GraphFiles, hidden_size: int, options: BackendOptions = BackendOptions()
) -> Backend:
    if options.device not in DEVICES:
        raise InputError(f"device must be one of {DEVICES}, got {options.device!r}")
    try:
        factory = ENGINES[engine]
    except KeyError:
        raise BackendUnavailable(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}") from None
    return factory(files, hidden_size, options)
