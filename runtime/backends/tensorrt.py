"""Native TensorRT backend: a serialized plan of the pooled graph (built by `longvec build-engine`), run with
`execute_async_v3` on buffers managed through cuda-python.

NOT YET RUN ON A GPU: tested only against a recording fake of the `tensorrt` and `cuda.bindings.runtime` modules
(tests/runtime/test_tensorrt_backend.py), which checks the calls made, not what a GPU computes.

Buffers come from cuda-python's `cuda.bindings.runtime` rather than CuPy: it is a thin binding of the CUDA runtime
(a few MB, no array library, no kernel compiler), and all this backend needs is malloc, pinned host memory, async
copies and a stream. Each thread gets its own execution context per optimization profile (contexts are not
thread-safe); the profile is chosen by the batch's shape (the tightest that holds it).
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from longvec.runtime.bundle.engines import Profile, select_profile
from longvec.runtime.errors import BackendUnavailable, BundleError, InputError

POOL_INPUT, POOL_OUTPUT = "pool_weights", "pooled_sums"
INSTALL_TENSORRT = (
    "the tensorrt backend needs NVIDIA's TensorRT and cuda-python: "
    "pip install --extra-index-url https://pypi.nvidia.com tensorrt-cu12 cuda-python (see README, GPU)"
)


def _import_modules() -> tuple[ModuleType, Any]:
    try:
        import tensorrt as trt
        from cuda.bindings import runtime as cudart
    except ImportError as e:
        raise BackendUnavailable(f"{INSTALL_TENSORRT} ({e})") from e
    return trt, cudart


def _check(result: Any) -> Any:
    """cuda-python returns (error, value...) tuples; raise on an error code, return the value(s)."""
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise BackendUnavailable(f"CUDA call failed: {err}")
    return rest[0] if len(rest) == 1 else tuple(rest)


class _Context:
    """One execution context, its stream and its device and pinned host buffers (sized for its profile's max)."""

    def __init__(self, engine: Any, index: int, profile: Profile, names: tuple[str, ...], cudart: Any, hidden: int):
        self.cudart = cudart
        self.context = engine.create_execution_context()
        self.stream = _check(cudart.cudaStreamCreate())
        self.stream_handle = int(self.stream)  # TensorRT takes the raw cudaStream_t handle, cuda-python its object
        self.context.set_optimization_profile_async(index, self.stream_handle)
        self.names = names
        rows, seq, batch = profile.max_rows, profile.max_seq, profile.max_batch
        sizes = {n: batch * (rows * seq * 4 if n == POOL_INPUT else seq * 8) for n in names}
        sizes[POOL_OUTPUT] = batch * rows * hidden * 4
        self.device = {n: _check(cudart.cudaMalloc(size)) for n, size in sizes.items()}
        self.host = {n: _check(cudart.cudaMallocHost(size)) for n, size in sizes.items()}

    def run(self, feeds: dict[str, np.ndarray], out_shape: tuple[int, ...]) -> np.ndarray:
        import ctypes

        cudart = self.cudart
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name in self.names:
            array = np.ascontiguousarray(feeds[name])
            ctypes.memmove(self.host[name], array.ctypes.data, array.nbytes)  # into pinned memory: a DMA upload
            _check(cudart.cudaMemcpyAsync(self.device[name], self.host[name], array.nbytes, h2d, self.stream))
            self.context.set_input_shape(name, array.shape)
            self.context.set_tensor_address(name, self.device[name])
        self.context.set_tensor_address(POOL_OUTPUT, self.device[POOL_OUTPUT])
        if not self.context.execute_async_v3(self.stream_handle):
            raise BackendUnavailable("TensorRT execute_async_v3 failed")
        out = np.empty(out_shape, dtype=np.float32)
        _check(cudart.cudaMemcpyAsync(self.host[POOL_OUTPUT], self.device[POOL_OUTPUT], out.nbytes, d2h, self.stream))
        _check(cudart.cudaStreamSynchronize(self.stream))
        ctypes.memmove(out.ctypes.data, self.host[POOL_OUTPUT], out.nbytes)
        return out

    def close(self) -> None:
        for ptr in self.device.values():
            self.cudart.cudaFree(ptr)
        for ptr in self.host.values():
            self.cudart.cudaFreeHost(ptr)
        self.cudart.cudaStreamDestroy(self.stream)


class TensorRTBackend:
    """Runs a pooled-graph plan; token states (`run`) come from identity pool rows, within the profile's rows."""

    pools = True
    on_gpu = True

    def __init__(self, path: Path, hidden_size: int, modules: tuple[ModuleType, Any] | None = None) -> None:
        self._trt, self._cudart = modules or _import_modules()
        logger = self._trt.Logger(self._trt.Logger.WARNING)
        self._runtime = self._trt.Runtime(logger)
        engine = self._runtime.deserialize_cuda_engine(Path(path).read_bytes())
        if engine is None:
            raise BundleError(path, "TensorRT cannot deserialize this plan (built for another GPU or TensorRT?)")
        self._engine = engine
        self.hidden_size = hidden_size
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        if POOL_OUTPUT not in names or POOL_INPUT not in names:
            raise BundleError(path, f"not a pooled-graph plan (tensors: {names})")
        self._inputs = tuple(n for n in names if n != POOL_OUTPUT)
        hidden = int(engine.get_tensor_shape(POOL_OUTPUT)[-1])
        if hidden != hidden_size:
            raise BundleError(path, f"the plan's output hidden size is {hidden}, manifest.json says {hidden_size}")
        self.profiles = [self._profile(i) for i in range(engine.num_optimization_profiles)]
        self.max_batch = max(p.max_batch for p in self.profiles)  # the runtime never sends a larger batch
        self.provider = (
            f"tensorrt {getattr(self._trt, '__version__', '?')} (pooled plan, {len(self.profiles)} profiles)"
        )
        self._local = threading.local()  # per thread: {profile index: _Context}
        self._all: list[_Context] = []
        self._lock = threading.Lock()

    def _profile(self, index: int) -> Profile:
        lo, opt, hi = self._engine.get_tensor_profile_shape(POOL_INPUT, index)  # [batch, rows, seq] each
        return Profile(lo[0], opt[0], hi[0], lo[2], opt[2], hi[2], max_rows=hi[1])

    def _context(self, index: int) -> _Context:
        contexts = self._local.__dict__.setdefault("contexts", {})
        if index not in contexts:
            ctx = _Context(self._engine, index, self.profiles[index], self._inputs, self._cudart, self.hidden_size)
            contexts[index] = ctx
            with self._lock:
                self._all.append(ctx)
        return contexts[index]

    def run_pooled(self, input_ids: np.ndarray, attention_mask: np.ndarray, pool_weights: np.ndarray) -> np.ndarray:
        batch, seq = input_ids.shape
        rows = pool_weights.shape[1]
        try:
            index = select_profile(self.profiles, batch, seq, rows)
        except ValueError as e:
            raise InputError(f"this TensorRT plan cannot run the batch: {e}") from e
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask, POOL_INPUT: pool_weights.astype(np.float32)}
        feeds.setdefault("token_type_ids", np.zeros_like(input_ids))
        return self._context(index).run(feeds, (batch, rows, self.hidden_size))

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Token states through one-hot pool rows, `max_rows` positions per encoder pass: for checks and tools,
        not for throughput (the pipeline sends pool weights)."""
        batch, seq = input_ids.shape
        step = max(p.max_rows for p in self.profiles if p.min_seq <= seq <= p.max_seq) if self.profiles else seq
        eye = np.eye(seq, dtype=np.float32)
        parts = [
            self.run_pooled(
                input_ids,
                attention_mask,
                np.ascontiguousarray(np.broadcast_to(eye[i : i + step], (batch, min(step, seq - i), seq))),
            )
            for i in range(0, seq, step)
        ]
        return np.concatenate(parts, axis=1)

    def close(self) -> None:
        with self._lock:
            for ctx in self._all:
                ctx.close()
            self._all.clear()
