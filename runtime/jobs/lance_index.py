"""An on-disk search index in LanceDB (the `index` extra): `longvec index` builds it, `longvec query` searches it.

Building is the batch job (runtime/jobs/local.py: the same inputs, resume, progress, errors file and exactly-once
shards) into DB/_shards with sparse vectors, then one streaming pass, shard by shard, into these tables:

    chunks     id, doc, chunk_index, char_start, char_end, text, vector, sparse_indices, sparse_values
               (+ a native full-text index over `text`)
    documents  id, doc, n_tokens, vector
    terms      term, df, sum_w, sum_w2: per BM25 term, in how many chunks it occurs (the IDF of the library's
               BM25) and its summed (squared) weights
    moments    sum, outer: the sum of the chunk vectors and of their outer products
    meta       key, value: the bundle's name, path and weights' sha256, the embedding options, counts

The pass rebuilds the tables from the finished shards (overwrite): a killed build resumes the embedding where
it stopped and writes every document exactly once. `--from-shards OUT` takes a finished `longvec embed` job
instead (its input is read again for the chunk text).

A query ranks as `Embedder.search` does over all chunks, without scoring every chunk. Candidates: the union of
LanceDB's `candidates` nearest chunks (cosine) and its full-text index's best `candidates` matches, each rescored
with the library's cosine and BM25 (stored term weights, IDF from `terms`). The default z-score fusion needs each
score's mean and standard deviation over all chunks: for the cosine they follow exactly from the stored sum and
sum of outer products of the chunk vectors (`moments`); for BM25 the mean follows exactly from each term's total
weight, the variance from the candidates' scores plus, for the other chunks, each term's summed squared weight
(terms that occur together in a chunk outside the candidates are not counted: a small underestimate). Min-max
fusion is exact: the lowest cosine is the nearest chunk to the negated query, BM25's lowest is 0.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from longvec.runtime.core.fusion import bm25_idf
from longvec.runtime.core.search import DEFAULT_ALPHA, DEFAULT_FUSION, Hit, top_indices
from longvec.runtime.core.sparse import SparseEncoder, SparseVector
from longvec.runtime.embedder import Embedder
from longvec.runtime.errors import BackendUnavailable, InputError, ModelMismatch
from longvec.runtime.jobs.corpus import Fields, import_pyarrow, iter_records, scan

FORMAT = 1
SHARDS = "_shards"
CANDIDATES = 200


def import_lancedb() -> Any:
    # Lance's Rust log (WARN lines for a table created, a deprecation) would interleave with our output
    os.environ.setdefault("LANCEDB_LOG", "error")
    try:
        import lancedb
    except ImportError as e:
        raise BackendUnavailable(f"the search index needs LanceDB: pip install 'longvec[index]' ({e})") from e
    return lancedb


@dataclass(frozen=True)
class IndexInfo:
    """What the index records about how it was made."""

    model: str  # the weights' model (the manifest's source), as the batch job records it
    weights_sha256: str | None
    bundle: str | None  # the bundle's path when it was built, if known
    variant: str
    chunk_tokens: int
    options: dict[str, Any]
    documents: int
    chunks: int

    def check(self, emb: Embedder, variant: str) -> None:
        """Refuse a model other than the one the index was built with (ModelMismatch)."""
        m = emb.manifest
        file = next((v.file for v in m.variants if v.name == variant), None)
        sha = m.files.get(file) if file else None
        if emb.name != self.model or (self.weights_sha256 is not None and sha != self.weights_sha256):
            raise ModelMismatch(
                f"this index was built with {self.model!r} (weights sha256 {str(self.weights_sha256)[:12]}); "
                f"the bundle given is {emb.name!r} (sha256 {str(sha)[:12]}): query it with "
                "the bundle it was built with"
            )


def write_tables(
    shards: Path, source: Path, db: Path, fields: Fields, bundle: Path | None = None, stream: Any = None
) -> IndexInfo:
    """The tables from a finished job's shards, streamed one shard at a time (memory flat in corpus size)."""
    lancedb, pa = import_lancedb(), import_pyarrow()
    progress = json.loads((shards / "_progress.json").read_text(encoding="utf-8"))
    if not progress.get("complete"):
        raise InputError(f"{shards}: the job is not finished; rerun it (the same command resumes it) first")
    corpus = scan(source, fields)
    if corpus.fingerprint() != progress["input"]:
        raise InputError(f"{source}: not the input of the job in {shards} (other files or contents)")
    opts = progress["options"]
    size = int(opts["shard_size"])
    conn = lancedb.connect(str(db))
    encoder = SparseEncoder()
    stats: dict[int, list[float]] = {}  # term -> [df, sum of weights, sum of squared weights]
    moments: list[np.ndarray] = []  # [sum of chunk vectors, sum of their outer products] (normalized vectors)
    n_docs = n_chunks = 0
    tables: dict[str, Any] = {}
    for index in sorted(int(k) for k in progress["shards"]):
        part = f"part-{index:05d}.parquet"
        docs = pa.parquet.read_table(shards / "documents" / part)
        chunks = pa.parquet.read_table(shards / "chunks" / part)
        if docs.num_rows == 0:
            continue
        texts = _texts(corpus, fields, index, size)
        ids = chunks["id"].to_pylist()
        starts, ends = chunks["char_start"].to_numpy(), chunks["char_end"].to_numpy()
        text = [texts[i][s:e] for i, s, e in zip(ids, starts.tolist(), ends.tolist())]
        if "sparse_indices" not in chunks.column_names:  # a job run without --sparse: the same vectors from the text
            from longvec.runtime.jobs.shards import sparse_columns

            for name, column in zip(("sparse_indices", "sparse_values"), sparse_columns(encoder.documents(text))):
                chunks = chunks.append_column(name, column)
        doc_of = {doc_id: n_docs + i for i, doc_id in enumerate(docs["id"].to_pylist())}
        _add_term_stats(stats, chunks["sparse_indices"].to_pylist(), chunks["sparse_values"].to_pylist())
        _add_moments(moments, chunks["vector"])
        chunk_rows = pa.table(
            {
                "id": chunks["id"],
                "doc": pa.array([doc_of[i] for i in ids], pa.int64()),
                "chunk_index": chunks["chunk_index"],
                "char_start": chunks["char_start"],
                "char_end": chunks["char_end"],
                "text": pa.array(text, pa.string()),
                "vector": chunks["vector"],
                "sparse_indices": chunks["sparse_indices"],
                "sparse_values": chunks["sparse_values"],
            }
        )
        doc_rows = pa.table(
            {
                "id": docs["id"],
                "doc": pa.array(list(doc_of.values()), pa.int64()),
                "n_tokens": docs["n_tokens"],
                "vector": docs["vector"],
            }
        )
        for name, rows in (("chunks", chunk_rows), ("documents", doc_rows)):
            if name in tables:
                tables[name].add(rows)
            else:
                tables[name] = conn.create_table(name, data=rows, mode="overwrite")
        n_docs += docs.num_rows
        n_chunks += chunks.num_rows
        if stream is not None:
            print(f"index: shard {index:05d}: {n_docs} documents, {n_chunks} chunks", file=stream, flush=True)
    if not tables:
        raise InputError(f"{shards}: no document was embedded; nothing to index")
    terms = np.array(sorted(stats), dtype=np.int64)
    values = np.array([stats[t] for t in terms.tolist()], np.float64).reshape(-1, 3)
    conn.create_table(
        "terms",
        data=pa.table(
            {"term": terms, "df": values[:, 0].astype(np.int64), "sum_w": values[:, 1], "sum_w2": values[:, 2]}
        ),
        mode="overwrite",
    )
    dim = moments[0].size
    conn.create_table(
        "moments",
        data=pa.table(
            {
                "sum": pa.FixedSizeListArray.from_arrays(pa.array(moments[0]), dim),
                "outer": pa.FixedSizeListArray.from_arrays(pa.array(moments[1].reshape(-1)), dim * dim),
            }
        ),
        mode="overwrite",
    )
    from lancedb.index import FTS  # LanceDB's native full-text index (BM25 over its own tokenizer: candidates)

    tables["chunks"].create_index("text", config=FTS(), replace=True)
    info = IndexInfo(
        model=str(opts["model"]),
        weights_sha256=opts.get("weights"),
        bundle=str(bundle.resolve()) if bundle is not None else None,
        variant=str(opts["variant"]),
        chunk_tokens=int(opts["chunk_tokens"]),
        options=opts,
        documents=n_docs,
        chunks=n_chunks,
    )
    meta = {"format": FORMAT, **info.__dict__}
    conn.create_table(
        "meta",
        data=pa.table({"key": list(meta), "value": [json.dumps(v) for v in meta.values()]}),
        mode="overwrite",
    )
    return info


