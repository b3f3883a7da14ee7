"""Pooling weights of stitched windows: every pooled quantity as a sum over windows of `weights_w @ states_w`.

Mean pooling of stitched windows is linear in the window states. With center stitching each token is owned by
one window (0/1 weights); with weighted stitching token t of window w carries a_w(t) / sum_w' a_w'(t). A span's
mean over the stitched sequence is therefore the sum over the windows that cover it of one weight row per window
applied to that window's states, and the rows can be built for any window alone, in any order.

Coordinates: windows hold `length` content tokens; `starts` are their first content tokens, sorted, as planned
by the runtime (equal lengths, the last window aligned to the end of the text).
"""

import numpy as np

from longvec.kernels.stitching import center_ownership, window_weights


def center_stitch_weights(starts: np.ndarray, length: int, n_tokens: int, windows: np.ndarray) -> np.ndarray:
    """float32 [len(windows), length]: 1 where the window owns the token (its center is nearest), else 0."""
    starts = np.asarray(starts, dtype=np.int64)
    windows = np.asarray(windows, dtype=np.int64)
    owned = center_ownership(starts, length, n_tokens)[windows]
    token = starts[windows, None] + np.arange(length, dtype=np.int64)[None, :]
    return ((token >= owned[:, :1]) & (token < owned[:, 1:])).astype(np.float32)


def overlap_stitch_weights(starts: np.ndarray, length: int, windows: np.ndarray) -> np.ndarray:
    """float32 [len(windows), length]: a(t) / sum of a over every window covering token t (weighted stitching,
    with the triangular profile of `window_weights`). Only the windows within `length` of each requested one are
    read, so the cost is O(windows x neighbours x length), independent of the document's length."""
    starts = np.asarray(starts, dtype=np.int64)
    windows = np.asarray(windows, dtype=np.int64)
    profile = window_weights(length).astype(np.float64)
    own = starts[windows]
    first = np.searchsorted(starts, own - length, side="right")  # windows that overlap: |start' - start| < length
    last = np.searchsorted(starts, own + length, side="left")
    k = int((last - first).max()) if len(windows) else 0
    neighbour = first[:, None] + np.arange(k, dtype=np.int64)[None, :]  # [w, k], padded past `last`
    valid = neighbour < last[:, None]
    shift = starts[np.minimum(neighbour, len(starts) - 1)] - own[:, None]  # neighbour start - own start
    position = np.arange(length, dtype=np.int64)[None, None, :] - shift[:, :, None]  # index into neighbour
    inside = valid[:, :, None] & (position >= 0) & (position < length)
    den = np.where(inside, profile[np.clip(position, 0, length - 1)], 0.0).sum(axis=1)
    return (profile[None, :] / den).astype(np.float32)


def span_rows(
    weights: np.ndarray,
    positions: np.ndarray,
    spans: np.ndarray,
    scale: np.ndarray,
    span_owner: np.ndarray,
    item_owner: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Weight rows of the spans that each batch item contributes to.

    weights [B, L]: each item's stitching weight per position (0 for padding); positions [B, L]: each position's
    coordinate in its document's stitched sequence (increasing along L); spans [S, 2] half-open stitched
    coordinates, scale [S] (1 / span length for a mean), span_owner [S] and item_owner [B]: which document each
    span and each item belongs to. Returns (rows float32 [B, R, L], index int64 [B, R]): row r of item b is
    weights[b] * [span lo <= position < hi] * scale for span index[b, r]; index -1 marks padding rows (all zero).
    Only spans that overlap an item's nonzero weights get a row, so R stays small for chunked documents."""
    weights = np.asarray(weights, dtype=np.float32)
    spans = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    n_items, n_pos = weights.shape
    nonzero = weights > 0
    has_any = np.asarray(nonzero.any(axis=1))
    first = np.argmax(nonzero, axis=1)
    last = n_pos - 1 - np.argmax(nonzero[:, ::-1], axis=1)
    items = np.arange(n_items)
    lo, hi = positions[items, first], positions[items, last] + 1
    hit = (
        (np.asarray(span_owner)[None, :] == np.asarray(item_owner)[:, None])
        & (spans[None, :, 0] < hi[:, None])
        & (spans[None, :, 1] > lo[:, None])
        & (spans[None, :, 1] > spans[None, :, 0])
        & has_any[:, None]
    )
    item, span = np.nonzero(hit)  # sorted by item, then span
    counts = hit.sum(axis=1)
    n_rows = int(counts.max()) if n_items else 0
    rank = np.arange(len(item)) - np.repeat(np.cumsum(counts) - counts, counts)
    index = np.full((n_items, n_rows), -1, dtype=np.int64)
    index[item, rank] = span
    safe = np.maximum(index, 0)
    inside = (positions[:, None, :] >= spans[safe, 0][:, :, None]) & (
        positions[:, None, :] < spans[safe, 1][:, :, None]
    )
    factor = np.where(index >= 0, np.asarray(scale, dtype=np.float32)[safe], np.float32(0.0))
    rows = weights[:, None, :] * inside * factor[:, :, None]
    return rows.astype(np.float32, copy=False), index


def own_rows(begin: np.ndarray, end: np.ndarray, width: int, pooling: str | np.ndarray = "mean") -> np.ndarray:
    """float32 [n, width]: each sequence pooled alone, as the model pools one sequence: the mean over positions
    [begin, end), the first state ("cls") or the last real one ("last", at end - 1). `pooling` is one mode for
    every row or one per row. The pipeline's window rows and the one-window path of a single text both come from
    here, so a text pools the same whichever path it takes."""
    j = np.arange(width, dtype=np.int64)[None, :]
    begin = np.asarray(begin, dtype=np.int64).reshape(-1, 1)
    end = np.asarray(end, dtype=np.int64).reshape(-1, 1)
    mean = ((j >= begin) & (j < end)) / np.maximum(end - begin, 1)
    if isinstance(pooling, str) and pooling == "mean":  # every model but a few: one expression instead of three
        return mean.astype(np.float32)
    mode = np.asarray(pooling).reshape(-1, 1)
    return np.where(mode == "mean", mean, np.where(mode == "cls", j == 0, j == end - 1)).astype(np.float32)
