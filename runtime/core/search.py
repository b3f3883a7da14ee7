"""Search: rank every chunk of the documents searched for each query, dense cosine fused with BM25 over the same
chunk spans, and return the best `top_k` as hits with character spans.

The score of a chunk for a query, with `fusion` (the three measured in bench/search_fusion.py):
- "minmax": alpha * minmax(dense) + (1 - alpha) * minmax(bm25), each min-max normalized over all chunks searched
  for that query (`fuse_scores`);
- "zscore": alpha * z(dense) + (1 - alpha) * z(bm25), z = (x - mean) / std over the chunks searched;
- "rrf": alpha / (k + rank_dense) + (1 - alpha) / (k + rank_bm25), k = 60, ranks over all chunks searched (1 is
  the best); with alpha = 0.5 this is plain reciprocal rank fusion, halved.
BM25 is `sparse_scores`: IDF over the chunks searched, so a hit's score depends on the corpus searched, as it
does in any BM25 index. `hybrid=False` ranks by dense cosine alone.

Here is the part that needs no model (the corpus, the scores, the hits); `Embedder.search` embeds and calls it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from longvec.runtime.core.fusion import bm25_idf, fuse_scores
from longvec.runtime.core.sparse import SparseEncoder, SparseVector
from longvec.runtime.errors import InputError

Fusion = Literal["minmax", "zscore", "rrf"]
FUSIONS: tuple[str, ...] = ("minmax", "zscore", "rrf")
# The default fusion and weight, chosen on squad-longdoc-dev (all 4,968 questions, 128-token chunks, first-hit
# nDCG@10) by bench/search_fusion.py (README "Search"): best z-score at alpha 0.6 (0.862); z-score at 0.5 is tied
# with it (paired bootstrap interval includes zero) and is the simpler, equal-weight setting; min-max at 0.5
# (0.860) and RRF (at most 0.839) are not tied.
DEFAULT_FUSION: Fusion = "zscore"
DEFAULT_ALPHA = 0.5
RRF_K = 60
DEFAULT_TOP_K = 10
# Queries scored at once: [block, n_chunks] float64 score matrices, a few per block.
QUERY_BLOCK = 256
# A snippet widens a hit to the sentences around it, at most this many characters each way.
SNAP_MAX_CHARS = 400
# the position just after a sentence's last character: its punctuation and closing quotes, or a line break
_SENTENCE_END = re.compile(r"[.!?。！？][\"')\]]*(?=\s)|\n")


class Embedded(Protocol):
    """What search needs of one embedded document (a `DocumentResult`)."""

    @property
    def chunk_vectors(self) -> np.ndarray: ...
    @property
    def chunk_spans(self) -> np.ndarray: ...
    @property
    def chunk_sparse(self) -> list[SparseVector] | None: ...


@dataclass(frozen=True)
class Hit:
    """One passage found: `documents[document][start:end]` is the chunk that was scored."""

    document: int  # index into the documents searched
    start: int  # character offsets of the chunk, half-open
    end: int
    score: float  # the fused score (the dense cosine when hybrid=False); higher is better
    dense: float  # cosine similarity of the query and chunk vectors
    lexical: float | None  # BM25 score of the chunk text for the query; None when hybrid=False
    chunk: int  # the chunk's index within its document
    text: str | None = None  # the chunk's text, when the documents' texts are known
    snippet: tuple[int, int] | None = None  # with snap=True: the span widened to sentence boundaries (display only)


@dataclass(frozen=True)
class Corpus:
    """All chunks of all documents searched, concatenated in document order."""

    vectors: np.ndarray  # [n, dim], L2-normalized
    document: np.ndarray  # [n] index of each chunk's document
    chunk: np.ndarray  # [n] index of each chunk within its document
    spans: np.ndarray  # [n, 2] character spans
    lexical: LexicalIndex | None

    @classmethod
    def of(cls, results: Sequence[Embedded], hybrid: bool) -> Corpus:
        if not results:
            raise InputError("documents is empty: there is nothing to search")
        counts = np.array([len(r.chunk_spans) for r in results], dtype=np.int64)
        if counts.sum() == 0:
            raise InputError("the documents have no chunks to search")
        vectors = np.concatenate([np.asarray(r.chunk_vectors, dtype=np.float32) for r in results])
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        lexical = None
        if hybrid:
            missing = next((i for i, r in enumerate(results) if r.chunk_sparse is None), None)
            if missing is not None:
                raise InputError(
                    f"documents[{missing}] has no sparse chunk vectors: embed with sparse=True, pass the texts, "
                    "or search with hybrid=False"
                )
            lexical = LexicalIndex([v for r in results for v in r.chunk_sparse or []])
        return cls(
            vectors / np.maximum(norms, 1e-12),
            np.repeat(np.arange(len(results)), counts),
            np.concatenate([np.arange(c) for c in counts]),
            np.concatenate([np.asarray(r.chunk_spans, dtype=np.int64).reshape(-1, 2) for r in results]),
            lexical,
        )

    def __len__(self) -> int:
        return int(self.document.size)


class LexicalIndex:
    """BM25 over sparse chunk vectors through postings: the scores of `sparse_scores` (IDF over the indexed
    chunks), in time proportional to the postings of the query's terms rather than to the whole corpus."""

    def __init__(self, vectors: Sequence[SparseVector]) -> None:
        self.n = len(vectors)
        ids = np.concatenate([v.indices for v in vectors]) if self.n else np.zeros(0, np.int64)
        vals = np.concatenate([v.values for v in vectors]) if self.n else np.zeros(0, np.float32)
        rows = np.repeat(np.arange(self.n), [len(v) for v in vectors])
        order = np.argsort(ids, kind="stable")
        self.terms, starts, df = np.unique(ids[order], return_index=True, return_counts=True)
        self.ptr = np.append(starts, ids.size)
        self.rows, self.vals = rows[order], vals[order].astype(np.float32)
        self.idf = bm25_idf(self.n, df)

    def scores(self, queries: Sequence[SparseVector]) -> np.ndarray:
        out = np.zeros((len(queries), self.n), dtype=np.float32)
        if self.terms.size == 0:
            return out
        for qi, q in enumerate(queries):
            where = np.searchsorted(self.terms, q.indices)
            found = (where < self.terms.size) & (self.terms[np.minimum(where, self.terms.size - 1)] == q.indices)
            for t, w in zip(where[found].tolist(), q.values[found].tolist()):
                lo, hi = self.ptr[t], self.ptr[t + 1]
                out[qi, self.rows[lo:hi]] += np.float32(w) * self.idf[t] * self.vals[lo:hi]  # rows unique per term
        return out


