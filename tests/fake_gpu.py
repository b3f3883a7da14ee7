"""Fakes of `tensorrt` (10.x and 11.x) and `cuda.bindings.runtime`, as strict as the real modules where longvec's
code could go wrong. NOT a GPU: they check the calls made and move real bytes, nothing about what a GPU computes.

Taken from the real sources (NVIDIA/TensorRT tags v10.16 and v11.1: include/NvInfer.h, NvInferRuntimeBase.h,
python/src/infer/pyCore.cpp; cuda-bindings 13.5 docstrings; ../shared/reviews/gpu-desk-check-2026-12-01.md):
- NetworkDefinitionCreationFlag.STRONGLY_TYPED is 1 in TensorRT 10 and 0 in 11; BuilderFlag.FP16 (0) and INT8 (1)
  exist in 10 and are gone from 11; DataType FLOAT=0, HALF=1, INT8=2, INT32=3, INT64=8; TensorIOMode NONE, INPUT,
  OUTPUT; `nptype` raises TypeError for a type NumPy lacks.
- `set_input_shape` returns False for a shape outside the selected profile's range; `set_tensor_address` returns
  a bool; `set_optimization_profile_async` returns True or raises RuntimeError; `execute_async_v3` returns False
  when shapes or addresses are missing; `IOptimizationProfile.set_shape` raises RuntimeError unless
  min <= opt <= max; `add_optimization_profile` returns the profile's index (-1 when invalid).
- cuda-python returns (error, value...) tuples; `cudaStreamCreate` gives a stream object with `__int__`;
  `cudaMemcpyAsync` and `execute_async_v3` are queued on their stream and run only at `cudaStreamSynchronize`
  (so reading a result before synchronizing reads garbage: fresh allocations are filled with 0xFF, a NaN).
"""

from __future__ import annotations

import ctypes
import enum
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

CUDA_SUCCESS = 0
CUDA_ERROR_MEMORY_ALLOCATION = 2
CUDA_ERROR_INVALID_VALUE = 1
CUDA_ERROR_NO_DEVICE = 100


class FakeStream:
    """cudaStream_t: an object, `int()` gives the raw handle TensorRT takes."""

    def __init__(self, handle: int) -> None:
        self.handle = handle

    def __int__(self) -> int:
        return self.handle


