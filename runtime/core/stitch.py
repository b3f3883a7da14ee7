"""Stitching as pooling weights: each window contributes `weights_w @ states_w` to running per-span sums.

Coordinates: the stitched sequence is the first window's prefix (framing + prompt), then one state per content
token, then the last window's suffix framing. For a text that fits one window this is exactly that window, so a
short text pools exactly as sentence-transformers pools it. Every pooled quantity (the document's mean, each chunk
span, each window's own pooling) is linear in the window states, so a window is folded into float64 running sums
as soon as it is encoded, in any order, and memory is O(window x hidden + spans x hidden) plus one pooled vector
per window, never O(tokens x hidden). The weight rows are built here (kernels.pool_weights) and applied either by
the backend on the device (a pooled graph) or on the host by `host_pool`: one code path for every engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from longvec.kernels.pool_weights import center_stitch_weights, overlap_stitch_weights, own_rows, span_rows
from longvec.runtime.bundle.manifest import Pooling

Stitch = Literal["center", "weighted"]


@dataclass(frozen=True)
class SequenceLayout:
    """Where one sequence's windows sit and what is pooled from them."""

    starts: np.ndarray  # first content token of each window, sorted
    content: int  # content tokens per window (the sequence's length when it fits one window)
    n_tokens: int
    prefix: int  # framing + prompt tokens before the content of every window
    suffix: int
    spans: np.ndarray  # [k, 2] content-token spans to mean-pool over the stitched states
    stitch: Stitch = "center"
    pooling: Pooling = "mean"
    include_prefix: bool = True  # False leaves the prompt out of mean pooling (sentence-transformers' include_prompt)

    @property
    def n_windows(self) -> int:
        return len(self.starts)

    @property
    def window_length(self) -> int:
        return self.prefix + self.content + self.suffix

    @property
    def pool_begin(self) -> int:
        return 0 if self.include_prefix else self.prefix