def queries_of(query: str | Sequence[str]) -> tuple[list[str], bool]:
    """The queries as a list, and whether one string was given (the caller then gets one list of hits)."""
    if isinstance(query, str):
        return [query], True
    if not isinstance(query, Sequence) or not all(isinstance(q, str) for q in query):
        raise InputError("query must be a string or a list of strings")
    return list(query), False


def split_documents(documents: Sequence[object]) -> tuple[list[str] | None, Sequence[Embedded] | None]:
    """Documents as texts (to embed) or as embedded results (searched as they are); never a mix."""
    if isinstance(documents, str) or not isinstance(documents, Sequence):
        raise InputError("documents must be a list of strings or of DocumentResults (a single str is not a list)")
    if not documents:
        raise InputError("documents is empty: there is nothing to search")
    if all(isinstance(d, str) for d in documents):
        return [str(d) for d in documents], None
    if all(hasattr(d, "chunk_vectors") and hasattr(d, "chunk_spans") for d in documents):
        return None, list(documents)  # type: ignore[arg-type]
    raise InputError("documents must be all strings or all DocumentResults, not a mix")


def with_sparse(
    results: Sequence[Embedded], texts: Sequence[str] | None, encoder: SparseEncoder | None
) -> list[Embedded]:
    """With an encoder (hybrid search), results that lack sparse chunk vectors get them from their texts' chunk
    spans, as sparse=True would have made them."""
    if texts is not None and len(texts) != len(results):
        raise InputError(f"texts has {len(texts)} entries for {len(results)} documents")
    if encoder is None or texts is None or all(r.chunk_sparse is not None for r in results):
        return list(results)
    out: list[Embedded] = []
    for text, r in zip(texts, results):
        if r.chunk_sparse is None:
            r = _Sparse(r, encoder.documents([text[s:e] for s, e in np.asarray(r.chunk_spans).tolist()]))
        out.append(r)
    return out


@dataclass(frozen=True)
class _Sparse:
    inner: Embedded
    chunk_sparse: list[SparseVector]

    @property
    def chunk_vectors(self) -> np.ndarray:
        return self.inner.chunk_vectors

    @property
    def chunk_spans(self) -> np.ndarray:
        return self.inner.chunk_spans


def check_options(top_k: int, fusion: str, alpha: float) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise InputError(f"top_k must be a positive int, got {top_k!r}")
    if fusion not in FUSIONS:
        raise InputError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha must be a number in [0, 1], got {alpha!r}")