class FakeCudart:
    """cuda.bindings.runtime as longvec uses it, with asynchronous copies."""

    cudaMemcpyKind = enum.IntEnum("cudaMemcpyKind", {"cudaMemcpyHostToDevice": 1, "cudaMemcpyDeviceToHost": 2})

    def __init__(self, devices: int = 1, pinned: bool = True) -> None:
        self.devices, self.pinned_ok = devices, pinned
        self.log: list[tuple[Any, ...]] = []
        self.live: dict[int, tuple[str, int, Any]] = {}  # pointer -> (kind, bytes, buffer)
        self.queues: dict[int, list[Callable[[], None]]] = {}
        self._next_stream = 7
        self._lock = threading.Lock()

    def cudaGetDeviceCount(self) -> tuple[int, int]:
        return (CUDA_SUCCESS, self.devices) if self.devices else (CUDA_ERROR_NO_DEVICE, 0)

    def _alloc(self, n: int, kind: str) -> tuple[int, int]:
        buf = ctypes.create_string_buffer(b"\xff" * n, n)  # garbage until written
        ptr = ctypes.addressof(buf)
        with self._lock:
            self.live[ptr] = (kind, n, buf)
        self.log.append(("malloc", kind, n))
        return CUDA_SUCCESS, ptr

    def cudaMalloc(self, n: int) -> tuple[int, int]:
        return self._alloc(n, "device")

    def cudaMallocHost(self, n: int) -> tuple[int, Any]:
        if not self.pinned_ok:
            return CUDA_ERROR_MEMORY_ALLOCATION, None
        return self._alloc(n, "host")

    def _free(self, ptr: int, kind: str) -> tuple[int]:
        with self._lock:
            if ptr not in self.live or self.live[ptr][0] != kind:
                return (CUDA_ERROR_INVALID_VALUE,)
            del self.live[ptr]
        self.log.append(("free", kind))
        return (CUDA_SUCCESS,)

    def cudaFree(self, ptr: int) -> tuple[int]:
        return self._free(ptr, "device")

    def cudaFreeHost(self, ptr: int) -> tuple[int]:
        return self._free(ptr, "host")

    def bytes_live(self, kind: str) -> int:
        return sum(n for k, n, _ in self.live.values() if k == kind)

    def cudaStreamCreate(self) -> tuple[int, FakeStream]:
        with self._lock:
            self._next_stream += 1
            stream = FakeStream(self._next_stream)
            self.queues[stream.handle] = []
        return CUDA_SUCCESS, stream

    def cudaStreamDestroy(self, stream: FakeStream) -> tuple[int]:
        if not isinstance(stream, FakeStream) or self.queues.pop(stream.handle, None) is None:
            return (CUDA_ERROR_INVALID_VALUE,)
        return (CUDA_SUCCESS,)

    def _inside(self, ptr: int, n: int, kind: str) -> bool:
        return any(k == kind and p <= ptr and ptr + n <= p + size for p, (k, size, _) in self.live.items())

    def cudaMemcpyAsync(self, dst: int, src: int, n: int, kind: Any, stream: FakeStream) -> tuple[int]:
        h2d = kind == self.cudaMemcpyKind.cudaMemcpyHostToDevice
        if not isinstance(stream, FakeStream) or kind not in tuple(self.cudaMemcpyKind):
            return (CUDA_ERROR_INVALID_VALUE,)
        if not (
            self._inside(dst, n, "device" if h2d else "host") and self._inside(src, n, "host" if h2d else "device")
        ):
            return (CUDA_ERROR_INVALID_VALUE,)
        self.log.append(("memcpy", "h2d" if h2d else "d2h", n))
        self.enqueue(stream.handle, lambda: ctypes.memmove(dst, src, n))
        return (CUDA_SUCCESS,)

    def enqueue(self, handle: int, work: Callable[[], Any]) -> None:
        self.queues[handle].append(work)

    def cudaStreamSynchronize(self, stream: FakeStream) -> tuple[int]:
        if not isinstance(stream, FakeStream):
            return (CUDA_ERROR_INVALID_VALUE,)
        queue = self.queues[stream.handle]
        while queue:
            queue.pop(0)()
        self.log.append(("sync", stream.handle))
        return (CUDA_SUCCESS,)


def _view(addr: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return np.frombuffer((ctypes.c_byte * n).from_address(addr), dtype=dtype).reshape(shape)


def trt_enums(version: str) -> SimpleNamespace:
    major = int(version.split(".")[0])
    data_type = enum.IntEnum("DataType", {"FLOAT": 0, "HALF": 1, "INT8": 2, "INT32": 3, "BOOL": 4, "INT64": 8})
    io_mode = enum.IntEnum("TensorIOMode", {"NONE": 0, "INPUT": 1, "OUTPUT": 2})
    if major >= 11:
        network = {"STRONGLY_TYPED": 0, "PREFER_JIT_PYTHON_PLUGINS": 1, "PREFER_AOT_PYTHON_PLUGINS": 2}
        builder = {"DEBUG": 2, "GPU_FALLBACK": 3, "REFIT": 4, "DISABLE_TIMING_CACHE": 5, "TF32": 6}
    else:
        network = {"STRONGLY_TYPED": 1, "PREFER_JIT_PYTHON_PLUGINS": 2, "PREFER_AOT_PYTHON_PLUGINS": 3}
        builder = {
            "FP16": 0,
            "INT8": 1,
            "DEBUG": 2,
            "GPU_FALLBACK": 3,
            "REFIT": 4,
            "DISABLE_TIMING_CACHE": 5,
            "TF32": 6,
        }
    numpy_types = {
        data_type.FLOAT: np.float32,
        data_type.HALF: np.float16,
        data_type.INT8: np.int8,
        data_type.INT32: np.int32,
        data_type.INT64: np.int64,
        data_type.BOOL: np.bool_,
    }

    def nptype(t: Any) -> Any:
        if t in numpy_types:
            return numpy_types[t]
        raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")

    return SimpleNamespace(
        __version__=version,
        DataType=data_type,
        TensorIOMode=io_mode,
        NetworkDefinitionCreationFlag=enum.IntEnum("NetworkDefinitionCreationFlag", network),
        BuilderFlag=enum.IntEnum("BuilderFlag", builder),
        ExecutionContextAllocationStrategy=enum.IntEnum(
            "ExecutionContextAllocationStrategy", {"STATIC": 0, "ON_PROFILE_CHANGE": 1, "USER_MANAGED": 2}
        ),
        nptype=nptype,
        Logger=type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None}),
    )


