"""onnxruntime-gpu: the CUDA execution provider with IO binding, and its TensorRT execution provider as an option.

NOT YET RUN ON A GPU. The IO-binding path (`BoundOrtBackend`) is one code path with the device a parameter: the
default test suite runs it against the real onnxruntime on the CPU device (tests/runtime/backends/test_gpu_backends.py),
and on a GPU it binds outputs to "cuda". The provider options and the call sequence follow onnxruntime's sources
(../shared/reviews/gpu-desk-check-2026-12-01.md).

Why IO binding: without it onnxruntime copies every output to pageable host memory after the run. With the pooled
graph only `pooled_sums` ([batch, rows, hidden], ~1/50 of the token states of a 256-token window) is copied back,
and inputs are staged in pinned (page-locked) host buffers so their upload is a DMA, not a bounce through a
staging copy. onnxruntime-gpu and onnxruntime install into the same `onnxruntime` package folder, so the CPU
build can shadow the GPU one: `runtime_report()` (`longvec inspect --runtime`) says which is active.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from longvec.runtime.backends.options import BackendOptions
from longvec.runtime.backends.ort_session import OrtBackend, make_session, session_options
from longvec.runtime.bundle.engines import GPU_MAX_BATCH, MAX_POOL_ROWS, Profile, cache_key, shape_option
from longvec.runtime.errors import BackendUnavailable, InputError

CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
# onnxruntime-gpu 1.30+ (CUDA 13) takes CUDA and cuDNN from the nvidia-* wheels of its extras, found only after
# onnxruntime.preload_dlls() (or with a system CUDA 13 + cuDNN 9 on the library path).
INSTALL_GPU = (
    "install onnxruntime-gpu with its CUDA and cuDNN libraries in place of onnxruntime: `pip uninstall -y "
    "onnxruntime onnxruntime-gpu && pip install 'onnxruntime-gpu[cuda,cudnn]' cuda-python` (both builds install into "
    "the same folder and the CPU build shadows the GPU one; uninstalling one removes files of the other; the "
    "current wheels need CUDA 13, NVIDIA driver r580 or newer); check with `longvec inspect --runtime`"
)
DEFAULT_CACHE = Path("~/.cache/longvec/tensorrt")

_preloaded: list[str] = []  # what onnxruntime.preload_dlls() said, once per process


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


def preload_cuda_libraries() -> str:
    """onnxruntime.preload_dlls(): load CUDA and cuDNN from the nvidia-* wheels before the first CUDA session
    (without it a CUDA session quietly comes up on the CPU where no system CUDA is installed). Once per process;
    returns what happened, for the error a failing session raises."""
    if not _preloaded:
        preload = getattr(ort, "preload_dlls", None)  # onnxruntime >= 1.21
        if preload is None:
            _preloaded.append(f"onnxruntime {ort.__version__} has no preload_dlls (system CUDA libraries only)")
        else:
            try:
                preload()
                _preloaded.append("preload_dlls() ran")
            except (OSError, RuntimeError) as e:  # a system CUDA may still serve; the session says
                _preloaded.append(f"preload_dlls() failed: {e}")
    return _preloaded[0]


def resolve_device(device: str) -> str:
    """ "cpu" stays CPU; "cuda" must have the CUDA provider (else BackendUnavailable saying what to install);
    "auto" is "cuda" when the provider is there (whether a GPU answers is checked when the session opens, at
    load: "auto" is decided there, never at the first embed)."""
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


def provider_profile(window: int | None) -> Profile:
    """The one optimization profile of a TensorRT-provider session (it builds several but runs only the first:
    open upstream issue): batches of 1..GPU_MAX_BATCH sequences up to the embedder's window, tuned at it."""
    longest = window or 512
    return Profile(1, GPU_MAX_BATCH, GPU_MAX_BATCH, 1, longest, longest, max_rows=MAX_POOL_ROWS)


