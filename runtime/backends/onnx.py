"""The onnxruntime engine: `open(files, hidden_size, options)` opens a variant's graph on the device asked for.

The device is what the caller asked for, never switched silently: `device="cpu"` runs the CPU provider even where
onnxruntime-gpu is installed; "cuda" fails with BackendUnavailable when CUDA cannot run; "auto" picks CUDA only
when a session really runs on it (decided here, at load), and the capabilities' `provider` says which one runs.
Sessions themselves: runtime.backends.ort_session (CPU) and runtime.backends.ort_gpu (CUDA, TensorRT provider).
"""

from __future__ import annotations

from longvec.runtime.backends.base import Backend
from longvec.runtime.backends.options import BackendOptions, GraphFiles
from longvec.runtime.backends.ort_gpu import open_cuda, resolve_device
from longvec.runtime.backends.ort_session import OrtBackend, choose_graph, make_session, session_options
from longvec.runtime.bundle.feeds import POOL_INPUT
from longvec.runtime.errors import BackendUnavailable, InputError


def open(files: GraphFiles, hidden_size: int, options: BackendOptions) -> Backend:
    device = resolve_device(options.device)
    if options.tensorrt_provider and device == "cpu":
        if options.device == "cpu":
            raise InputError("tensorrt_provider=True runs on a GPU: load with device='cuda' (or 'auto')")
        raise BackendUnavailable("tensorrt_provider=True but onnxruntime has no CUDA provider here (device='auto')")
    if device == "cuda":
        path = choose_graph(files, "cuda", options.pooled)
        names = files.input_names + ((POOL_INPUT,) if path == files.pooled else ())
        try:
            return open_cuda(path, names, hidden_size, options)
        except BackendUnavailable:
            if options.device != "auto" or options.tensorrt_provider:
                raise
    path = choose_graph(files, "cpu", options.pooled)
    session = make_session(path, session_options(options.threads, options.spin), ["CPUExecutionProvider"])
    return OrtBackend(session, path, hidden_size, "onnxruntime CPUExecutionProvider")
