"""Reference implementations the tests compare the runtime against: plain, obviously correct NumPy, with no
production caller (they left longvec.kernels in issue 18: the runtime pools through pool-weight matmuls,
runtime/core/stitch.py and kernels/pool_weights.py). Tests get this module through the `oracles` fixture."""

from __future__ import annotations

import numpy as np

from longvec.kernels import center_ownership, window_weights


def stitch_center(window_states: np.ndarray, starts: np.ndarray, n_tokens: int) -> np.ndarray:
    """[n_tokens, d]: each token's state from the window where it sits most centrally."""
    n_windows, length, _ = window_states.shape
    owned = center_ownership(starts, length, n_tokens)
    token = np.arange(n_tokens)
    window = np.repeat(np.arange(n_windows), owned[:, 1] - owned[:, 0])
    return window_states[window, token - np.asarray(starts)[window]].astype(np.float32, copy=False)


def stitch_weighted(
    window_states: np.ndarray, starts: np.ndarray, n_tokens: int, weights: np.ndarray | None = None
) -> np.ndarray:
    """[n_tokens, d]: each token's weighted mean over all windows that cover it (triangular weights by default)."""
    _, length, dim = window_states.shape
    w = window_weights(length) if weights is None else np.asarray(weights, dtype=np.float32)
    num = np.zeros((n_tokens, dim), dtype=np.float32)
    den = np.zeros(n_tokens, dtype=np.float32)
    for i, start in enumerate(np.asarray(starts)):
        num[start : start + length] += w[:, None] * window_states[i]
        den[start : start + length] += w
    return num / den[:, None]


def span_mean(states: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """float32 [n_spans, d]: the mean of states over each half-open span (a zero vector for an empty one),
    accumulated in float64."""
    spans = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    out = np.zeros((len(spans), states.shape[1]), dtype=np.float32)
    for k, (start, end) in enumerate(spans.tolist()):
        if end > start:
            out[k] = states[start:end].astype(np.float64).mean(axis=0)
    return out
