"""The one narrow interface between longvec and an inference engine.

A backend maps a padded batch `(input_ids, attention_mask)` to token states `[batch, seq, hidden]` (float32).
Everything above it (windows, batching, stitching, pooling) is identical for every engine.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from longvec.runtime.errors import BackendUnavailable


class Backend(Protocol):
    hidden_size: int

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


BackendFactory = Callable[[Path, int, "int | None", bool], Backend]


def _onnxruntime(path: Path, hidden_size: int, threads: int | None, spin: bool = False) -> Backend:
    from longvec.runtime.backends.onnx import OrtBackend

    return OrtBackend(path, hidden_size, threads=threads, spin=spin)


def _tensorrt(path: Path, hidden_size: int, threads: int | None, spin: bool = False) -> Backend:
    raise BackendUnavailable(
        f"{path}: TensorRT plans need an NVIDIA GPU and the `tensorrt` package; use an onnxruntime variant here"
    )


# Dispatch on the manifest's `engine` field: a table, not an if/elif chain.
ENGINES: dict[str, BackendFactory] = {"onnxruntime": _onnxruntime, "tensorrt": _tensorrt}


def open_backend(engine: str, path: Path, hidden_size: int, threads: int | None = None, spin: bool = False) -> Backend:
    try:
        factory = ENGINES[engine]
    except KeyError:
        raise BackendUnavailable(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}") from None
    return factory(path, hidden_size, threads, spin)