# ---------------------------------------------------------------------------------------------------------------
# The runtime: an engine of the pooled graph whose "network" is states[b, s, h] = input_id + h, pooled = w @ states


class FakeEngine:
    def __init__(
        self,
        trt: SimpleNamespace,
        cudart: FakeCudart,
        hidden: int,
        profiles: list[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]],
        dtypes: dict[str, Any],
    ) -> None:
        self.trt, self.cudart, self.hidden = trt, cudart, hidden
        self.profiles = profiles  # pool_weights [batch, rows, seq] (min, opt, max) per profile
        self.dtypes = dtypes  # name -> trt.DataType, inputs first, pooled_sums last
        self.contexts: list[FakeContext] = []

    @property
    def num_io_tensors(self) -> int:
        return len(self.dtypes)

    @property
    def num_optimization_profiles(self) -> int:
        return len(self.profiles)

    def get_tensor_name(self, i: int) -> str:
        return list(self.dtypes)[i]

    def get_tensor_mode(self, name: str) -> Any:
        modes = self.trt.TensorIOMode
        if name not in self.dtypes:
            return modes.NONE
        return modes.OUTPUT if name == "pooled_sums" else modes.INPUT

    def get_tensor_dtype(self, name: str) -> Any:
        return self.dtypes[name]

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        if name == "pooled_sums":
            return (-1, -1, self.hidden)
        return (-1, -1, -1) if name == "pool_weights" else (-1, -1)

    def get_tensor_profile_shape(self, name: str, index: int) -> list[tuple[int, ...]]:
        if not 0 <= index < len(self.profiles) or self.get_tensor_mode(name) != self.trt.TensorIOMode.INPUT:
            raise RuntimeError("get_tensor_profile_shape: invalid tensor or profile")
        lo, opt, hi = self.profiles[index]
        if name == "pool_weights":
            return [lo, opt, hi]
        return [(d[0], d[2]) for d in (lo, opt, hi)]

    def create_execution_context(self, strategy: Any = None) -> FakeContext:
        ctx = FakeContext(self)
        self.contexts.append(ctx)
        return ctx


class FakeContext:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.profile = 0  # a new context starts on profile 0
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.log: list[tuple[Any, ...]] = []

    def set_optimization_profile_async(self, index: int, stream_handle: int) -> bool:
        if not isinstance(stream_handle, int) or not 0 <= index < len(self.engine.profiles):
            raise RuntimeError("Error in set optimization profile async.")
        self.profile = index
        self.shapes.clear()  # shapes must be set again for the new profile
        self.log.append(("profile", index, threading.current_thread().name))
        return True

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        if self.engine.get_tensor_mode(name) != self.engine.trt.TensorIOMode.INPUT:
            return False
        lo, _, hi = self.engine.get_tensor_profile_shape(name, self.profile)
        if len(shape) != len(lo) or not all(a <= d <= b for a, d, b in zip(lo, shape, hi)):
            return False
        self.shapes[name] = tuple(int(d) for d in shape)
        return True

    def set_tensor_address(self, name: str, memory: int) -> bool:
        if name not in self.engine.dtypes or not isinstance(memory, int):
            return False
        self.addresses[name] = memory
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        e = self.engine
        inputs = [n for n in e.dtypes if n != "pooled_sums"]
        if set(self.shapes) != set(inputs) or set(self.addresses) != set(e.dtypes):
            return False
        b, s = self.shapes["input_ids"]
        rows = self.shapes["pool_weights"][1]
        if self.shapes["pool_weights"] != (b, rows, s) or self.shapes["attention_mask"] != (b, s):
            return False
        nptype = e.trt.nptype
        addresses = dict(self.addresses)

        def kernel() -> None:
            ids = _view(addresses["input_ids"], (b, s), nptype(e.dtypes["input_ids"]))
            w = _view(addresses["pool_weights"], (b, rows, s), nptype(e.dtypes["pool_weights"]))
            states = ids[..., None].astype(np.float32) + np.arange(e.hidden, dtype=np.float32)
            out = _view(addresses["pooled_sums"], (b, rows, e.hidden), nptype(e.dtypes["pooled_sums"]))
            out[...] = w.astype(np.float32) @ states

        e.cudart.enqueue(stream_handle, kernel)
        self.log.append(("execute_async_v3", self.profile))
        return True