def _add_term_stats(stats: dict[int, list[float]], indices: list[list[int]], values: list[list[float]]) -> None:
    for ids, vals in zip(indices, values):
        for t, w in zip(ids, vals):
            entry = stats.get(t)
            if entry is None:
                stats[t] = [1.0, w, w * w]
            else:
                entry[0] += 1.0
                entry[1] += w
                entry[2] += w * w


def _add_moments(moments: list[np.ndarray], column: Any) -> None:
    """The sums that give any query's mean and variance of cosine over all chunks (z-score fusion)."""
    dim = column.type.list_size
    v = column.combine_chunks().values.to_numpy().astype(np.float64).reshape(-1, dim)
    v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    if not moments:
        moments += [np.zeros(dim), np.zeros((dim, dim))]
    moments[0] += v.sum(axis=0)
    moments[1] += v.T @ v


def _texts(corpus: Any, fields: Fields, index: int, size: int) -> dict[str, str]:
    """id -> text of the documents of one shard (the input read again: the shards hold no text)."""
    lo, hi = index * size, (index + 1) * size
    out: dict[str, str] = {}
    for r in iter_records(corpus, fields, wanted=lambda p: lo <= p < hi):
        if lo <= r.position < hi and r.id is not None and r.text is not None:
            out.setdefault(r.id, r.text)
    return out


