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


def session_options(threads: int | None, spin: bool = False) -> ort.SessionOptions:
    """Chosen on measurements (bench/ort_options.py, bench/RESULTS.md "Performance"), 2 threads, shared CPU:
    - `spin=False` (Embedder.load chooses per use: spinning for a library on a dedicated machine, none for the
      server): no thread spinning: idle pool threads spin-wait for work by default; on a CPU shared with other processes
      (a server's other workers, batch jobs, the tokenizer) the spinning steals the cores the work needs. Measured
      under load: short-query latency 0.33-0.45x, 16 x 256 windows 1.05-1.36x the default's throughput.
    - sequential execution, one inter-op thread: the parallel executor was 0.71x (the encoder graph is a chain).
    - ORT_ENABLE_ALL: lower levels were slower (basic 0.71-0.83x) and did not load faster.
    - memory pattern off: it allocates a plan per batch shape on that shape's second run (+140 MB for MiniLM at
      32 x 256), so a long document's peak RSS grew by 220 MB over a short one's in a cold process; without it
      10k -> 100k tokens grows 32 MB (bench/memory.py --no-warmup). No throughput gain from it was measured.
    - the arena stays on, IO binding is not used: no consistent gain measured (CPU outputs are copied once into
      NumPy, under 1% of a batch's time)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or os.cpu_count() or 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "1" if spin else "0")
    opts.enable_mem_pattern = False
    opts.log_severity_level = 3
    return opts


class OrtBackend:
    def __init__(self, path: Path, hidden_size: int, threads: int | None = None, spin: bool = False) -> None:
        providers = [p for p in ("CUDAExecutionProvider",) if p in ort.get_available_providers()]
        try:
            self._session = ort.InferenceSession(
                str(path),
                sess_options=session_options(threads, spin),
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