def fake_runtime(
    version: str,
    cudart: FakeCudart,
    hidden: int = 3,
    profiles: list[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] | None = None,
    ids_dtype: str = "INT64",
    plan: bytes = b"plan",
) -> SimpleNamespace:
    """A `tensorrt` module whose Runtime deserializes `plan` into a FakeEngine (anything else: None)."""
    trt = trt_enums(version)
    profiles = profiles or [((1, 1, 1), (4, 4, 32), (8, 8, 32)), ((1, 1, 33), (8, 4, 64), (8, 8, 64))]
    dt = trt.DataType
    dtypes = {
        "input_ids": dt[ids_dtype],
        "attention_mask": dt[ids_dtype],
        "pool_weights": dt.FLOAT,
        "pooled_sums": dt.FLOAT,
    }
    trt.engines = []

    class Runtime:
        def __init__(self, logger: Any) -> None:
            pass

        def deserialize_cuda_engine(self, data: bytes) -> FakeEngine | None:
            if data != plan:
                return None
            engine = FakeEngine(trt, cudart, hidden, profiles, dtypes)
            trt.engines.append(engine)
            return engine

    trt.Runtime = Runtime
    return trt


# ---------------------------------------------------------------------------------------------------------------
# The builder


def fake_builder(version: str, log: list[tuple[Any, ...]], parses: bool = True) -> SimpleNamespace:
    """A `tensorrt` module for `build_plan`: records the calls and validates flags and profile shapes."""
    trt = trt_enums(version)
    known_network = {1 << int(f) for f in trt.NetworkDefinitionCreationFlag}

    class Cache:
        def serialize(self) -> bytes:
            return b"timing-after"

    class Config:
        def set_flag(self, flag: Any) -> None:
            if flag not in tuple(trt.BuilderFlag):
                raise TypeError(f"set_flag(): incompatible function arguments ({flag!r})")
            log.append(("set_flag", flag.name))

        def create_timing_cache(self, data: bytes) -> Cache:
            log.append(("create_timing_cache", data))
            return Cache()

        def set_timing_cache(self, cache: Cache, ignore_mismatch: bool) -> bool:
            log.append(("set_timing_cache", ignore_mismatch))
            return True

        def add_optimization_profile(self, profile: Profile) -> int:
            log.append(("add_optimization_profile", dict(profile.shapes)))
            return len([e for e in log if e[0] == "add_optimization_profile"]) - 1

        def get_timing_cache(self) -> Cache:
            return Cache()

    class Profile:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple[Any, ...]] = {}

        def set_shape(self, name: str, lo: Any, opt: Any, hi: Any) -> None:
            if not (len(lo) == len(opt) == len(hi)) or not all(a <= b <= c for a, b, c in zip(lo, opt, hi)):
                raise RuntimeError(f"set_shape: min <= opt <= max violated for {name}: {lo} {opt} {hi}")
            self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))

    class Builder:
        def __init__(self, logger: Any) -> None:
            pass

        def create_network(self, flags: int = 0) -> str:
            if flags & ~sum(known_network):
                raise RuntimeError(f"create_network: unknown flag bits {flags:#x}")
            log.append(("create_network", flags))
            return "network"

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: str, config: Config) -> bytes | None:
            log.append(("build_serialized_network", network))
            return b"plan-bytes"

    class OnnxParser:
        num_errors = 0 if parses else 1

        def __init__(self, network: str, logger: Any) -> None:
            pass

        def parse_from_file(self, path: str) -> bool:
            log.append(("parse_from_file", Path(path).name, _float_types(Path(path))))
            return parses

        def get_error(self, i: int) -> str:
            return "unsupported operator EmbedLayerNormalization"

    trt.Builder, trt.OnnxParser = Builder, OnnxParser
    return trt


def _float_types(path: Path) -> frozenset[str]:
    """Which float types the graph's initializers hold ("fp32", "fp16"): what a strongly typed build would run."""
    if not path.is_file():
        return frozenset()
    import onnx

    names = {onnx.TensorProto.FLOAT: "fp32", onnx.TensorProto.FLOAT16: "fp16"}
    model = onnx.load(str(path))
    return frozenset(names[t.data_type] for t in model.graph.initializer if t.data_type in names)