class Index:
    """An index opened for queries: the chunk table, BM25 statistics and what the index records."""

    def __init__(self, db: Path) -> None:
        lancedb = import_lancedb()
        if not (db.is_dir() and (db / "meta.lance").exists()):
            raise InputError(f"{db}: not a longvec index (build one with `longvec index`)")
        conn = lancedb.connect(str(db))
        table = conn.open_table("meta").to_arrow().to_pydict()
        meta = {k: json.loads(v) for k, v in zip(table["key"], table["value"])}
        if meta.pop("format", None) != FORMAT:
            raise InputError(f"{db}: written by another longvec version; build it again")
        self.info = IndexInfo(**meta)
        self.chunks = conn.open_table("chunks")
        terms = conn.open_table("terms").to_arrow()
        self.terms = terms["term"].to_numpy()
        df = terms["df"].to_numpy()
        n = self.info.chunks
        self.idf = bm25_idf(n, df)
        self.sum_w, self.sum_w2 = terms["sum_w"].to_numpy(), terms["sum_w2"].to_numpy()
        moments = conn.open_table("moments").to_arrow()
        dim = moments["sum"].type.list_size
        self.mean = moments["sum"].combine_chunks().values.to_numpy() / n
        self.second = moments["outer"].combine_chunks().values.to_numpy().reshape(dim, dim) / n

    def _query_terms(self, query: SparseVector) -> np.ndarray:
        """Positions in `terms` of the query's terms that occur in the index."""
        where = np.searchsorted(self.terms, query.indices)
        found = (where < self.terms.size) & (self.terms[np.minimum(where, self.terms.size - 1)] == query.indices)
        return where[found]

    def bm25(self, query: SparseVector, indices: Sequence[Any], values: Sequence[Any]) -> tuple[np.ndarray, float]:
        """The library's BM25 (`sparse_scores`) of chunks given by their stored term weights, and the sum over
        those chunks of each query term's squared contribution (for the variance over all chunks)."""
        where = self._query_terms(query)
        weight = {int(self.terms[w]): float(self.idf[w]) for w in where}  # query weights are 1
        out = np.zeros(len(indices), np.float32)
        diagonal = 0.0
        for i, (ids, vals) in enumerate(zip(indices, values)):
            parts = [np.float32(weight[t]) * np.float32(v) for t, v in zip(ids, vals) if t in weight]
            out[i] = sum(parts)
            diagonal += sum(float(p) ** 2 for p in parts)
        return out, diagonal

    def lowest_cosine(self, q: np.ndarray) -> float:
        """The lowest cos(q, chunk): the nearest chunk to -q, as cos(q, v) = dist(-q, v) - 1."""
        far = self.chunks.search(-q, vector_column_name="vector").distance_type("cosine").limit(1)
        return float(far.select(["doc", "_distance"]).to_arrow()["_distance"][0].as_py()) - 1.0

    def dense_moments(self, q: np.ndarray) -> tuple[float, float]:
        """Mean and standard deviation of cos(q, chunk) over all chunks, from the stored sums (exact)."""
        q = q.astype(np.float64)
        mean = float(q @ self.mean)
        return mean, float(np.sqrt(max(float(q @ self.second @ q) - mean * mean, 0.0)))

    def lexical_moments(self, query: SparseVector, scores: np.ndarray, diagonal: float) -> tuple[float, float]:
        """Mean (exact, from each term's total weight) and standard deviation of BM25 over all chunks: the
        candidates' squared scores exactly, the other chunks' by their terms alone (terms that occur together
        outside the candidates are not counted)."""
        where = self._query_terms(query)
        n = self.info.chunks
        idf = self.idf[where].astype(np.float64)
        mean = float(idf @ self.sum_w[where]) / n
        rest = float((idf**2) @ self.sum_w2[where]) - diagonal
        square = (float(np.sum(scores.astype(np.float64) ** 2)) + max(rest, 0.0)) / n
        return mean, float(np.sqrt(max(square - mean * mean, 0.0)))

    def search(
        self,
        emb: Embedder,
        queries: Sequence[str],
        top_k: int = 10,
        hybrid: bool = True,
        alpha: float = DEFAULT_ALPHA,
        candidates: int = CANDIDATES,
        fusion: str = DEFAULT_FUSION,
    ) -> Iterator[tuple[int, list[tuple[Hit, str]]]]:
        """Per query (its index), the best `top_k` chunks as (hit, document id), best first."""
        if fusion not in ("zscore", "minmax"):
            raise InputError(f"the index fuses by zscore or minmax, not {fusion!r}")
        vectors = emb.embed(list(queries), prompt_name=self.info.options.get("prompt_name"))
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        sparse = emb.embed_sparse_queries(list(queries)) if hybrid else None
        cols = ["id", "doc", "chunk_index", "char_start", "char_end", "text", "sparse_indices", "sparse_values"]
        for qi, (query, q) in enumerate(zip(queries, vectors)):
            limit = max(candidates, top_k) if hybrid else top_k
            near = self.chunks.search(q, vector_column_name="vector").distance_type("cosine").limit(limit)
            rows = near.select([*cols, "vector", "_distance"]).to_arrow().to_pydict()
            if not hybrid:
                dense = 1.0 - np.array(rows["_distance"], np.float64)
                yield qi, [_hit(rows, i, float(dense[i]), float(dense[i]), None) for i in range(len(dense))][:top_k]
                continue
            assert sparse is not None
            text = " ".join(w for w in query.split())
            found = (
                self.chunks.search(text, query_type="fts")
                .limit(candidates)
                .select([*cols, "vector", "_score"])
                .to_arrow()
            )
            merged = _merge(rows, found.to_pydict() if found.num_rows else None)
            vecs = np.asarray(merged["vector"], np.float32)
            dense = vecs @ q / np.maximum(np.linalg.norm(vecs, axis=1), 1e-12)
            lexical, diagonal = self.bm25(sparse[qi], merged["sparse_indices"], merged["sparse_values"])
            if fusion == "zscore":
                (dm, ds), (lm, ls) = self.dense_moments(q), self.lexical_moments(sparse[qi], lexical, diagonal)
                d = (dense - dm) / (ds if ds > 0 else 1.0)
                s = (lexical - lm) / (ls if ls > 0 else 1.0)
            else:
                d = (dense - self.lowest_cosine(q)) / max(float(dense.max()) - self.lowest_cosine(q), 1e-12)
                s = lexical / max(float(lexical.max()), 1e-12)
            fused = alpha * d + (1.0 - alpha) * s
            order = top_indices(fused[None, :], top_k)[0]
            yield qi, [_hit(merged, int(i), float(fused[i]), float(dense[i]), float(lexical[i])) for i in order]


