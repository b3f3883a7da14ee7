"""The fusion of `Embedder.search`, re-measured through the public API: dense only, BM25 only, and min-max convex,
z-score convex and (weighted) RRF at each alpha, on squad-longdoc-dev, every question (4,968) by default.

Documents are embedded once (`embed_documents(sparse=True)`, the bundle's default mode, 128-token chunks) and each
setting is one `emb.search(questions, results, top_k=10, fusion=..., alpha=...)` call: the fusion measured is the
library's own. Queries are embedded again per call; a memo of encoder rows (bench/quality.py's MemoBackend, on the
token-state graph) makes that free without changing a vector.

Scorer: first-hit nDCG@10 per question (the gold span counted once, at the rank of the first hit that overlaps it,
1/log2(1 + rank); the independent evaluation's scorer), with the answer span as gold (and the paragraph as a second
column). Intervals: paired bootstrap over questions (the same resamples for every row), 95% percentile interval of
mean(row - best). The tie rule: among the settings whose interval includes zero, the simplest is the default, in
this order: min-max at alpha 0.5 (the incumbent), RRF at 0.5 (plain RRF), z-score at 0.5, then any other alpha.
The alpha is chosen on the same questions it is reported on (optimistic by that much; FINDINGS.md's unseen sets
are the check).

    .venv/bin/python bench/search_fusion.py                       # every question (~10 min on 2 busy cores)
    .venv/bin/python bench/search_fusion.py --questions 300       # the 300-question sample
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import data as evaldata
import numpy as np
from harness.machine import machine
from quality import MemoBackend, _commit

from longvec.runtime import Embedder, Hit

ALPHAS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
FUSIONS = ("minmax", "zscore", "rrf")
_DISCOUNTS = 1.0 / np.log2(np.arange(2, 12))


def first_hit(hits: list[Hit], doc: int, span: tuple[int, int]) -> float:
    """1/log2(1 + rank) of the first hit in `doc` that overlaps `span`, within the top 10; else 0."""
    lo, hi = span
    for rank, h in enumerate(hits[:10]):
        if h.document == doc and h.start < hi and h.end > lo:
            return float(_DISCOUNTS[rank])
    return 0.0


def simplicity(name: str) -> tuple[int, float]:
    """The tie rule's order: lower is simpler."""
    if name in ("dense", "bm25"):
        return (9, 0.0)
    fusion, alpha = name.split("@")
    return (0 if float(alpha) == 0.5 else 1, FUSIONS.index(fusion) + abs(float(alpha) - 0.5))


def interval(a: np.ndarray, best: np.ndarray, idx: np.ndarray) -> tuple[float, float, float]:
    d = a - best
    means = d[idx].mean(axis=1)
    return float(d.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    evaldata.model_args(p)
    p.add_argument("--questions", type=int, default=None, help="the 300-question sample (default: all 4,968)")
    p.add_argument("--chunk-tokens", type=int, default=128)
    p.add_argument("--bootstrap", type=int, default=2000)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "search_fusion.json")
    args = p.parse_args(argv)

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    if args.questions:
        s = evaldata.squad(args.data, None, args.questions)
    else:
        s = evaldata.load(
            args.data / "squad-longdoc-dev", "squad-longdoc-dev", "queries_full.jsonl", "qrels_full.jsonl"
        )
    base = Embedder.load(args.bundle, variant=args.variant, threads=args.threads, pooled=False)
    emb = Embedder(MemoBackend(base.backend), base.tokenizer, base.manifest)
    log(f"{s.name}: {len(s.docs)} documents, {len(s.queries)} questions")
    t0 = time.perf_counter()
    results = emb.embed_documents(s.docs, chunk_tokens=args.chunk_tokens, sparse=True)
    embed_s = time.perf_counter() - t0
    n_chunks = sum(len(r.chunk_spans) for r in results)
    log(f"embedded {n_chunks} chunks in {embed_s:.0f} s (mode {results[0].mode})")

    settings: dict[str, dict] = {"dense": {"hybrid": False}, "bm25": {"fusion": "minmax", "alpha": 0.0}}
    settings |= {f"{f}@{a}": {"fusion": f, "alpha": a} for f in FUSIONS for a in ALPHAS}
    per_query: dict[str, dict[str, list[float]]] = {}
    seconds: dict[str, float] = {}
    for name, kwargs in settings.items():
        t0 = time.perf_counter()
        hits = emb.search(s.queries, results, top_k=10, **kwargs)
        seconds[name] = time.perf_counter() - t0
        answer = [first_hit(h, g.doc, g.answer) for h, g in zip(hits, s.gold)]
        passage = [first_hit(h, g.doc, g.passage) for h, g in zip(hits, s.gold)]
        per_query[name] = {"answer": answer, "paragraph": passage}
        log(f"  {name:>10}: answer {np.mean(answer):.4f} paragraph {np.mean(passage):.4f} ({seconds[name]:.1f} s)")

    idx = np.random.default_rng(0).integers(0, len(s.queries), size=(args.bootstrap, len(s.queries)))
    table: dict[str, dict] = {}
    decision = {}
    for scorer in ("answer", "paragraph"):
        scores = {k: np.array(v[scorer]) for k, v in per_query.items()}
        best = max(scores, key=lambda k: scores[k].mean())
        for k, v in scores.items():
            row = table.setdefault(k, {})
            row[scorer] = float(v.mean())
            row[f"{scorer}_vs_best"] = None if k == best else interval(v, scores[best], idx)
        tied = [
            k for k in scores if k == best or table[k][f"{scorer}_vs_best"][1] <= 0 <= table[k][f"{scorer}_vs_best"][2]
        ]
        decision[scorer] = {"best": best, "tied": tied, "default": min(tied, key=simplicity)}
    meta = {
        "command": "python bench/search_fusion.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "set": s.name,
        "questions": len(s.queries),
        "chunk_tokens": args.chunk_tokens,
        "mode": results[0].mode,
        "n_chunks": n_chunks,
        "embed_seconds": round(embed_s, 1),
        "search_seconds": {k: round(v, 2) for k, v in seconds.items()},
        "bootstrap": args.bootstrap,
        "bundle": args.bundle.name,
        "machine": machine(),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else None,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": _commit(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "table": table, "decision": decision, "per_query": per_query}))
    print(markdown(table, decision))
    log(f"wrote {args.out}")
    return 0


def markdown(table: dict[str, dict], decision: dict[str, dict]) -> str:
    def cell(row: dict, scorer: str) -> str:
        diff = row[f"{scorer}_vs_best"]
        if diff is None:
            return f"**{row[scorer]:.3f}** best"
        d, lo, hi = diff
        mark = "" if lo <= 0 <= hi else " ✗"
        return f"{row[scorer]:.3f} ({d:+.3f} [{lo:+.3f}, {hi:+.3f}]){mark}"

    lines = [
        "| setting | first-hit nDCG@10, answer gold | first-hit nDCG@10, paragraph gold |",
        "|---|---|---|",
    ]
    lines += [f"| {k} | {cell(r, 'answer')} | {cell(r, 'paragraph')} |" for k, r in table.items()]
    lines += [
        "",
        *(f"- {s}: best {d['best']}; default by the tie rule: **{d['default']}**" for s, d in decision.items()),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
