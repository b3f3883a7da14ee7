"""onnxruntime sessions, shared by the CPU and GPU paths: session options, opening a graph with typed errors, the
choice of graph, and `OrtBackend`, one session run by `session.run` (the CPU) or through IO binding (`BoundOrtBackend`
in runtime.backends.ort_gpu, the GPU, with the device a parameter).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from longvec.runtime.backends.base import Capabilities, check_hidden_size, identity_rows
from longvec.runtime.backends.options import GraphFiles
from longvec.runtime.bundle.feeds import POOL_INPUT, encoder_feeds
from longvec.runtime.errors import BackendUnavailable, BundleError

_state = ort.capi.onnxruntime_pybind11_state
# The file is at fault (truncated, not ONNX, inconsistent): a bundle error naming it. Anything else, e.g. an
# operator this onnxruntime build lacks, means the engine is unavailable for this graph.
_BAD_GRAPH: tuple[type[Exception], ...] = (_state.Fail, _state.InvalidProtobuf, _state.InvalidGraph, _state.NoSuchFile)

# Which graph runs when the caller does not say (a variant without a pooled graph runs its state graph):
# - CPU: the pooled graph. bench/pooled_vs_states.py (3 interleaved runs, MiniLM, 2 threads, load 4-10 on 2 cores;
#   bench/RESULTS.md "Pooled graph on CPU"): pooled / states time 0.85-0.95 at 32 x 256 windows, 0.73-1.09 at
#   16 x 512, 0.96-1.02 for short queries, 0.82-1.23 end to end: never slower beyond the noise, faster at the
#   encoder in 8 of 9 batch rows (no [batch, seq, hidden] output to allocate and copy).
# - CUDA: the pooled graph, so only pooled sums cross to the host (copying every token state to the host cost
#   12-48% of a batch's time in torch on an H100: ../shared/FINDINGS.md "GPU").
DEFAULT_POOLED = {"cpu": True, "cuda": True}


def session_options(threads: int | None, spin: bool = False) -> ort.SessionOptions:
    """Chosen on measurements (bench/ort_options.py, bench/RESULTS.md "Performance"), 2 threads, shared CPU:
    - thread spinning (`spin`): off unless asked for. Idle pool threads spin-wait for the next batch by default,
      which on a CPU shared with other processes (a server's other workers, batch jobs, the tokenizer) steals the
      cores the work needs; Embedder.load turns it on for a library with the cores to itself. Measured under
      load with it off: short-query latency 0.33-0.45x, 16 x 256 windows 1.05-1.36x the default's throughput.
    - sequential execution, one inter-op thread: the parallel executor was 0.71x (the encoder graph is a chain).
    - ORT_ENABLE_ALL: lower levels were slower (basic 0.71-0.83x) and did not load faster.
    - memory pattern off: it allocates a plan per batch shape on that shape's second run (+140 MB for MiniLM at
      32 x 256), so a long document's peak RSS grew by 220 MB over a short one's in a cold process; without it
      10k -> 100k tokens grows 32 MB (bench/memory.py --no-warmup). No throughput gain from it was measured.
    - the arena stays on, IO binding is not used on CPU: no consistent gain measured (CPU outputs are copied once
      into NumPy, under 1% of a batch's time)."""
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


def make_session(path: Path, opts: ort.SessionOptions, providers: list[object]) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except _BAD_GRAPH as e:
        raise BundleError(path, f"onnxruntime cannot load this graph: {e}") from e
    except Exception as e:
        raise BackendUnavailable(f"{path}: {e}") from e


def choose_graph(files: GraphFiles, device: str, pooled: bool | None) -> Path:
    """The graph file to run: the pooled one where asked for (or the device's default) and present."""
    want = DEFAULT_POOLED[device] if pooled is None else pooled
    if want and files.pooled is not None:
        return files.pooled
    if pooled and files.pooled is None:
        raise BackendUnavailable("this variant has no pooled graph; add one with `longvec export --add-pooled BUNDLE`")
    if files.states is None:
        raise BackendUnavailable("this variant has only a pooled graph; run it with pooled=True")
    return files.states


class OrtBackend:
    """One onnxruntime session over a token-state graph or a pooled graph; `_execute` runs one batch's feeds and
    is what a subclass changes (IO binding on the GPU)."""

    def __init__(self, session: ort.InferenceSession, path: Path, hidden_size: int, provider: str) -> None:
        self._session = session
        self.input_names = tuple(i.name for i in session.get_inputs())
        self.output_name = session.get_outputs()[0].name
        pools = POOL_INPUT in self.input_names
        self.hidden_size = hidden_size
        self.capabilities = Capabilities(
            provider=provider + (" (pooled graph)" if pools else " (token-state graph)"),
            pools=pools,
            on_gpu=self._on_gpu(),
        )
        check_hidden_size(path, self._graph_hidden_size(), hidden_size)

    def _on_gpu(self) -> bool:
        return False

    def _execute(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self._session.run([self.output_name], feeds)[0], dtype=np.float32)

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        if self.capabilities.pools:  # identity rows: pooled sums of one-hot rows are the token states themselves
            return self.run_pooled(input_ids, attention_mask, identity_rows(input_ids.shape))
        return self._execute(encoder_feeds(self.input_names, input_ids, attention_mask))

    def run_pooled(self, input_ids: np.ndarray, attention_mask: np.ndarray, pool_weights: np.ndarray) -> np.ndarray:
        return self._execute(encoder_feeds(self.input_names, input_ids, attention_mask, pool_weights))

    def _graph_hidden_size(self) -> int:
        """The hidden size the graph really produces: its declared last output axis, or one tiny run when that
        axis is symbolic."""
        declared = self._session.get_outputs()[0].shape[-1]
        if isinstance(declared, int):
            return declared
        ids = np.ones((1, 2), dtype=np.int64)
        return int(self.run(ids, np.ones_like(ids)).shape[-1])

    def close(self) -> None:
        del self._session
