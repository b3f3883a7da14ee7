"""A small in-memory reference index: what a user's vector database would return for dense, sparse and hybrid
search over longvec's chunk vectors. Exhaustive scoring (no ANN), so differences are the vectors', not the index's.

- dense: cosine similarity.
- sparse: BM25 as Qdrant's sparse index with `modifier="idf"` computes it: the library's own
  `longvec.runtime.sparse_scores`, so a figure is measured on what users run.
- hybrid: reciprocal rank fusion (sum of 1 / (k + rank) over the retrievers' top `depth`), or the library's
  `longvec.runtime.fuse_scores` (alpha * dense + (1 - alpha) * sparse, min-max per query).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def dense_scores(queries: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """[n_queries, n] cosine similarities."""
    q = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    v = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return (q @ v.T).astype(np.float32)


def rrf(score_sets: Sequence[np.ndarray], k: int = 60, depth: int = 100) -> np.ndarray:
    """Reciprocal rank fusion over each retriever's top `depth` (like a vector database's prefetch limit)."""
    fused = np.zeros_like(score_sets[0], dtype=np.float64)
    rows = np.arange(fused.shape[0])[:, None]
    for s in score_sets:
        top = top_k(s, depth)
        fused[rows, top] += 1.0 / (k + 1 + np.arange(top.shape[1]))[None, :]
    return fused


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best per row, best first; ties go to the lower index."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    rows = np.arange(scores.shape[0])[:, None]
    order = np.lexsort((part, -scores[rows, part]), axis=1)
    return part[rows, order]


@dataclass(frozen=True)
class Metrics:
    hit1: float
    hit10: float
    mrr10: float
    ndcg10: float

    def as_dict(self) -> dict[str, float]:
        return {"hit@1": self.hit1, "hit@10": self.hit10, "mrr@10": self.mrr10, "ndcg@10": self.ndcg10}


def evaluate(scores: np.ndarray, relevant: Sequence[np.ndarray]) -> Metrics:
    """Binary-relevance metrics at 10; `relevant[q]` lists the relevant column indices of query q."""
    top = top_k(scores, 10)
    discounts = 1.0 / np.log2(np.arange(2, 12))
    hit1 = hit10 = mrr = ndcg = 0.0
    for q, rel in enumerate(relevant):
        gains = np.isin(top[q], rel)
        if gains.any():
            first = int(np.argmax(gains))
            hit10 += 1
            hit1 += first == 0
            mrr += 1.0 / (first + 1)
            ndcg += float(gains @ discounts[: gains.size]) / float(discounts[: min(len(rel), 10)].sum())
    n = max(len(relevant), 1)
    return Metrics(hit1 / n, hit10 / n, mrr / n, ndcg / n)


def best_per_group(scores: np.ndarray, group_starts: np.ndarray) -> np.ndarray:
    """[n_queries, n_groups]: the max over each contiguous group of columns (a document's chunks)."""
    return np.maximum.reduceat(scores, group_starts, axis=1)
