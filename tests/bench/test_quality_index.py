"""The reference index and metrics behind bench/quality.py, against hand computations."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from longvec.runtime import sparse_scores
from longvec.runtime.core.sparse import SparseEncoder, term_id

# bench/ holds scripts, not a package: load bench/index.py under a name of its own
_spec = importlib.util.spec_from_file_location("bench_index", Path(__file__).resolve().parents[2] / "bench/index.py")
assert _spec is not None and _spec.loader is not None
index = sys.modules["bench_index"] = importlib.util.module_from_spec(_spec)  # dataclasses look it up
_spec.loader.exec_module(index)


def test_the_librarys_sparse_scores_are_bm25_with_qdrant_idf() -> None:
    """bench/quality.py measures `longvec.runtime.sparse_scores` itself (no copy): checked here by hand."""
    enc = SparseEncoder(avg_len=3.0)
    docs = ["amazon river basin", "amazon rainforest rainforest trees", "desert sand dunes", "river delta"]
    [got] = sparse_scores([enc.query("Amazon rainforest river")], enc.documents(docs))
    n = len(docs)
    expected = []
    for text in docs:
        words = enc.document(text)
        weights = dict(zip(words.indices.tolist(), words.values.tolist()))
        score = 0.0
        for t in ("amazon", "rainforest", "river"):
            df = sum(t in d.split() for d in docs)
            score += math.log(1 + (n - df + 0.5) / (df + 0.5)) * weights.get(term_id(t), 0.0)
        expected.append(score)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert got[2] == 0 and np.argmax(got) == 1


def test_metrics_by_hand() -> None:
    scores = np.array([[0.9, 0.8, 0.7, 0.1], [0.1, 0.2, 0.3, 0.4]], dtype=np.float32)
    m = index.evaluate(scores, [np.array([1, 2]), np.array([9])])  # query 0: relevant at ranks 2 and 3
    dcg = 1 / math.log2(3) + 1 / math.log2(4)
    idcg = 1 + 1 / math.log2(3)
    assert m.hit1 == 0 and m.hit10 == 0.5
    assert m.mrr10 == pytest.approx(0.5 / 2)
    assert m.ndcg10 == pytest.approx(dcg / idcg / 2)


def test_top_k_breaks_ties_by_index_and_rrf_adds_reciprocal_ranks() -> None:
    assert index.top_k(np.array([[1.0, 2.0, 2.0, 0.0]]), 3).tolist() == [[1, 2, 0]]
    fused = index.rrf([np.array([[3.0, 2.0, 1.0]]), np.array([[1.0, 2.0, 3.0]])], k=60, depth=2)
    np.testing.assert_allclose(fused, [[1 / 61, 1 / 62 + 1 / 62, 1 / 61]])


def test_bench_scripts_use_the_public_fusion_not_copies() -> None:
    """Issue 18: a figure measured on a re-implementation is not a figure of what users run."""
    bench = Path(__file__).resolve().parents[2] / "bench"
    for path in bench.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for copy in ("def convex(", "def minmax(", "class SparseIndex", "def sparse_scores(", "def fuse_scores("):
            assert copy not in text, f"{path.name} re-implements {copy}"
    quality = (bench / "quality.py").read_text(encoding="utf-8")
    assert "fuse_scores(" in quality and "sparse_scores(" in quality