def tensorrt_provider_options(
    cache_dir: Path, profile: Profile, input_names: tuple[str, ...], device_id: int = 0
) -> dict[str, str]:
    """TensorRT EP options: engine and timing caches in `cache_dir` (a folder keyed by GPU, compute capability,
    versions, graph and these options), and one explicit optimization profile. No `trt_fp16_enable`: TensorRT 11
    removed the FP16 builder flag (the option does nothing there) and on TensorRT 10 it would let the pooling
    MatMul run in fp16; the provider runs the fp32 graph as fp32 (TF32 where TensorRT picks it). An fp16 engine
    comes from `longvec build-engine` (a strongly typed fp16 graph, the pooling head kept fp32)."""
    return {
        "device_id": str(device_id),
        "trt_fp16_enable": "0",
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
    probe = tensorrt_provider_options(Path("."), provider_profile(options.window), input_names)
    settings = {k: v for k, v in probe.items() if "cache_path" not in k}  # the options that shape the engine
    digest = hashlib.sha256(repr(sorted(settings.items())).encode()).hexdigest()[:8]
    key = cache_key(identity.name, identity.compute_capability, identity.tensorrt, ort.__version__, graph_sha256)
    folder = (options.cache_dir or DEFAULT_CACHE).expanduser() / f"{key}-opt{digest}"
    folder.mkdir(parents=True, exist_ok=True)
    trt = (TENSORRT, tensorrt_provider_options(folder, provider_profile(options.window), input_names))
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
    """Host buffers reused across batches, one per input name, grown when a batch is larger: page-locked
    (cudaMallocHost) when `pinned`, else plain NumPy. Pinned memory is tried once when the staging is made (at
    load), so a cuda-python that cannot reach the driver shows there, as pageable staging named in `note`,
    never as a failure at the first embed."""

    def __init__(self, pinned: bool = True) -> None:
        cudart: Any = None
        self.note = "pageable inputs"
        if pinned:
            try:
                from cuda.bindings import runtime

                cudart = runtime
            except ImportError:
                self.note = "pageable inputs (no cuda-python)"
        self._cudart = cudart
        self._buffers: dict[str, np.ndarray] = {}
        self._pointers: dict[int, int] = {}  # id of a live buffer -> its pinned pointer
        if cudart is not None:
            err, ptr = cudart.cudaMallocHost(64)
            if int(err) != 0:
                self._cudart = None
                self.note = f"pageable inputs (cudaMallocHost failed: {err})"
            else:
                cudart.cudaFreeHost(ptr)
                self.note = "pinned inputs"
        self.pinned = self._cudart is not None

    def stage(self, name: str, array: np.ndarray) -> np.ndarray:
        buf = self._buffers.get(name)
        if buf is None or buf.dtype != array.dtype or buf.size < array.size:
            if buf is not None:
                self._free(buf)
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
        raw = (ctypes.c_byte * nbytes).from_address(int(ptr))
        buf = np.frombuffer(memoryview(raw).cast("B"), dtype=dtype, count=size)
        self._pointers[id(buf)] = int(ptr)
        return buf

    def _free(self, buf: np.ndarray) -> None:
        ptr = self._pointers.pop(id(buf), None)
        if ptr is not None and self._cudart is not None:
            self._cudart.cudaFreeHost(ptr)

    def close(self) -> None:
        for buf in list(self._buffers.values()):
            self._free(buf)
        self._buffers.clear()


class BoundOrtBackend(OrtBackend):
    """An onnxruntime session run through IO binding: inputs staged in host buffers (pinned on a GPU) and bound,
    the output left on `device` by the run and copied back once (only pooled sums for the pooled graph). One code
    path for every device: the default test suite runs it with device="cpu" against the real onnxruntime."""

    def __init__(
        self, session: ort.InferenceSession, path: Path, hidden_size: int, provider: str, device: str = "cuda"
    ) -> None:
        if device not in ("cpu", "cuda"):
            raise InputError(f"IO binding binds to 'cpu' or 'cuda', got {device!r}")
        self.device = device
        self._lock = threading.Lock()  # one binding and one set of staging buffers per backend
        self._staging = PinnedStaging(pinned=device == "cuda")
        super().__init__(session, path, hidden_size, f"{provider}, IO binding, {self._staging.note}")

    def _on_gpu(self) -> bool:
        return self.device == "cuda"

    def _execute(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        with self._lock:
            binding = self._session.io_binding()
            for name in self.input_names:
                # the input is copied to the device when it is bound (a blocking copy from a CPU OrtValue), so
                # the staging buffer is free again for the next batch once this returns
                binding.bind_cpu_input(name, self._staging.stage(name, feeds[name]))
            binding.bind_output(self.output_name, self.device, 0)
            self._session.run_with_iobinding(binding)
            return np.asarray(binding.copy_outputs_to_cpu()[0], dtype=np.float32)

    def close(self) -> None:
        self._staging.close()
        super().close()


def open_cuda(
    path: Path, names: tuple[str, ...], hidden_size: int, options: BackendOptions, graph_sha256: str | None = None
) -> BoundOrtBackend:
    """`names`: the graph's inputs (for the TensorRT provider's profile shapes)."""
    from longvec.runtime.bundle.reader import sha256_file

    preloaded = preload_cuda_libraries()
    identity = gpu_identity() if options.tensorrt_provider else None
    providers = provider_list(options, names, graph_sha256 or sha256_file(path), identity)
    session = make_session(path, session_options(options.threads), providers)
    active = session.get_providers()
    if not active or active[0] not in (CUDA, TENSORRT):
        raise BackendUnavailable(
            f"{path}: onnxruntime could not start the CUDA provider (no GPU, or CUDA libraries missing: "
            f"{preloaded}); the session would run on {active[:1]}. {INSTALL_GPU}"
        )
    if options.tensorrt_provider and active[0] != TENSORRT:  # asked for TensorRT, got CUDA: say so, never switch
        raise BackendUnavailable(
            f"{path}: onnxruntime's TensorRT provider did not start (the session would run on {active[0]}); "
            "install TensorRT's libraries where onnxruntime finds them (README, GPU)"
        )
    provider = f"onnxruntime {active[0]}"
    if active[0] == TENSORRT:
        provider += " (unfused fp32 graph, fp32 engine)"
    return BoundOrtBackend(session, path, hidden_size, provider, device="cuda")
