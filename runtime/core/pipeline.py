"""From token sequences to pooled vectors: frame windows, batch them by token budget, run, stitch, pool.

Sequences that fit one window are sorted by length and packed under the token budget. Longer ones stream:
their windows (all exactly `plan.window` long, so no padding) go through the encoder in document order and
are folded into running span sums at once, so no document's full state matrix ever exists.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from longvec.runtime.backends import Backend
from longvec.runtime.bundle.manifest import Framing, PoolingConfig
from longvec.runtime.core.batching import pack_by_length, pad_batch
from longvec.runtime.core.stitch import DocumentStates, Stitch
from longvec.runtime.core.windows import WindowPlan


@dataclass(frozen=True)
class Job:
    ids: np.ndarray  # content token ids, no framing
    spans: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))  # content spans to mean-pool


@dataclass(frozen=True)
class Encoded:
    pooled: np.ndarray  # the model's own pooling over the whole sequence, not normalized
    span_means: np.ndarray  # [k, d] mean of stitched states over each job span
    window_pooled: np.ndarray  # [n_windows, d] the model's pooling of each window alone
    n_windows: int


@dataclass(frozen=True)
class Batching:
    max_tokens: int = 8192  # padded tokens per encoder call
    max_batch: int = 64


class Pipeline:
    def __init__(
        self,
        backend: Backend,
        framing: Framing,
        pooling: PoolingConfig,
        batching: Batching = Batching(),
    ) -> None:
        self.backend = backend
        self.framing = framing
        self.pooling = pooling
        self.batching = batching

    def run(
        self, jobs: list[Job], plan: WindowPlan, prompt_ids: tuple[int, ...] = (), stitch: Stitch = "center"
    ) -> list[Encoded]:
        prefix = np.asarray(self.framing.prefix_ids + tuple(prompt_ids), dtype=np.int64)
        suffix = np.asarray(self.framing.suffix_ids, dtype=np.int64)
        include_prefix = self.pooling.include_prompt or not prompt_ids
        docs = [
            DocumentStates(
                plan.starts(len(j.ids)),
                plan.content,
                len(j.ids),
                len(prefix),
                len(suffix),
                j.spans,
                self.backend.hidden_size,
                stitch,
                self.pooling.mode,
                include_prefix,
            )
            for j in jobs
        ]
        short = [i for i, j in enumerate(jobs) if len(j.ids) <= plan.content]
        lengths = [len(jobs[i].ids) + len(prefix) + len(suffix) for i in short]
        for batch in pack_by_length(lengths, self.batching.max_tokens, self.batching.max_batch):
            rows = [short[b] for b in batch.tolist()]
            seqs = [np.concatenate((prefix, jobs[r].ids, suffix)) for r in rows]
            states = self._run(seqs)
            for k, r in enumerate(rows):
                docs[r].add(0, states[k, : len(seqs[k])])
        long = [i for i, j in enumerate(jobs) if len(j.ids) > plan.content]
        per_call = max(1, min(self.batching.max_batch, self.batching.max_tokens // plan.window))
        for windows in _chunked(self._long_windows(jobs, long, docs), per_call):
            seqs = [np.concatenate((prefix, jobs[d].ids[s : s + plan.content], suffix)) for d, _, s in windows]
            states = self._run(seqs)
            for k, (d, w, _) in enumerate(windows):
                docs[d].add(w, states[k])
        return [Encoded(doc.pooled(), doc.span_means(), doc.window_pooled, len(doc.starts)) for doc in docs]

    def _run(self, seqs: list[np.ndarray]) -> np.ndarray:
        ids, mask = pad_batch(seqs, self.framing.pad_id)
        return self.backend.run(ids, mask)

    @staticmethod
    def _long_windows(jobs: list[Job], long: list[int], docs: list[DocumentStates]) -> Iterator[tuple[int, int, int]]:
        for d in long:
            for w, start in enumerate(docs[d].starts.tolist()):
                yield d, w, start


def _chunked(items: Iterator[tuple[int, int, int]], size: int) -> Iterator[list[tuple[int, int, int]]]:
    batch: list[tuple[int, int, int]] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
