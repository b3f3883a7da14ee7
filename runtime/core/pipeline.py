"""From token sequences to pooled vectors: frame windows, batch them by token budget, run, pool.

Sequences that fit one window are sorted by length and packed under the token budget. Longer ones stream: their
windows (all exactly `plan.window` long, so no padding) go through the encoder batch by batch, and each batch's
pooled sums are folded into the sequences' running sums at once (runtime.core.stitch), so no document's full state
matrix ever exists. The pool weights go to the backend when it pools on its side (a pooled graph, e.g. on a GPU,
where only pooled vectors then cross to the host), or are applied to the returned token states here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from longvec.runtime.backends.base import Backend, Capabilities, pools_on_device
from longvec.runtime.bundle.engines import GPU_MAX_BATCH
from longvec.runtime.bundle.manifest import Framing, PoolingConfig
from longvec.runtime.core.batching import pack_by_length, pad_batch
from longvec.runtime.core.stitch import SequenceLayout, SequenceSums, Stitch, batch_rows, host_pool
from longvec.runtime.core.windows import WindowPlan


@dataclass(frozen=True)
class TokenSequence:
    """One text (or chunk) to encode: its content token ids and the content spans to mean-pool."""

    ids: np.ndarray  # content token ids, no framing
    spans: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))


@dataclass(frozen=True)
class Encoded:
    pooled: np.ndarray  # the model's own pooling over the whole sequence, not normalized
    span_means: np.ndarray  # [k, d] mean of stitched states over each span of the sequence
    window_pooled: np.ndarray  # [n_windows, d] the model's pooling of each window alone
    n_windows: int


@dataclass(frozen=True)
class Batching:
    max_tokens: int = 8192  # padded tokens per encoder call
    max_batch: int = 64
    # an encoder call's fixed cost in padded tokens, where batches of unequal lengths are cut
    # (batching.pack_by_length): ~20 for MiniLM under onnxruntime on this 2-core CPU (bench/batch_cost.py)
    call_tokens: int = 20

    @classmethod
    def for_backend(cls, capabilities: Capabilities, max_tokens: int | None = None) -> Batching:
        """The one batching policy, for every path that puts an Embedder in front of a backend (Embedder.load,
        Embedder.with_backend, the server): a GPU's larger batches unless the caller set a token budget
        (`max_tokens`), and never more windows per call than the engine admits (a TensorRT plan's profiles)."""
        batching = GPU_BATCHING if capabilities.on_gpu else cls()
        if max_tokens is not None:
            batching = replace(batching, max_tokens=max_tokens)
        limit = capabilities.max_batch
        if limit is not None and limit < batching.max_batch:
            batching = replace(batching, max_batch=limit)
        return batching


# A GPU wants far larger batches than a CPU: FINDINGS' H100 figures were measured at 256 windows x 512 tokens.
# NOT YET TUNED ON A GPU: 256 windows of 256 tokens per call, a starting point until a GPU run measures it; a
# call's fixed cost is far more tokens there (a GPU runs a small batch in about the time of its launch overhead).
GPU_BATCHING = Batching(max_tokens=65536, max_batch=GPU_MAX_BATCH, call_tokens=1024)


@dataclass(frozen=True)
class PipelineConfig:
    framing: Framing
    pooling: PoolingConfig
    batching: Batching = Batching()


class Pipeline:
    def __init__(self, backend: Backend, config: PipelineConfig) -> None:
        self.backend = backend
        self.config = config

    @property
    def batching(self) -> Batching:
        return self.config.batching

    def run(
        self, seqs: list[TokenSequence], plan: WindowPlan, prompt_ids: tuple[int, ...] = (), stitch: Stitch = "center"
    ) -> list[Encoded]:
        framing, batching = self.config.framing, self.config.batching
        prefix = np.asarray(framing.prefix_ids + tuple(prompt_ids), dtype=np.int64)
        suffix = np.asarray(framing.suffix_ids, dtype=np.int64)
        include_prefix = self.config.pooling.include_prompt or not prompt_ids
        sums = [
            SequenceSums(
                SequenceLayout(
                    starts=plan.starts(len(s.ids)),
                    content=min(plan.content, len(s.ids)),
                    n_tokens=len(s.ids),
                    prefix=len(prefix),
                    suffix=len(suffix),
                    spans=s.spans,
                    stitch=stitch,
                    pooling=self.config.pooling.mode,
                    include_prefix=include_prefix,
                ),
                self.backend.hidden_size,
            )
            for s in seqs
        ]
        short = [i for i, s in enumerate(seqs) if len(s.ids) <= plan.content]
        lengths = [len(seqs[i].ids) + len(prefix) + len(suffix) for i in short]
        for batch in pack_by_length(lengths, batching.max_tokens, batching.max_batch, batching.call_tokens):
            rows = [short[b] for b in batch.tolist()]
            framed = [np.concatenate((prefix, seqs[r].ids, suffix)) for r in rows]
            self._run(framed, [(sums[r], 0) for r in rows])
        long = [i for i, s in enumerate(seqs) if len(s.ids) > plan.content]
        per_call = max(1, min(batching.max_batch, batching.max_tokens // plan.window))
        for windows in _chunked(_windows_of(long, sums), per_call):
            framed = [
                np.concatenate((prefix, seqs[d].ids[s : s + plan.content], suffix))
                for d, w in windows
                for s in (int(sums[d].layout.starts[w]),)
            ]
            self._run(framed, [(sums[d], w) for d, w in windows])
        return [Encoded(s.pooled(), s.span_means(), s.window_pooled, s.layout.n_windows) for s in sums]

    def _run(self, framed: list[np.ndarray], items: list[tuple[SequenceSums, int]]) -> None:
        ids, mask = pad_batch(framed, self.config.framing.pad_id)
        rows = batch_rows(items, ids.shape[1])
        if pools_on_device(self.backend):
            pooled = self.backend.run_pooled(ids, mask, rows.weights)
        else:
            pooled = host_pool(self.backend.run(ids, mask), rows.weights)
        rows.add(pooled)


def _windows_of(long: list[int], sums: list[SequenceSums]) -> Iterator[tuple[int, int]]:
    for d in long:
        for w in range(sums[d].layout.n_windows):
            yield d, w


def _chunked(items: Iterator[tuple[int, int]], size: int) -> Iterator[list[tuple[int, int]]]:
    batch: list[tuple[int, int]] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
