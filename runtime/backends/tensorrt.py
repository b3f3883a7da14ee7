"""The native TensorRT engine: a serialized plan of the pooled graph (built by `longvec build-engine`), run with
`execute_async_v3` on buffers managed through cuda-python.

NOT YET RUN ON A GPU: tested only against fakes of the `tensorrt` (10.x and 11.x) and `cuda.bindings.runtime`
modules that are as strict as the real ones where it matters (tests/runtime/backends/test_tensorrt_backend.py:
copies are asynchronous and land only when the stream is synchronized, `set_input_shape` returns False out of
a profile's range, `set_optimization_profile_async` raises, tensor modes and dtypes are queried); they check the
calls made, not what a GPU computes.

Buffers come from cuda-python's `cuda.bindings.runtime` rather than CuPy: it is a thin binding of the CUDA runtime
(a few MB, no array library, no kernel compiler), and all this backend needs is malloc, pinned host memory, async
copies and a stream. Memory: each thread that runs batches gets ONE execution context (contexts are not
thread-safe) that switches optimization profiles as batches need them (the tightest profile that holds the
batch), and its device and pinned buffers grow with the batches it has seen, not to a profile's maximum: real
batches use 1-10 pool rows of the 256 a profile admits (the old layout, a context per profile sized for its
maximum, held ~730 MiB device + 730 MiB pinned per thread for MiniLM's 5 profiles).
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from longvec.runtime.backends.base import Backend, Capabilities, check_hidden_size
from longvec.runtime.backends.options import BackendOptions, GraphFiles
from longvec.runtime.bundle.engines import Profile, select_profile
from longvec.runtime.bundle.feeds import FED, POOL_INPUT, POOL_OUTPUT, encoder_feeds
from longvec.runtime.errors import BackendUnavailable, BundleError, InputError

INSTALL_TENSORRT = (
    "the tensorrt backend needs NVIDIA's TensorRT and cuda-python: "
    "pip install --extra-index-url https://pypi.nvidia.com tensorrt-cu13 cuda-python (see README, GPU)"
)


def open(files: GraphFiles, hidden_size: int, options: BackendOptions) -> Backend:
    """The engine's factory: the variant's plan on the GPU (a plan runs only on the GPU it was built for)."""
    path = files.pooled or files.states
    if path is None:
        raise BackendUnavailable("this TensorRT variant names no plan file")
    if options.device == "cpu":  # say so, never switch silently
        raise BackendUnavailable(f"{path.name} is a TensorRT plan: load it with device='cuda'")
    if options.tensorrt_provider:
        raise InputError(f"{path.name} is a TensorRT plan run natively; tensorrt_provider is for onnxruntime graphs")
    return TensorRTBackend(path, hidden_size)


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
    if not rest:
        return None
    return rest[0] if len(rest) == 1 else tuple(rest)


class _Context:
    """One thread's execution context and stream, the profile it is set to, and its device and pinned host
    buffers per tensor, grown (never shrunk) to the largest batch this thread has run."""

    def __init__(self, engine: Any, cudart: Any) -> None:
        self.cudart = cudart
        self.context = engine.create_execution_context()
        if self.context is None:
            raise BackendUnavailable("TensorRT could not create an execution context (out of device memory?)")
        self.stream = _check(cudart.cudaStreamCreate())
        self.stream_handle = int(self.stream)  # TensorRT takes the raw cudaStream_t handle, cuda-python its object
        self.profile = -1
        self.capacity: dict[str, int] = {}
        self.device: dict[str, int] = {}
        self.host: dict[str, int] = {}

    def _buffers(self, name: str, nbytes: int) -> None:
        if self.capacity.get(name, 0) >= nbytes:
            return
        if name in self.capacity:
            _check(self.cudart.cudaFree(self.device.pop(name)))
            _check(self.cudart.cudaFreeHost(self.host.pop(name)))
        size = max(nbytes, 2 * self.capacity.get(name, 0))
        self.device[name] = int(_check(self.cudart.cudaMalloc(size)))
        self.host[name] = int(_check(self.cudart.cudaMallocHost(size)))
        self.capacity[name] = size

    def run(self, profile: int, feeds: dict[str, np.ndarray], out: np.ndarray) -> np.ndarray:
        cudart, ctx = self.cudart, self.context
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        if profile != self.profile:  # ordered on the stream the batch is enqueued on
            try:
                ctx.set_optimization_profile_async(profile, self.stream_handle)
            except RuntimeError as e:  # the binding raises rather than returning False
                raise BackendUnavailable(f"TensorRT could not switch to optimization profile {profile}: {e}") from e
            self.profile = profile
        for name, array in feeds.items():
            self._buffers(name, array.nbytes)
            ctypes.memmove(self.host[name], array.ctypes.data, array.nbytes)  # into pinned memory: a DMA upload
            _check(cudart.cudaMemcpyAsync(self.device[name], self.host[name], array.nbytes, h2d, self.stream))
            if not ctx.set_input_shape(name, tuple(array.shape)):
                raise InputError(
                    f"TensorRT refused {name} of shape {tuple(array.shape)} for optimization profile {profile}"
                )
            if not ctx.set_tensor_address(name, self.device[name]):
                raise BackendUnavailable(f"TensorRT refused the address of {name}")
        self._buffers(POOL_OUTPUT, out.nbytes)
        if not ctx.set_tensor_address(POOL_OUTPUT, self.device[POOL_OUTPUT]):
            raise BackendUnavailable(f"TensorRT refused the address of {POOL_OUTPUT}")
        if not ctx.execute_async_v3(self.stream_handle):
            raise BackendUnavailable("TensorRT execute_async_v3 failed")
        _check(cudart.cudaMemcpyAsync(self.host[POOL_OUTPUT], self.device[POOL_OUTPUT], out.nbytes, d2h, self.stream))
        _check(cudart.cudaStreamSynchronize(self.stream))  # the host buffer holds the sums only after this
        ctypes.memmove(out.ctypes.data, self.host[POOL_OUTPUT], out.nbytes)
        return out

    def close(self) -> None:
        for ptr in self.device.values():
            self.cudart.cudaFree(ptr)
        for ptr in self.host.values():
            self.cudart.cudaFreeHost(ptr)
        self.device.clear()
        self.host.clear()
        self.cudart.cudaStreamDestroy(self.stream)


class TensorRTBackend:
    """Runs a pooled-graph plan; token states (`run`) come from identity pool rows, within the profile's rows.
    Tensor names, modes and dtypes are read from the engine, not assumed."""

    def __init__(self, path: Path, hidden_size: int, modules: tuple[ModuleType, Any] | None = None) -> None:
        self._trt, self._cudart = modules or _import_modules()
        trt, cudart = self._trt, self._cudart
        count = cudart.cudaGetDeviceCount()  # a machine without a GPU is an unavailable engine, not a bad plan
        if int(count[0]) != 0 or int(count[1]) < 1:
            raise BackendUnavailable(f"{path}: no CUDA device answers ({count[0]}); a TensorRT plan needs its GPU")
        _check(cudart.cudaStreamDestroy(_check(cudart.cudaStreamCreate())))  # the CUDA runtime works: at load
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = self._runtime.deserialize_cuda_engine(Path(path).read_bytes())
        if engine is None:
            raise BundleError(path, "TensorRT cannot deserialize this plan (built for another GPU or TensorRT?)")
        self._engine = engine
        self.hidden_size = hidden_size
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        modes = {n: engine.get_tensor_mode(n) for n in names}
        self._inputs = tuple(n for n in names if modes[n] == trt.TensorIOMode.INPUT)
        outputs = [n for n in names if modes[n] == trt.TensorIOMode.OUTPUT]
        if outputs != [POOL_OUTPUT] or POOL_INPUT not in self._inputs:
            raise BundleError(path, f"not a pooled-graph plan (inputs {self._inputs}, outputs {outputs})")
        unknown = [n for n in self._inputs if n not in FED]
        if unknown:
            raise BundleError(path, f"the plan has inputs {unknown}; longvec feeds only {', '.join(FED)}")
        try:
            self._dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        except TypeError as e:
            raise BundleError(path, f"a tensor of this plan has no NumPy dtype ({e})") from e
        check_hidden_size(path, int(engine.get_tensor_shape(POOL_OUTPUT)[-1]), hidden_size)
        self.profiles = [self._profile(i) for i in range(engine.num_optimization_profiles)]
        if not self.profiles:
            raise BundleError(path, "the plan has no optimization profile")
        self.capabilities = Capabilities(
            provider=f"tensorrt {getattr(trt, '__version__', '?')} (pooled plan, {len(self.profiles)} profiles)",
            pools=True,
            on_gpu=True,
            max_batch=max(p.max_batch for p in self.profiles),  # the runtime never sends a larger batch
            max_seq=max(p.max_seq for p in self.profiles),  # Embedder.load refuses a longer window
        )
        self._local = threading.local()  # per thread: its _Context
        self._all: list[_Context] = []
        self._lock = threading.Lock()

    def _profile(self, index: int) -> Profile:
        lo, opt, hi = self._engine.get_tensor_profile_shape(POOL_INPUT, index)  # [batch, rows, seq] each
        return Profile(lo[0], opt[0], hi[0], lo[2], opt[2], hi[2], max_rows=hi[1])

    def _context(self) -> _Context:
        ctx: _Context | None = getattr(self._local, "context", None)
        if ctx is None:
            ctx = _Context(self._engine, self._cudart)
            self._local.context = ctx
            with self._lock:
                self._all.append(ctx)
        return ctx

    def run_pooled(self, input_ids: np.ndarray, attention_mask: np.ndarray, pool_weights: np.ndarray) -> np.ndarray:
        batch, seq = input_ids.shape
        rows = pool_weights.shape[1]
        try:
            index = select_profile(self.profiles, batch, seq, rows)
        except ValueError as e:
            raise InputError(f"this TensorRT plan cannot run the batch: {e}") from e
        feeds = encoder_feeds(self._inputs, input_ids, attention_mask, pool_weights)
        typed = {n: np.ascontiguousarray(a, dtype=self._dtypes[n]) for n, a in feeds.items()}
        out = np.empty((batch, rows, self.hidden_size), dtype=self._dtypes[POOL_OUTPUT])
        return self._context().run(index, typed, out).astype(np.float32, copy=False)

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Token states through one-hot pool rows, `max_rows` positions per encoder pass: for checks and tools,
        not for throughput (the pipeline sends pool weights)."""
        batch, seq = input_ids.shape
        fitting = [p.max_rows for p in self.profiles if p.min_seq <= seq <= p.max_seq]
        step = max(fitting) if fitting else seq
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
