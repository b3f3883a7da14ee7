"""Span pooling over token states.

All spans of a document pool in one pass: the distinct span boundaries cut the token axis into segments,
`segment_sums` sums every segment in a single read of the states, and a span's sum is the difference of
two prefix sums over those segments. Spans are half-open `[start, end)` token indices; they may overlap, be
unsorted or empty (an empty span pools to a zero vector).
"""

import numpy as np


def _check_spans(spans: np.ndarray, n_tokens: int) -> np.ndarray:
    spans = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    if spans.size and (spans.min() < 0 or spans.max() > n_tokens or np.any(spans[:, 0] > spans[:, 1])):
        raise ValueError(f"spans must satisfy 0 <= start <= end <= {n_tokens}")
    return spans


def prefix_sums(states: np.ndarray) -> np.ndarray:
    """P with P[i] = sum of states[:i] (float64, shape [n + 1, d])."""
    out = np.zeros((states.shape[0] + 1, states.shape[1]), dtype=np.float64)
    np.cumsum(states, axis=0, dtype=np.float64, out=out[1:])
    return out


def span_sums_from_prefix(prefix: np.ndarray, spans: np.ndarray) -> np.ndarray:
    spans = _check_spans(spans, prefix.shape[0] - 1)
    return prefix[spans[:, 1]] - prefix[spans[:, 0]]


# Rows per segment from which a Python loop of contiguous `sum(axis=0)` calls beats `np.add.reduceat(axis=0)`.
# reduceat walks each column down the token axis (strided); measured on 131072 x 384 float32 it was 4-10x slower
# than one loop iteration per segment for 10 to 20,000 segments (bench/span_pool.py), so the loop is used unless
# segments are tiny, where per-call overhead would dominate.
_LOOP_MIN_ROWS = 4


