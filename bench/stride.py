"""Retrieval quality against encoder work: window stride x mode, with paired bootstrap intervals over queries.

For each set, all chunks (C tokens, `chunking="tokens"`) of all documents are ranked per query, for `late`,
`blend` and `window_mean` at window strides content/2, 5/8, 3/4, 7/8 and content (no overlap), and for `naive`
(which does not depend on the stride: one row). The cost column is encoder tokens per text token: every position
the encoder ran (framing and padding-free window lengths included) over the documents' content tokens.

Scorers, per query (so that two configurations can be compared query by query):
- first-hit nDCG@10: the gold span counted once, at the rank of the first chunk that overlaps it, 1/log2(1 + rank)
  within the top 10 (the scorer of the independent evaluation in ../shared/FINDINGS.md);
- bench/quality.py's nDCG@10: every chunk that overlaps the gold span is relevant (rewards chunk vectors that
  resemble their neighbours; reported because the earlier tables used it);
- SQuAD: both with the answer span and with the answer's paragraph as gold; passkey: the needle sentence as gold,
  plus LongEmbed's accuracy (the top chunk lies in the right document); pydoc: the section's text as gold;
- document level (doc vectors): nDCG@10 of the right document among all, by each mode's document vector.

Intervals: paired bootstrap over queries (B resamples of the query set, the same resamples for every row), 95%
percentile interval of mean(score - best's score), where "best" is the row with the highest mean for that scorer.
A row whose interval includes zero is not distinguishable from the best on this set.

    .venv/bin/python bench/stride.py --sets squad                    # ~1.3M encoder tokens
    .venv/bin/python bench/stride.py --sets passkey --passkey-docs 25 --passkey-lengths 1024,4096,16384
    .venv/bin/python bench/stride.py --sets pydoc
    .venv/bin/python bench/stride.py --render bench/out/stride-*.json --write-results bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from fractions import Fraction
from pathlib import Path

import data as evaldata
import numpy as np
from index import dense_scores, top_k
from quality import MemoBackend, MemoTokenizer, _commit

from longvec.runtime import Embedder

FRACTIONS = (Fraction(1, 2), Fraction(5, 8), Fraction(3, 4), Fraction(7, 8), Fraction(1, 1))
SECTION = "## Stride x mode: quality against encoder work"
END = "<!-- end of generated stride tables -->"
_DISCOUNTS = 1.0 / np.log2(np.arange(2, 12))


def first_hit_ndcg(scores: np.ndarray, relevant: list[np.ndarray]) -> np.ndarray:
    """Per query: 1/log2(1 + rank) of the first relevant column in the top 10, else 0."""
    top = top_k(scores, 10)
    out = np.zeros(len(relevant))
    for q, rel in enumerate(relevant):
        gains = np.isin(top[q], rel)
        if gains.any():
            out[q] = _DISCOUNTS[int(np.argmax(gains))]
    return out


def all_overlap_ndcg(scores: np.ndarray, relevant: list[np.ndarray]) -> np.ndarray:
    """Per query: bench/index.evaluate's nDCG@10 (every relevant column a gain of 1, ideal = min(|rel|, 10))."""
    top = top_k(scores, 10)
    out = np.zeros(len(relevant))
    for q, rel in enumerate(relevant):
        gains = np.isin(top[q], rel)
        if rel.size:
            out[q] = float(gains @ _DISCOUNTS[: gains.size]) / float(_DISCOUNTS[: min(len(rel), 10)].sum())
    return out


def top1_in_doc(scores: np.ndarray, doc_of_column: np.ndarray, gold_docs: np.ndarray) -> np.ndarray:
    return (doc_of_column[np.argmax(scores, axis=1)] == gold_docs).astype(np.float64)


class SetRun:
    """All configurations of one evaluation set; per-query scores by (config, scorer)."""

    def __init__(self, emb: Embedder, memo: MemoBackend, s: evaldata.EvalSet, chunk: int, log) -> None:  # type: ignore[no-untyped-def]
        self.emb, self.memo, self.s, self.chunk, self.log = emb, memo, s, chunk, log
        self.q = emb.embed(s.queries)
        self.text_tokens = sum(emb.count_tokens(s.docs))
        self.gold_docs = np.array([g.doc for g in s.gold])
        self.rows: list[dict] = []

    def run(self, mode: str, stride: int | None, label: str) -> None:
        t0, requested = time.perf_counter(), self.memo.requested
        res = self.emb.embed_documents(
            self.s.docs, chunking="tokens", chunk_tokens=self.chunk, mode=mode, stride=stride
        )
        cost = (self.memo.requested - requested) / self.text_tokens
        counts = np.array([len(r.chunk_spans) for r in res])
        doc = np.repeat(np.arange(len(res)), counts)
        spans = np.concatenate([r.chunk_spans for r in res]).reshape(-1, 2)
        scores = dense_scores(self.q, np.concatenate([r.chunk_vectors for r in res]))
        doc_scores = dense_scores(self.q, np.stack([r.vector for r in res]))

        def rel(strict: bool) -> list[np.ndarray]:
            out = []
            for g in self.s.gold:
                lo, hi = g.answer if strict else g.passage
                out.append(np.flatnonzero((doc == g.doc) & (spans[:, 0] < hi) & (spans[:, 1] > lo)))
            return out

        per_query: dict[str, np.ndarray] = {}
        if mode != "window_mean":  # window_mean's chunk vectors are the late ones: only its document vector is new
            answer, passage = rel(True), rel(False)
            per_query["firsthit_answer"] = first_hit_ndcg(scores, answer)
            per_query["overlap_answer"] = all_overlap_ndcg(scores, answer)
            if any(g.answer != g.passage for g in self.s.gold):
                per_query["firsthit_passage"] = first_hit_ndcg(scores, passage)
                per_query["overlap_passage"] = all_overlap_ndcg(scores, passage)
            per_query["top1_doc_best_chunk"] = top1_in_doc(scores, doc, self.gold_docs)
        per_query["doc_ndcg_doc_vector"] = first_hit_ndcg(doc_scores, [np.array([d]) for d in self.gold_docs])
        row = {"set": self.s.name, "mode": mode, "stride": stride, "label": label, "cost": cost}
        row |= {"seconds": time.perf_counter() - t0, "n_chunks": int(counts.sum())}
        row["per_query"] = {k: v.tolist() for k, v in per_query.items()}
        self.rows.append(row)
        means = " ".join(f"{k} {v.mean():.3f}" for k, v in per_query.items())
        self.log(f"  {self.s.name} {mode:>11} {label:>9} cost {cost:.3f} {means} ({row['seconds']:.0f} s)")