class SequenceSums:
    """Running float64 sums of one sequence's pooled spans and each window's own pooling, filled window by window.

    The sums' rows are the spans pooled over the stitched sequence: for mean pooling of a multi-window sequence,
    row 0 is the whole sequence (from `pool_begin`), then the given spans in order."""

    def __init__(self, layout: SequenceLayout, dim: int) -> None:
        self.layout = layout
        self.window_pooled = np.zeros((layout.n_windows, dim), dtype=np.float32)  # each window pooled alone
        total = layout.prefix + layout.n_tokens + layout.suffix
        spans = np.asarray(layout.spans, dtype=np.int64).reshape(-1, 2) + layout.prefix
        self._whole_row = layout.pooling == "mean" and layout.n_windows > 1
        if self._whole_row:
            spans = np.concatenate(([[layout.pool_begin, total]], spans))
        self.spans = spans  # stitched coordinates
        self.scale = 1.0 / np.maximum(spans[:, 1] - spans[:, 0], 1).astype(np.float64)
        self.sums = np.zeros((spans.shape[0], dim), dtype=np.float64)

    def window_weights(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(stitching weight, stitched position) of every position of the given windows, [k, window_length]."""
        lay = self.layout
        p, c = lay.prefix, lay.content
        windows = np.asarray(windows, dtype=np.int64)
        if lay.stitch == "center":
            body = center_stitch_weights(lay.starts, c, lay.n_tokens, windows)
        else:
            body = overlap_stitch_weights(lay.starts, c, windows)
        head = np.repeat((windows == 0)[:, None], p, axis=1)
        tail = np.repeat((windows == lay.n_windows - 1)[:, None], lay.suffix, axis=1)
        weights = np.concatenate((head, body, tail), axis=1).astype(np.float32)
        j = np.arange(lay.window_length, dtype=np.int64)[None, :]
        positions = np.where(j < p, j, np.where(j < p + c, j + lay.starts[windows, None], j - c + lay.n_tokens))
        return weights, positions

    def pooled(self) -> np.ndarray:
        """The model's pooling over the whole sequence: the mean of the stitched sequence; for "cls" the mean of
        every window's first state (each window has its own [CLS]); for "last" the final window's last state."""
        if self.layout.pooling == "mean":
            return self.sums[0].astype(np.float32) if self._whole_row else self.window_pooled[0]
        if self.layout.pooling == "cls":
            return self.window_pooled.mean(axis=0)
        return self.window_pooled[-1]

    def span_means(self) -> np.ndarray:
        """[k, d] mean of the stitched states over each span of the layout (an empty span gives zeros)."""
        return self.sums[1 if self._whole_row else 0 :].astype(np.float32)


@dataclass(frozen=True)
class BatchRows:
    """The pool weights of one encoder batch and where each row's pooled sum goes."""

    weights: np.ndarray  # [batch, 1 + R, seq] float32: row 0 is each window's own pooling, then span rows
    items: tuple[tuple[SequenceSums, int], ...]  # (sequence, window index) per batch row
    span_index: np.ndarray  # [batch, R] row of the sequence's sums each span row adds to, -1 for padding

    def add(self, pooled: np.ndarray) -> None:
        """Fold pooled sums [batch, 1 + R, hidden] into the sequences' running sums (float64)."""
        for b, (seq, w) in enumerate(self.items):
            seq.window_pooled[w] = pooled[b, 0]
        if self.span_index.shape[1] == 0:
            return
        groups: dict[int, list[int]] = {}
        for b, (seq, _) in enumerate(self.items):
            groups.setdefault(id(seq), []).append(b)
        for rows in groups.values():
            seq = self.items[rows[0]][0]
            index = self.span_index[rows]
            valid = index >= 0
            np.add.at(seq.sums, index[valid], pooled[rows, 1:][valid].astype(np.float64))


def batch_rows(items: Sequence[tuple[SequenceSums, int]], width: int) -> BatchRows:
    """Weight rows for a batch of windows (each item: a sequence and one of its windows), padded to `width`."""
    n = len(items)
    lengths = np.array([seq.layout.window_length for seq, _ in items], dtype=np.int64)
    own = _own_rows(items, lengths, width)
    if all(seq.spans.shape[0] == 0 for seq, _ in items):
        # queries and passages (and cls / last pooling without chunks): each window's own pooling is all that is
        # asked for, so no stitching positions or span rows are built (most of a short text's runtime overhead)
        return BatchRows(own[:, None, :], tuple(items), np.zeros((n, 0), dtype=np.int64))
    weights = np.zeros((n, width), dtype=np.float32)
    positions = np.zeros((n, width), dtype=np.int64)
    j = np.arange(width, dtype=np.int64)
    single = np.array([seq.layout.n_windows == 1 for seq, _ in items], dtype=bool)
    # a sequence that fits one window is its own stitched sequence: weight 1 on every real position
    weights[single] = j[None, :] < lengths[single, None]
    positions[single] = j[None, :]
    groups: dict[int, list[int]] = {}
    for b in np.flatnonzero(~single).tolist():
        groups.setdefault(id(items[b][0]), []).append(b)
    for rows in groups.values():  # one vectorized call per multi-window sequence in the batch
        seq = items[rows[0]][0]
        w, pos = seq.window_weights(np.array([items[b][1] for b in rows], dtype=np.int64))
        weights[rows, : w.shape[1]] = w
        positions[rows, : w.shape[1]] = pos
    seqs = list({id(seq): seq for seq, _ in items}.values())
    owner = {id(seq): k for k, seq in enumerate(seqs)}
    spans = np.concatenate([s.spans for s in seqs]) if seqs else np.zeros((0, 2), np.int64)
    scale = np.concatenate([s.scale for s in seqs]) if seqs else np.zeros(0)
    span_owner = np.concatenate([np.full(len(s.spans), k) for k, s in enumerate(seqs)]) if seqs else np.zeros(0)
    offset = np.cumsum([0] + [len(s.spans) for s in seqs])
    item_owner = np.array([owner[id(seq)] for seq, _ in items], dtype=np.int64)
    span_weights, index = span_rows(weights, positions, spans, scale, span_owner, item_owner)
    local = np.where(index >= 0, index - offset[item_owner][:, None], -1)  # row in the item's own sequence's sums
    return BatchRows(np.concatenate((own[:, None, :], span_weights), axis=1), tuple(items), local)


def _own_rows(items: Sequence[tuple[SequenceSums, int]], lengths: np.ndarray, width: int) -> np.ndarray:
    """Each window pooled alone, as the model pools one sequence: mean (from pool_begin), first or last state."""
    begin = np.array([seq.layout.pool_begin for seq, _ in items], dtype=np.int64)
    pooling = {seq.layout.pooling for seq, _ in items}
    modes = pooling.pop() if len(pooling) == 1 else np.array([seq.layout.pooling for seq, _ in items])
    return own_rows(begin, lengths, width, modes)


def host_pool(states: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """pooled_sums [batch, rows, hidden] = pool_weights [batch, rows, seq] @ states [batch, seq, hidden], float32
    accumulation: what a pooled graph computes on the device, for engines that return token states."""
    return np.matmul(weights, states.astype(np.float32, copy=False))
