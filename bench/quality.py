"""Retrieval quality of longvec's chunk and document vectors, dense, sparse and hybrid.

squad-longdoc-dev: all chunks of all 24 articles ranked for 300 questions. Chunk-level hit@1, hit@10, MRR@10,
nDCG@10 with the answer's paragraph as gold (a chunk counts when it overlaps it) and nDCG@10 with the answer span
as gold; document-level nDCG@10 by the document vector and by the best chunk. passkey: accuracy (nDCG@1) per
length, by the document vector and by the best chunk. Rows: mode x chunk tokens x window, BM25 over the same
chunks (longvec's own sparse vectors in the reference index of bench/index.py) and dense+BM25 fusions.

Encoder rows are memoized by their token ids (MemoBackend): a window or chunk that occurs again (the same document
windows for every mode and chunk size at one window size; the repeated filler of passkey documents) is encoded
once. The vectors are those a fresh run computes; only the time is saved.

    .venv/bin/python bench/quality.py                      # the full table (about 30 min on 2 busy cores)
    .venv/bin/python bench/quality.py --docs 4 --queries 50 --passkey-docs 5 --passkey-lengths 256,4096
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import data as evaldata
import numpy as np
import report
from harness.machine import machine
from harness.wrappers import BackendWrapper
from index import best_per_group, dense_scores, evaluate, rrf

from longvec.runtime import DocumentResult, Embedder, fuse_scores, sparse_scores
from longvec.runtime.core.sparse import SparseVector

ALPHAS = tuple(round(a, 1) for a in np.arange(0.0, 1.01, 0.1))


class MemoBackend(BackendWrapper):
    """Rows (right-padded, mask = leading ones) are computed once per distinct token sequence. Entries carry a
    tag so a finished phase can be dropped."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        super().__init__(inner)
        self.cache: dict[bytes, np.ndarray] = {}
        self.keys_by_tag: dict[str, list[bytes]] = defaultdict(list)
        self.tag = "default"
        self.requested = self.computed = 0

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        lens = attention_mask.sum(axis=1).tolist()
        keys = [input_ids[i, :n].tobytes() for i, n in enumerate(lens)]
        first = {}
        for i, k in enumerate(keys):
            if k not in self.cache:
                first.setdefault(k, i)
        if first:
            rows = list(first.values())
            width = max(lens[i] for i in rows)
            out = self.inner.run(input_ids[rows, :width], attention_mask[rows, :width])
            for j, (k, i) in enumerate(first.items()):
                self.cache[k] = out[j, : lens[i]].copy()
                self.keys_by_tag[self.tag].append(k)
            self.computed += sum(lens[i] for i in rows)
        self.requested += sum(lens)
        states = np.zeros((*input_ids.shape, self.hidden_size), dtype=np.float32)
        for i, k in enumerate(keys):
            states[i, : lens[i]] = self.cache[k]
        return states

    def drop(self, tag: str) -> None:
        for k in self.keys_by_tag.pop(tag, []):
            self.cache.pop(k, None)


