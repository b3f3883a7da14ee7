"""onnxruntime-gpu: the CUDA execution provider with IO binding, and its TensorRT execution provider as an option.

NOT YET RUN ON A GPU: every function here is exercised on CPU only, with a recording fake of onnxruntime
(tests/runtime/test_gpu_backends.py). The option names and call sequence follow onnxruntime's documentation.

Why IO binding: without it onnxruntime copies every output to pageable host memory after the run. With the pooled
graph only `pooled_sums` ([batch, rows, hidden], ~1/50 of the token states of a 256-token window) is copied back,
and inputs are staged in pinned (page-locked) host buffers so their upload is a DMA, not a bounce through a
staging copy. onnxruntime-gpu and onnxruntime install into the same `onnxruntime` package folder, so the CPU
build can shadow the GPU one: `runtime_report()` (`longvec inspect --runtime`) says which is active.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from longvec.runtime.backends import Backend
from longvec.runtime.backends.onnx import OrtBackend, identity_rows, make_session, session_options
from longvec.runtime.backends.options import BackendOptions
from longvec.runtime.bundle.engines import GPU_MAX_BATCH, Profile, cache_key, shape_option
from longvec.runtime.bundle.feeds import encoder_feeds
from longvec.runtime.errors import BackendUnavailable

CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
INSTALL_GPU = (
    "install onnxruntime-gpu in place of onnxruntime: `pip install 'longvec[gpu]' && pip uninstall -y onnxruntime "
    "onnxruntime-gpu && pip install --no-deps onnxruntime-gpu` (both install into the same folder and the CPU build "
    "shadows the GPU one; uninstalling one removes files of the other); check with `longvec inspect --runtime`"
)
DEFAULT_CACHE = Path("~/.cache/longvec/tensorrt")
# onnxruntime's TensorRT provider builds several optimization profiles but runs only the first (open upstream
# issue), so a session gets exactly one: the window length most batches have.
DEFAULT_TRT_PROFILE = Profile(1, GPU_MAX_BATCH, GPU_MAX_BATCH, 1, 256, 512)


@dataclass(frozen=True)
class GpuIdentity:
    name: str
    compute_capability: str
    tensorrt: str


def runtime_report() -> dict[str, Any]:
    """Which onnxruntime build is importable, its version, its providers and a hint when it cannot use a GPU."""
    providers = list(ort.get_available_providers())
    build = "onnxruntime-gpu" if CUDA in providers else "onnxruntime (CPU build)"
    report: dict[str, Any] = {"build": build, "version": ort.__version__, "providers": providers, "path": ort.__file__}
    if CUDA not in providers:
        report["hint"] = "no CUDA provider: " + INSTALL_GPU
    return report


def resolve_device(device: str) -> str:
    """ "cpu" stays CPU; "cuda" must have the CUDA provider (else BackendUnavailable saying what to install);
    "auto" is "cuda" when the provider is there (whether a GPU answers is checked when the session opens)."""
    if device == "cpu":
        return "cpu"
    has_cuda = CUDA in ort.get_available_providers()
    if device == "cuda" and not has_cuda:
        raise BackendUnavailable(f"device='cuda' but onnxruntime {ort.__version__} has no CUDA provider: {INSTALL_GPU}")
    return "cuda" if has_cuda else "cpu"


def cuda_provider_options(device_id: int = 0) -> dict[str, str]:
    """CUDA EP options: a fixed device, the arena grown only by what was asked (batches vary in shape), cuDNN's
    exhaustive convolution search off (an encoder has no convolutions; the search only delays the first run)."""
    return {
        "device_id": str(device_id),
        "arena_extend_strategy": "kSameAsRequested",
        "cudnn_conv_algo_search": "HEURISTIC",
        "do_copy_in_default_stream": "1",
    }


def tensorrt_provider_options(
    cache_dir: Path, profile: Profile, input_names: tuple[str, ...], fp16: bool = True, device_id: int = 0
) -> dict[str, str]:
    """TensorRT EP options: fp16, engine and timing caches in `cache_dir` (a folder already keyed by GPU,
    compute capability, versions and graph sha256), and one explicit optimization profile."""
    return {
        "device_id": str(device_id),
        "trt_fp16_enable": "1" if fp16 else "0",
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": str(cache_dir),
        "trt_timing_cache_enable": "1",
        "trt_timing_cache_path": str(cache_dir),
        "trt_profile_min_shapes": shape_option(profile.shapes(input_names, "min")),
        "trt_profile_opt_shapes": shape_option(profile.shapes(input_names, "opt")),
        "trt_profile_max_shapes": shape_option(profile.shapes(input_names, "max")),
    }


def provider_list(
    options: BackendOptions, input_names: tuple[str, ...], graph_sha256: str, identity: GpuIdentity | None
) -> list[Any]:
    """Providers in priority order for a session on the GPU; the TensorRT provider only when asked for."""
    cuda = (CUDA, cuda_provider_options())
    if not options.tensorrt_provider:
        return [cuda, "CPUExecutionProvider"]
    if identity is None:
        raise BackendUnavailable(
            "the TensorRT provider needs cuda-python to name its engine cache: pip install cuda-python"
        )
    key = cache_key(identity.name, identity.compute_capability, identity.tensorrt, ort.__version__, graph_sha256)
    folder = (options.cache_dir or DEFAULT_CACHE).expanduser() / key
    folder.mkdir(parents=True, exist_ok=True)
    trt = (TENSORRT, tensorrt_provider_options(folder, DEFAULT_TRT_PROFILE, input_names))
    return [trt, cuda, "CPUExecutionProvider"]


def gpu_identity(device_id: int = 0) -> GpuIdentity | None:
    """GPU name, compute capability and TensorRT version (for cache keys), or None without cuda-python."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        return None
    err, props = cudart.cudaGetDeviceProperties(device_id)
    if int(err) != 0:
        raise BackendUnavailable(f"no CUDA device {device_id} answers ({err})")
    try:
        import tensorrt

        trt_version = str(tensorrt.__version__)
    except ImportError:
        trt_version = "none"
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return GpuIdentity(name.rstrip("\x00"), f"{props.major}.{props.minor}", trt_version)


