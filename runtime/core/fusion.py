"""Hybrid retrieval, the recipe the README measures: BM25 over sparse chunk vectors, fused with dense scores.

`sparse_scores` is what a sparse index with IDF (Qdrant's `modifier="idf"`) computes over the vectors of
`embed_documents(..., sparse=True)` and `embed_sparse_queries`: sum over query terms of
idf(t) * document weight, idf(t) = ln(1 + (N - n_t + 0.5) / (n_t + 0.5)) over the given documents.
`fuse_scores` is a convex combination of per-query min-max normalized scores, alpha * dense + (1 - alpha) * sparse
(alpha 0.5 measured best on SQuAD and passkey with all-MiniLM-L6-v2: bench/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from longvec.runtime.core.sparse import SparseVector
from longvec.runtime.errors import InputError


def bm25_idf(n: int, df: np.ndarray) -> np.ndarray:
    """BM25's IDF of terms found in `df` of `n` chunks (the +1 form: never negative), float32. Every BM25 score
    longvec gives (`sparse_scores`, the search's postings, the on-disk index) takes its IDF from here."""
    return np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)


def sparse_scores(queries: Sequence[SparseVector], documents: Sequence[SparseVector]) -> np.ndarray:
    """[n_queries, n_documents] BM25 scores, IDF taken over `documents`."""
    n = len(documents)
    out = np.zeros((len(queries), n), dtype=np.float32)
    if n == 0:
        return out
    ids = np.concatenate([d.indices for d in documents])
    vals = np.concatenate([d.values for d in documents]).astype(np.float32)
    rows = np.repeat(np.arange(n), [len(d) for d in documents])
    terms, inverse, df = np.unique(ids, return_inverse=True, return_counts=True)
    idf = bm25_idf(n, df)
    for qi, q in enumerate(queries):
        where = np.searchsorted(terms, q.indices)
        found = (where < terms.size) & (terms[np.minimum(where, terms.size - 1)] == q.indices)
        weight = np.zeros(terms.size, dtype=np.float32)
        weight[where[found]] = q.values[found] * idf[where[found]]
        np.add.at(out[qi], rows, weight[inverse] * vals)
    return out


def _minmax(scores: np.ndarray) -> np.ndarray:
    lo, hi = scores.min(axis=1, keepdims=True), scores.max(axis=1, keepdims=True)
    return (scores - lo) / np.maximum(hi - lo, 1e-12)


def fuse_scores(dense: np.ndarray, sparse: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """alpha * minmax(dense) + (1 - alpha) * minmax(sparse), min-max per query (row); [n] or [n_queries, n]."""
    d, s = np.asarray(dense, dtype=np.float64), np.asarray(sparse, dtype=np.float64)
    if d.shape != s.shape or d.ndim not in (1, 2):
        raise InputError(f"dense and sparse scores must have the same 1-D or 2-D shape, got {d.shape} and {s.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha must be in [0, 1], got {alpha}")
    if d.size == 0:
        return d.astype(np.float32)
    one = d.ndim == 1
    d2, s2 = (d[None], s[None]) if one else (d, s)
    fused = alpha * _minmax(d2) + (1.0 - alpha) * _minmax(s2)
    return (fused[0] if one else fused).astype(np.float32)
