"""Window stitching: one contextual state per token from overlapping windows of equal length.

`starts[i]` is the first token (document coordinates) of window i, every window holds `length` tokens of
content (a document shorter than one window has a single window of its own length), and windows are sorted.
"""

import numpy as np


def center_ownership(starts: np.ndarray, length: int, n_tokens: int) -> np.ndarray:
    """[n_windows, 2] half-open token ranges: each token goes to the window whose center is nearest.

    With equal lengths the nearest center changes hands at the midpoint of consecutive centers, so the
    owned ranges tile [0, n_tokens) exactly.
    """
    starts = np.asarray(starts, dtype=np.int64)
    mids = (starts[:-1] + starts[1:] + length) // 2
    begins = np.concatenate(([0], mids))
    ends = np.concatenate((mids, [n_tokens]))
    return np.stack([begins, ends], axis=1)


def stitch_center(window_states: np.ndarray, starts: np.ndarray, n_tokens: int) -> np.ndarray:
    """[n_tokens, d]: each token's state from the window where it sits most centrally."""
    n_windows, length, _ = window_states.shape
    owned = center_ownership(starts, length, n_tokens)
    token = np.arange(n_tokens)
    window = np.repeat(np.arange(n_windows), owned[:, 1] - owned[:, 0])
    return window_states[window, token - np.asarray(starts)[window]].astype(np.float32, copy=False)


def window_weights(length: int) -> np.ndarray:
    """Triangular weights, highest at the center: edge tokens saw the least context."""
    pos = np.arange(length, dtype=np.float32)
    return np.minimum(pos + 1, length - pos)


def stitch_weighted(
    window_states: np.ndarray, starts: np.ndarray, n_tokens: int, weights: np.ndarray | None = None
) -> np.ndarray:
    """[n_tokens, d]: each token's weighted mean over all windows that cover it."""
    _, length, dim = window_states.shape
    w = window_weights(length) if weights is None else np.asarray(weights, dtype=np.float32)
    num = np.zeros((n_tokens, dim), dtype=np.float32)
    den = np.zeros(n_tokens, dtype=np.float32)
    for i, start in enumerate(np.asarray(starts)):  # one vectorized slice per window
        num[start : start + length] += w[:, None] * window_states[i]
        den[start : start + length] += w
    return num / den[:, None]