class PinnedStaging:
    """Page-locked host buffers reused across batches, one per input name, grown when a batch is larger; plain
    NumPy buffers when cuda-python is not installed (`pinned` says which)."""

    def __init__(self) -> None:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            cudart = None
        self._cudart = cudart
        self.pinned = cudart is not None
        self._buffers: dict[str, np.ndarray] = {}
        self._pointers: list[int] = []

    def stage(self, name: str, array: np.ndarray) -> np.ndarray:
        buf = self._buffers.get(name)
        if buf is None or buf.dtype != array.dtype or buf.size < array.size:
            buf = self._allocate(array.dtype, max(array.size, 2 * (0 if buf is None else buf.size)))
            self._buffers[name] = buf
        view = buf[: array.size].reshape(array.shape)
        np.copyto(view, array)
        return view

    def _allocate(self, dtype: np.dtype, size: int) -> np.ndarray:
        if self._cudart is None:
            return np.empty(size, dtype=dtype)
        import ctypes

        nbytes = int(size * np.dtype(dtype).itemsize)
        err, ptr = self._cudart.cudaMallocHost(nbytes)
        if int(err) != 0:
            raise BackendUnavailable(f"cudaMallocHost({nbytes}) failed ({err})")
        self._pointers.append(int(ptr))
        raw = (ctypes.c_byte * nbytes).from_address(int(ptr))
        return np.frombuffer(memoryview(raw).cast("B"), dtype=dtype, count=size)

    def close(self) -> None:
        self._buffers.clear()
        if self._cudart is not None:
            for ptr in self._pointers:
                self._cudart.cudaFreeHost(ptr)
        self._pointers.clear()


class CudaOrtBackend(OrtBackend):
    """An onnxruntime session on the GPU, run through IO binding: inputs staged in pinned host buffers, the output
    left on the device by the run and copied back once (only pooled sums when the graph is the pooled one)."""

    on_gpu = True

    def __init__(self, session: ort.InferenceSession, path: Path, hidden_size: int, provider: str) -> None:
        self._lock = threading.Lock()  # one binding and one set of staging buffers per backend
        self._staging = PinnedStaging()
        super().__init__(session, path, hidden_size, provider + (", pinned inputs" if self._staging.pinned else ""))

    def _bound_run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        with self._lock:
            binding = self._session.io_binding()
            for name in self.input_names:
                binding.bind_cpu_input(name, self._staging.stage(name, feeds[name]))
            binding.bind_output(self.output_name, "cuda", 0)
            self._session.run_with_iobinding(binding)
            return np.asarray(binding.copy_outputs_to_cpu()[0], dtype=np.float32)

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        if self.pools:
            return self.run_pooled(input_ids, attention_mask, identity_rows(input_ids.shape))
        return self._bound_run(encoder_feeds(self.input_names, input_ids, attention_mask))

    def run_pooled(self, input_ids: np.ndarray, attention_mask: np.ndarray, pool_weights: np.ndarray) -> np.ndarray:
        return self._bound_run(encoder_feeds(self.input_names, input_ids, attention_mask, pool_weights))

    def close(self) -> None:
        self._staging.close()
        super().close()


def open_cuda(
    path: Path, names: tuple[str, ...], hidden_size: int, options: BackendOptions, graph_sha256: str | None = None
) -> Backend:
    """`names`: the graph's inputs (for the TensorRT provider's profile shapes)."""
    from longvec.runtime.bundle.reader import sha256_file

    identity = gpu_identity() if options.tensorrt_provider else None
    providers = provider_list(options, names, graph_sha256 or sha256_file(path), identity)
    session = make_session(path, session_options(options.threads), providers)
    active = session.get_providers()
    if not active or active[0] not in (CUDA, TENSORRT):
        raise BackendUnavailable(
            f"{path}: onnxruntime could not start the CUDA provider (no GPU, or CUDA libraries missing); "
            f"the session would run on {active[:1]}. {INSTALL_GPU}"
        )
    return CudaOrtBackend(session, path, hidden_size, f"onnxruntime {active[0]}")