def stride_labels(emb: Embedder) -> list[tuple[int, str]]:
    content = emb.plan().content
    return [(max(1, int(content * f)), "content/2" if f == Fraction(1, 2) else str(f)) for f in FRACTIONS]


def evaluate_set(emb: Embedder, memo: MemoBackend, s: evaldata.EvalSet, chunk: int, log, tag: str) -> list[dict]:  # type: ignore[no-untyped-def]
    r = SetRun(emb, memo, s, chunk, log)
    log(f"{s.name}: {len(s.docs)} documents, {r.text_tokens} tokens, {len(s.queries)} queries")
    memo.tag = f"{tag}-naive"
    r.run("naive", None, "—")
    for stride, label in stride_labels(emb):
        memo.tag = f"{tag}-{stride}"
        for mode in ("late", "blend", "window_mean"):  # blend and window_mean reuse late's windows (memo)
            r.run(mode, stride, label)
        memo.drop(f"{tag}-{stride}")
    memo.drop(f"{tag}-naive")
    return r.rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    evaldata.model_args(p)
    p.add_argument("--sets", default="squad,passkey,pydoc")
    p.add_argument("--chunk-tokens", type=int, default=128)
    p.add_argument("--squad-queries", choices=("sample", "full"), default="sample")
    p.add_argument("--passkey-docs", type=int, default=25)
    p.add_argument("--passkey-lengths", default="1024,4096,16384")
    p.add_argument("--out", type=Path, default=None, help="default bench/out/stride-<sets>.json")
    p.add_argument("--render", type=Path, nargs="*", default=None, help="only render these JSON outputs")
    p.add_argument("--bootstrap", type=int, default=10000)
    p.add_argument("--summary", action="store_true", help="with --render: one compact table of every set")
    p.add_argument("--write-results", type=Path, default=None, help="replace the stride section of this file")
    args = p.parse_args(argv)
    if args.render is not None:
        import stride_report

        saved = [json.loads(path.read_text()) for path in args.render]
        text = stride_report.markdown(saved, args.bootstrap, summary=args.summary)
        print(text)
        if args.write_results:
            stride_report.replace_section(args.write_results, text, SECTION, END)
        return 0

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    base = Embedder.load(args.bundle, variant=args.variant, threads=args.threads)
    memo, tok = MemoBackend(base.backend), MemoTokenizer(base.tokenizer)
    emb = Embedder(memo, tok, base.manifest)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    rows: list[dict] = []
    names = args.sets.split(",")
    for name in names:
        if name == "squad":
            q = "queries.jsonl" if args.squad_queries == "sample" else "queries_full.jsonl"  # full: clustered
            qrels = q.replace("queries", "qrels")
            name = "squad-longdoc-dev" if args.squad_queries == "sample" else "squad-longdoc-dev, all 4,968 questions"
            s = evaldata.load(args.data / "squad-longdoc-dev", name, q, qrels)
            rows += evaluate_set(emb, memo, s, args.chunk_tokens, log, "squad")
        elif name == "passkey":
            for length in [int(x) for x in args.passkey_lengths.split(",")]:
                s = evaldata.passkey(length, args.data, args.passkey_docs)
                rows += evaluate_set(emb, memo, s, args.chunk_tokens, log, f"passkey{length}")
        elif name == "pydoc":
            import pydoc_sections

            rows += evaluate_set(emb, memo, pydoc_sections.build(), args.chunk_tokens, log, "pydoc")
        else:
            raise SystemExit(f"unknown set {name!r}")
        tok.clear()
    plan = emb.plan()
    meta = {
        "command": "python bench/stride.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "bundle": args.bundle.name,
        "variant": args.variant,
        "window": plan.window,
        "content": plan.content,
        "chunk_tokens": args.chunk_tokens,
        "passkey_docs": args.passkey_docs if "passkey" in names else None,
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": f"{platform.machine()}, {platform.processor() or ''}".strip(", "),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": _commit(),
    }
    out = args.out or Path(__file__).resolve().parent / "out" / f"stride-{'-'.join(names)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows}))
    log(f"wrote {out} ({meta['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