def _merge(a: dict[str, list[Any]], b: dict[str, list[Any]] | None) -> dict[str, list[Any]]:
    """The union of two candidate row sets, by (doc, chunk_index), in a then b order."""
    if b is None:
        return a
    seen = set(zip(a["doc"], a["chunk_index"]))
    keep = [i for i, key in enumerate(zip(b["doc"], b["chunk_index"])) if key not in seen]
    return {k: list(a[k]) + [b[k][i] for i in keep] for k in a if k in b}


def _hit(rows: dict[str, list[Any]], i: int, score: float, dense: float, lexical: float | None) -> tuple[Hit, str]:
    hit = Hit(
        document=int(rows["doc"][i]),
        start=int(rows["char_start"][i]),
        end=int(rows["char_end"][i]),
        score=score,
        dense=dense,
        lexical=lexical,
        chunk=int(rows["chunk_index"][i]),
        text=rows["text"][i],
    )
    return hit, str(rows["id"][i])


def document_ids(db: Path) -> list[str]:
    """Document ids in index order (hit.document indexes this list)."""
    lancedb = import_lancedb()
    table = lancedb.connect(str(db)).open_table("documents").to_arrow()
    order = np.argsort(table["doc"].to_numpy())
    ids = table["id"].to_pylist()
    return [ids[i] for i in order]