def fuse(dense: np.ndarray, lexical: np.ndarray, fusion: str, alpha: float) -> np.ndarray:
    """[n_queries, n] fused scores (see the module docstring)."""
    if fusion == "minmax":
        return np.asarray(fuse_scores(dense, lexical, alpha), dtype=np.float64)
    d, s = dense.astype(np.float64), lexical.astype(np.float64)
    if fusion == "zscore":
        return alpha * _zscore(d) + (1.0 - alpha) * _zscore(s)
    if fusion == "rrf":
        return alpha / (RRF_K + _ranks(d)) + (1.0 - alpha) / (RRF_K + _ranks(s))
    raise InputError(f"fusion must be one of {FUSIONS}, got {fusion!r}")


def _zscore(x: np.ndarray) -> np.ndarray:
    std = x.std(axis=1, keepdims=True)
    return (x - x.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1.0)


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based rank of each column per row, best (highest) first; ties go to the lower index."""
    order = np.argsort(-x, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, x.shape[1] + 1)[None, :].repeat(x.shape[0], axis=0), axis=1)
    return ranks.astype(np.float64)


def top_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """[n_queries, min(k, n)] column indices, best first; ties go to the lower index."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1] else np.argsort(-scores, axis=1)
    rows = np.arange(scores.shape[0])[:, None]
    order = np.lexsort((part, -scores[rows, part]), axis=1)
    return part[rows, order]


def rank(
    corpus: Corpus,
    query_vectors: np.ndarray,
    query_sparse: Sequence[SparseVector] | None,
    top_k: int = DEFAULT_TOP_K,
    fusion: str = DEFAULT_FUSION,
    alpha: float = DEFAULT_ALPHA,
    texts: Sequence[str] | None = None,
    snap: bool = False,
) -> list[list[Hit]]:
    """The best `top_k` chunks per query; hybrid when `corpus.lexical` and `query_sparse` are given."""
    check_options(top_k, fusion, alpha)
    hybrid = corpus.lexical is not None
    if hybrid and (query_sparse is None or len(query_sparse) != len(query_vectors)):
        raise InputError("a hybrid search needs one sparse vector per query")
    if snap and texts is None:
        raise InputError("snap needs the documents' texts")
    q = np.asarray(query_vectors, dtype=np.float32)
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    out: list[list[Hit]] = []
    for lo in range(0, len(q), QUERY_BLOCK):
        dense = q[lo : lo + QUERY_BLOCK] @ corpus.vectors.T
        lexical = None
        if hybrid:
            assert corpus.lexical is not None and query_sparse is not None
            lexical = corpus.lexical.scores(query_sparse[lo : lo + QUERY_BLOCK])
            scores = fuse(dense, lexical, fusion, alpha)
        else:
            scores = dense.astype(np.float64)
        for row, top in enumerate(top_indices(scores, top_k)):
            out.append([_hit(corpus, int(i), scores[row], dense[row], lexical, row, texts, snap) for i in top])
    return out


def _hit(
    corpus: Corpus,
    i: int,
    scores: np.ndarray,
    dense: np.ndarray,
    lexical: np.ndarray | None,
    row: int,
    texts: Sequence[str] | None,
    snap: bool,
) -> Hit:
    doc = int(corpus.document[i])
    start, end = (int(x) for x in corpus.spans[i])
    text = None if texts is None else texts[doc][start:end]
    return Hit(
        document=doc,
        start=start,
        end=end,
        score=float(scores[i]),
        dense=float(dense[i]),
        lexical=None if lexical is None else float(lexical[row, i]),
        chunk=int(corpus.chunk[i]),
        text=text,
        snippet=snap_to_sentences(texts[doc], start, end) if snap and texts is not None else None,
    )


def snap_to_sentences(text: str, start: int, end: int, max_chars: int = SNAP_MAX_CHARS) -> tuple[int, int]:
    """[start, end) widened to the sentence boundaries around it, by at most `max_chars` each way (a sentence
    ends after . ! ? and closing quotes or brackets followed by whitespace, or at a line break); leading
    whitespace is trimmed. For display only: the chunk that was scored is [start, end)."""
    lo, hi = max(0, start - max_chars), min(len(text), end + max_chars)
    before = [m.end() for m in _SENTENCE_END.finditer(text, lo, min(len(text), start + 1)) if m.end() <= start]
    new_start = before[-1] if before else (0 if lo == 0 else start)
    while new_start < start and text[new_start].isspace():
        new_start += 1
    after = next((m.end() for m in _SENTENCE_END.finditer(text, max(start, end - 8), hi) if m.end() >= end), None)
    new_end = after if after is not None else (len(text) if hi == len(text) else end)
    return new_start, max(new_end, end)