class MemoTokenizer:
    """Tokenize each distinct text once (passkey documents are embedded in many configurations)."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner = inner
        self.cache: dict[str, object] = {}

    def encode(self, texts):  # type: ignore[no-untyped-def]
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            self.cache.update(zip(missing, self.inner.encode(missing)))
        return [self.cache[t] for t in texts]

    def ids(self, text: str) -> tuple[int, ...]:
        return self.inner.ids(text)

    def clear(self) -> None:
        self.cache.clear()


@dataclass
class Chunked:
    """All chunks of all documents of one run, concatenated; docs with no chunk (truncate) have empty groups."""

    vectors: np.ndarray
    doc_vectors: np.ndarray
    doc: np.ndarray
    spans: np.ndarray
    starts: np.ndarray  # first chunk of each document
    sparse: list[SparseVector] | None

    @classmethod
    def of(cls, results: list[DocumentResult]) -> Chunked:
        counts = np.array([len(r.chunk_spans) for r in results])
        sparse = None
        if results[0].chunk_sparse is not None:
            sparse = [v for r in results for v in r.chunk_sparse or []]
        return cls(
            np.concatenate([r.chunk_vectors for r in results]),
            np.stack([r.vector for r in results]),
            np.repeat(np.arange(len(results)), counts),
            np.concatenate([r.chunk_spans for r in results]).reshape(-1, 2),
            np.concatenate(([0], np.cumsum(counts)[:-1])),
            sparse,
        )

    def relevant(self, gold: list[evaldata.Gold], strict: bool) -> list[np.ndarray]:
        out = []
        for g in gold:
            lo, hi = g.answer if strict else g.passage
            mask = (self.doc == g.doc) & (self.spans[:, 0] < hi) & (self.spans[:, 1] > lo)
            out.append(np.flatnonzero(mask))
        return out

    def best_chunk_doc_scores(self, scores: np.ndarray, n_docs: int) -> np.ndarray:
        out = np.full((scores.shape[0], n_docs), -np.inf, dtype=np.float32)
        has = np.bincount(self.doc, minlength=n_docs) > 0
        if scores.shape[1]:
            out[:, has] = best_per_group(scores, self.starts[has])
        return out


def score_row(ch: Chunked, scores: np.ndarray, doc_scores: np.ndarray | None, s: evaldata.EvalSet) -> dict:
    docs_rel = [np.array([g.doc]) for g in s.gold]
    row = {f"para_{k}": v for k, v in evaluate(scores, ch.relevant(s.gold, strict=False)).as_dict().items()}
    row |= {f"answer_{k}": v for k, v in evaluate(scores, ch.relevant(s.gold, strict=True)).as_dict().items()}
    row["doc_ndcg@10_best_chunk"] = evaluate(ch.best_chunk_doc_scores(scores, len(s.docs)), docs_rel).ndcg10
    row["doc_acc_best_chunk"] = evaluate(ch.best_chunk_doc_scores(scores, len(s.docs)), docs_rel).hit1
    if doc_scores is not None:
        row["doc_ndcg@10_doc_vector"] = evaluate(doc_scores, docs_rel).ndcg10
        row["doc_acc_doc_vector"] = evaluate(doc_scores, docs_rel).hit1
    return row


class Runner:
    def __init__(self, emb: Embedder, memo: MemoBackend, s: evaldata.EvalSet, log) -> None:  # type: ignore[no-untyped-def]
        self.emb, self.memo, self.s, self.log = emb, memo, s, log
        self.q = emb.embed(s.queries)
        self.rows: list[dict] = []
        self.chunk_scores: dict[tuple, np.ndarray] = {}  # (mode, C, W) -> [n_queries, n_chunks] dense scores
        self.sparse: dict[int, Chunked] = {}
        self.spans: dict[int, np.ndarray] = {}

    def run(self, mode: str, c: int, w: int, sparse: bool = False) -> Chunked:
        t0, computed = time.perf_counter(), self.memo.computed
        res = self.emb.embed_documents(self.s.docs, mode=mode, chunk_tokens=c, window=w, sparse=sparse)
        ch = Chunked.of(res)
        if mode != "truncate":  # every mode returns the same chunks for the same size
            same = self.spans.setdefault(c, ch.spans)
            if not np.array_equal(same, ch.spans):
                raise RuntimeError(f"{mode} C={c} W={w}: chunk spans differ from another mode's")
        if sparse:
            self.sparse[c] = ch
        scores = dense_scores(self.q, ch.vectors)
        self.chunk_scores[(mode, c, w)] = scores
        row = {"set": self.s.name, "kind": "dense", "mode": mode, "chunk_tokens": c, "window": w}
        row |= score_row(ch, scores, dense_scores(self.q, ch.doc_vectors), self.s)
        row |= {"n_chunks": len(ch.doc), "seconds": time.perf_counter() - t0}
        row["encoded_tokens"] = self.memo.computed - computed
        self.rows.append(row)
        self.log(f"  {self.s.name} {mode:>11} C={c:<3} W={w:<3} {report.brief(row)}")
        return ch

    def bm25(self, c: int) -> np.ndarray:
        ch = self.sparse[c]
        assert ch.sparse is not None
        scores = sparse_scores(self.emb.embed_sparse_queries(self.s.queries), ch.sparse)
        row = {"set": self.s.name, "kind": "sparse", "mode": "bm25", "chunk_tokens": c, "window": None}
        self.rows.append(row | score_row(ch, scores, None, self.s))
        self.log(f"  {self.s.name} {'bm25':>11} C={c:<3}       {report.brief(self.rows[-1])}")
        return scores

    def hybrid(self, key: tuple, bm25: np.ndarray, alphas: tuple[float, ...] = ALPHAS) -> None:
        dense = self.chunk_scores[key]
        ch = self.sparse[key[1]]
        fusions = {"rrf": rrf([dense, bm25])} | {f"convex{a:.1f}": fuse_scores(dense, bm25, a) for a in alphas}
        for name, scores in fusions.items():
            row = {"set": self.s.name, "kind": "hybrid", "mode": key[0], "chunk_tokens": key[1], "window": key[2]}
            self.rows.append(row | {"fusion": name} | score_row(ch, scores, None, self.s))


def squad(emb: Embedder, memo: MemoBackend, s: evaldata.EvalSet, chunks: list[int], windows: list[int], log) -> list:  # type: ignore[no-untyped-def]
    r = Runner(emb, memo, s, log)
    overhead = emb.plan(window=max(windows)).window - emb.plan(window=max(windows)).content
    for i, w in enumerate(sorted(windows, reverse=True)):
        memo.tag = f"doc{w}"
        for c in chunks:
            r.run("late", c, w, sparse=i == 0)
        r.run("window_mean", chunks[0], w)
        for c in chunks:
            r.run("truncate", c, w)
        if i == 0:  # naive chunk vectors do not depend on the window when the chunk fits in one
            memo.tag = "naive"
            for c in chunks:
                r.run("naive", c, w)
        for c in chunks:
            if c + overhead <= w:
                r.run("blend", c, w)
        memo.drop(f"doc{w}")
    memo.drop("naive")
    for c in chunks:
        bm25 = r.bm25(c)
        for key in [k for k in r.chunk_scores if k[1] == c and k[0] in ("late", "naive", "blend")]:
            r.hybrid(key, bm25)
    return r.rows


def passkey(
    emb: Embedder,
    memo: MemoBackend,
    tok: MemoTokenizer,
    lengths: list[int],
    n_docs: int | None,
    chunks: list[int],
    windows: list[int],
    root: Path,
    log,
) -> list:  # type: ignore[no-untyped-def]
    rows: list[dict] = []
    for length in lengths:
        s = evaldata.passkey(length, root, n_docs)
        r = Runner(emb, memo, s, log)
        memo.tag = f"passkey{length}"
        overhead = emb.plan(window=max(windows)).window - emb.plan(window=max(windows)).content
        for c in chunks:
            for i, w in enumerate(windows):
                r.run("late", c, w, sparse=i == 0)
                if c + overhead <= w:
                    r.run("blend", c, w)
            r.run("naive", c, max(windows))
            bm25 = r.bm25(c)
            for key in [k for k in r.chunk_scores if k[1] == c and k[0] in ("late", "naive", "blend")]:
                r.hybrid(key, bm25, alphas=(0.5,))
        for w in windows:
            r.run("truncate", chunks[0], w)
            r.run("window_mean", chunks[0], w)
        for row in r.rows:
            row["length"] = length
            row["n_docs"], row["n_queries"] = len(s.docs), len(s.queries)
        rows += r.rows
        memo.drop(f"passkey{length}")
        tok.clear()
    return rows


def _commit() -> str:
    import subprocess

    here = Path(__file__).resolve().parents[1]
    run = lambda *a: subprocess.run(["git", *a], cwd=here, capture_output=True, text=True).stdout.strip()  # noqa: E731
    return run("rev-parse", "--short", "HEAD") + (
        " (+ uncommitted changes)" if run("status", "--porcelain", "-uno") else ""
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    evaldata.model_args(p)
    p.add_argument("--docs", type=int, default=None, help="SQuAD articles (default all 24)")
    p.add_argument("--queries", type=int, default=None, help="SQuAD questions (default all 300)")
    p.add_argument("--chunks", default="64,128,256")
    p.add_argument("--windows", default="128,256,512")
    p.add_argument("--passkey-docs", type=int, default=None, help="documents per length (queried ones first)")
    p.add_argument("--passkey-lengths", default=None, help="comma-separated (default: every length)")
    p.add_argument("--passkey-chunks", default="128")
    p.add_argument("--skip-squad", action="store_true")
    p.add_argument("--skip-passkey", action="store_true")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("quality.json"),
        help="JSON result, its tables beside it as .md (default: quality.json in the current folder)",
    )
    p.add_argument("--write-results", type=Path, default=None, help="replace the section in this RESULTS.md")
    p.add_argument("--render", type=Path, default=None, help="only re-render the tables of this JSON output")
    args = p.parse_args(argv)
    if args.render:
        saved = json.loads(args.render.read_text())
        text = report.markdown(saved["meta"], saved["rows"])
        print(text)
        if args.write_results:
            report.replace_section(args.write_results, text)
        return 0
    ints = lambda text: [int(x) for x in text.split(",") if x]  # noqa: E731

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    # the token-state graph: MemoBackend memoizes token states per window
    base = Embedder.load(args.bundle, variant=args.variant, threads=args.threads, pooled=False)
    memo, tok = MemoBackend(base.backend), MemoTokenizer(base.tokenizer)
    emb = Embedder(memo, tok, base.manifest)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    rows: list[dict] = []
    if not args.skip_squad:
        s = evaldata.squad(args.data, args.docs, args.queries)
        log(f"squad-longdoc-dev: {len(s.docs)} docs, {len(s.queries)} queries")
        rows += squad(emb, memo, s, ints(args.chunks), ints(args.windows), log)
        tok.clear()
    if not args.skip_passkey:
        lengths = ints(args.passkey_lengths) if args.passkey_lengths else evaldata.passkey_lengths(args.data)
        rows += passkey(
            emb, memo, tok, lengths, args.passkey_docs, ints(args.passkey_chunks), ints(args.windows), args.data, log
        )
    meta = {
        "command": "python bench/quality.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "bundle": args.bundle.name,
        "variant": args.variant,
        "threads": args.threads,
        "seconds": round(time.perf_counter() - t0, 1),
        "encoded_tokens": memo.computed,
        "requested_tokens": memo.requested,
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": _commit(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    text = report.markdown(meta, rows)
    args.out.with_suffix(".md").write_text(text)
    print(text)
    if args.write_results:
        report.replace_section(args.write_results, text)
    log(f"wrote {args.out} ({meta['seconds']} s; encoded {memo.computed} of {memo.requested} tokens)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