def segment_sums(states: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """float32 [len(starts), d]: sums of states[starts[i]:starts[i + 1]] (the last to the end); `starts` sorted,
    unique, starting at 0 and below len(states), as for `np.add.reduceat`."""
    n, d = states.shape
    if n < _LOOP_MIN_ROWS * len(starts):
        return np.add.reduceat(states, starts, axis=0, dtype=np.float32)
    out = np.empty((len(starts), d), dtype=np.float32)
    bounds = [*starts.tolist(), n]
    add = np.add.reduce  # the ufunc method itself: np.sum's Python wrapper cost ~10% of the loop on 1000 segments
    for i in range(len(starts)):  # one contiguous read per segment; see _LOOP_MIN_ROWS
        add(states[bounds[i] : bounds[i + 1]], axis=0, dtype=np.float32, out=out[i])
    return out


def _segments(states: np.ndarray, spans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut points (sorted, unique, starting at 0, ending at n) and the index of every span edge in them."""
    n = states.shape[0]
    cuts = np.unique(np.concatenate(([0, n], spans.ravel())))
    edge_index = np.searchsorted(cuts, spans)
    return cuts, edge_index


def span_mean(states: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """Mean of states over each span, float32 [n_spans, d]; float16 input is accumulated in float32.

    One read of the states (`segment_sums`), then work on the segment sums only (m segments, m <= 2 x spans + 1):
    a span that is one segment (chunks that tile a text: the common case) is that segment's sum; the few spans
    that cover several segments (a whole-document span) sum their segments in float64; only when many spans do
    (overlapping chunks) is a float64 prefix over the segments built. That prefix cost 0.5x a read of a 128k x 384
    document when it was built for every call (bench/span_pool.py)."""
    spans = _check_spans(spans, states.shape[0])
    d = states.shape[1]
    if spans.shape[0] == 0:
        return np.zeros((0, d), dtype=np.float32)
    if states.shape[0] == 0:
        return np.zeros((spans.shape[0], d), dtype=np.float32)
    cuts, edge = _segments(states, spans)
    seg = segment_sums(states, cuts[:-1])
    covered = edge[:, 1] - edge[:, 0]
    out = np.zeros((spans.shape[0], d), dtype=np.float32)
    one = np.flatnonzero(covered == 1)
    out[one] = seg[edge[one, 0]]
    several = np.flatnonzero(covered > 1)
    if several.size > _PREFIX_FROM_SPANS:
        prefix = np.zeros((seg.shape[0] + 1, d), dtype=np.float64)
        np.cumsum(seg, axis=0, dtype=np.float64, out=prefix[1:])
        out[several] = prefix[edge[several, 1]] - prefix[edge[several, 0]]
    else:
        for k in several.tolist():  # at most _PREFIX_FROM_SPANS iterations
            out[k] = seg[edge[k, 0] : edge[k, 1]].sum(axis=0, dtype=np.float64)
    counts = np.maximum(spans[:, 1] - spans[:, 0], 1).astype(np.float32)
    out /= counts[:, None]
    return out


# Spans covering several segments from which one float64 prefix over all segments is cheaper than summing each
# span's segments on its own.
_PREFIX_FROM_SPANS = 16


def span_max(states: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """Element-wise max over each span (a zero vector for an empty span).

    Segment maxima come from one `np.maximum.reduceat`; a span covers a run of segments, answered by a sparse
    table (range-maximum query in O(1) per span after O(m log m) set-up over m segments).
    """
    spans = _check_spans(spans, states.shape[0])
    d = states.shape[1]
    out = np.zeros((spans.shape[0], d), dtype=np.float32)
    if spans.shape[0] == 0 or states.shape[0] == 0:
        return out
    cuts, edge = _segments(states, spans)
    seg = np.maximum.reduceat(states, cuts[:-1], axis=0).astype(np.float32)
    table = [seg]
    while 2 ** len(table) <= seg.shape[0]:
        prev, half = table[-1], 2 ** (len(table) - 1)
        table.append(np.maximum(prev[:-half], prev[half:]))
    lo, hi = edge[:, 0], edge[:, 1]
    nonempty = hi > lo
    lo, hi = lo[nonempty], hi[nonempty]
    level = np.floor(np.log2(np.maximum(hi - lo, 1))).astype(np.int64)
    width = 2**level
    result = np.empty((lo.shape[0], d), dtype=np.float32)
    for k in np.unique(level):  # at most log2(m) levels, not one iteration per span
        rows = level == k
        result[rows] = np.maximum(table[k][lo[rows]], table[k][hi[rows] - width[rows]])
    out[nonempty] = result
    return out


def span_first(states: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """The state of each span's first token (a zero vector for an empty span)."""
    spans = _check_spans(spans, states.shape[0])
    out = np.zeros((spans.shape[0], states.shape[1]), dtype=np.float32)
    nonempty = spans[:, 1] > spans[:, 0]
    out[nonempty] = states[spans[nonempty, 0]]
    return out


class PrefixAccumulator:
    """Span sums over a token sequence that arrives in consecutive blocks, without holding the sequence.

    The boundaries to report are fixed up front; each block contributes its segment sums to a running
    float64 total, and only the prefix values at the boundaries are kept (memory O(boundaries x d)).
    """

    def __init__(self, boundaries: np.ndarray, dim: int) -> None:
        self._cuts = np.unique(np.asarray(boundaries, dtype=np.int64))
        self._prefix = np.zeros((self._cuts.shape[0], dim), dtype=np.float64)
        self._running = np.zeros(dim, dtype=np.float64)
        self._position = 0

    @property
    def position(self) -> int:
        return self._position

    def add(self, block: np.ndarray) -> None:
        """Append the states of tokens [position, position + len(block))."""
        start, stop = self._position, self._position + block.shape[0]
        if stop == start:
            return
        lo, hi = np.searchsorted(self._cuts, [start, stop], side="right")
        inner = self._cuts[lo:hi] - start  # boundaries in (start, stop], as block offsets
        local = np.concatenate(([0], inner[inner < block.shape[0]]))
        seg = segment_sums(block, local)
        # totals[k] is the prefix at the end of segment k, i.e. at boundary lo + k (the last one at `stop`,
        # which is a boundary only when inner ends with the block length)
        totals = self._running + np.cumsum(seg, axis=0, dtype=np.float64)
        self._prefix[lo:hi] = totals[: hi - lo]
        self._running = totals[-1]
        self._position = stop

    def _edges(self, spans: np.ndarray) -> np.ndarray:
        """Index of every span edge among the boundaries, after checking the spans."""
        if spans.size and (spans.min() < 0 or np.any(spans[:, 0] > spans[:, 1])):
            raise ValueError("spans must satisfy 0 <= start <= end")
        if spans.size and spans.max() > self._position:
            raise ValueError(f"span ends past the {self._position} tokens seen so far")
        idx = np.searchsorted(self._cuts, spans)
        if spans.size and (
            self._cuts.size == 0 or not np.array_equal(self._cuts[np.minimum(idx, self._cuts.shape[0] - 1)], spans)
        ):
            raise ValueError("span edge was not declared as a boundary")
        return idx

    def span_sums(self, spans: np.ndarray) -> np.ndarray:
        """float64 [k, d]."""
        idx = self._edges(np.asarray(spans, dtype=np.int64).reshape(-1, 2))
        return self._prefix[idx[:, 1]] - self._prefix[idx[:, 0]]

    def span_means(self, spans: np.ndarray, block: int = 1024) -> np.ndarray:
        """float32 [k, d], written `block` spans at a time: the float64 temporaries of all spans at once would be
        several times the result (~70 MB for the 8k chunks of a 1M-token document)."""
        spans = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
        idx = self._edges(spans)
        counts = np.maximum(spans[:, 1] - spans[:, 0], 1).astype(np.float64)
        out = np.empty((spans.shape[0], self._prefix.shape[1]), dtype=np.float32)
        for b in range(0, spans.shape[0], block):  # one iteration per block of spans, not per span
            rows = slice(b, b + block)
            out[rows] = (self._prefix[idx[rows, 1]] - self._prefix[idx[rows, 0]]) / counts[rows, None]
        return out
