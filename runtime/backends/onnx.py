"""onnxruntime backend (CPU; CUDA where onnxruntime-gpu is installed)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from longvec.runtime.errors import BackendUnavailable, BundleError

_state = ort.capi.onnxruntime_pybind11_state
# The file is at fault (truncated, not ONNX, inconsistent): a bundle error naming it. Anything else, e.g. an
# operator this onnxruntime build lacks, means the engine is unavailable for this graph.
_BAD_GRAPH: tuple[type[Exception], ...] = (_state.Fail, _state.InvalidProtobuf, _state.InvalidGraph, _state.NoSuchFile)


def session_options(threads: int | None) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    # One request at a time per session: intra-op threads do the work, inter-op parallelism only adds
    # scheduling overhead for a sequential encoder graph.
    opts.intra_op_num_threads = threads or os.cpu_count() or 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return opts


class OrtBackend:
    def __init__(self, path: Path, hidden_size: int, threads: int | None = None) -> None:
        providers = [p for p in ("CUDAExecutionProvider",) if p in ort.get_available_providers()]
        try:
            self._session = ort.InferenceSession(
                str(path),
                sess_options=session_options(threads),
                providers=[*providers, "CPUExecutionProvider"],
            )
        except _BAD_GRAPH as e:
            raise BundleError(path, f"onnxruntime cannot load this graph: {e}") from e
        except Exception as e:
            raise BackendUnavailable(f"{path}: {e}") from e
        self.input_names = tuple(i.name for i in self._session.get_inputs())
        self.output_name = self._session.get_outputs()[0].name
        self.hidden_size = hidden_size

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self.input_names:
            feeds["token_type_ids"] = np.zeros_like(input_ids)
        states = self._session.run([self.output_name], {k: feeds[k] for k in self.input_names})[0]
        return np.asarray(states, dtype=np.float32)

    def close(self) -> None:
        del self._session
