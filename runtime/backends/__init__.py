"""Inference engines behind one protocol (runtime.backends.base): `open_backend(engine, files, hidden_size,
options)` opens a bundle variant's files with the engine its manifest names.

Each engine module has one factory of one shape, `open(files, hidden_size, options) -> Backend`, imported when a
bundle names that engine (TensorRT's module needs nothing installed until a plan is opened).
"""

from __future__ import annotations

from collections.abc import Callable

from longvec.runtime.backends.base import (
    Backend,
    BackendWrapper,
    Capabilities,
    PoolingBackend,
    describe,
    pools_on_device,
)
from longvec.runtime.backends.options import DEVICES, BackendOptions, GraphFiles
from longvec.runtime.errors import BackendUnavailable, InputError

__all__ = [
    "DEVICES",
    "ENGINES",
    "Backend",
    "BackendFactory",
    "BackendOptions",
    "BackendWrapper",
    "Capabilities",
    "GraphFiles",
    "PoolingBackend",
    "describe",
    "open_backend",
    "pools_on_device",
]

BackendFactory = Callable[[GraphFiles, int, BackendOptions], Backend]


def _onnxruntime() -> BackendFactory:
    try:
        from longvec.runtime.backends import onnx
    except ImportError as e:
        raise BackendUnavailable(
            f"onnxruntime is not installed: pip install onnxruntime (or onnxruntime-gpu) ({e})"
        ) from e
    return onnx.open


def _tensorrt() -> BackendFactory:
    from longvec.runtime.backends import tensorrt

    return tensorrt.open


# engine name (manifest `engine`) -> its module's `open`, imported only when a bundle names it
ENGINES: dict[str, Callable[[], BackendFactory]] = {"onnxruntime": _onnxruntime, "tensorrt": _tensorrt}


def open_backend(
    engine: str, files: GraphFiles, hidden_size: int, options: BackendOptions = BackendOptions()
) -> Backend:
    if options.device not in DEVICES:
        raise InputError(f"device must be one of {DEVICES}, got {options.device!r}")
    try:
        factory = ENGINES[engine]
    except KeyError:
        raise BackendUnavailable(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}") from None
    return factory()(files, hidden_size, options)
