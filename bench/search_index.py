"""`longvec index` + `longvec query` against the library's `Embedder.search` on squad-longdoc-dev: the same
first-hit nDCG@10 (answer gold, every question), and the index's build time, peak memory, disk size and query
latency (one query at a time, as `longvec query` runs them).

    .venv/bin/python bench/search_index.py --build --db /tmp/squad-index     # builds it with `longvec index` first
    .venv/bin/python bench/search_index.py --db /tmp/squad-index             # an index already built

The library's per-question scores come from bench/search_fusion.py's JSON (the same questions, in the same
order; its `zscore@0.5` row is the default hybrid, `dense` the dense-only one); the difference is paired per
question, with a bootstrap 95% interval.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import data as evaldata
import numpy as np
from harness.machine import machine
from search_fusion import first_hit

from longvec.runtime import Embedder
from longvec.runtime.jobs.lance_index import SHARDS, Index


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    evaldata.model_args(p)
    p.add_argument("--db", type=Path, required=True)
    p.add_argument("--build", action="store_true", help="build the index with `longvec index` first (timed)")
    p.add_argument("--questions", type=int, default=None, help="the first N questions (default: all 4,968)")
    p.add_argument("--library-json", type=Path, default=Path(__file__).resolve().parent / "out" / "search_fusion.json")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "search_index.json")
    args = p.parse_args(argv)
    root = args.data / "squad-longdoc-dev"
    s = evaldata.load(root, "squad-longdoc-dev", "queries_full.jsonl", "qrels_full.jsonl")
    n = args.questions or len(s.queries)
    build: dict[str, object] = {}
    if args.build:
        cli = Path(sys.executable).with_name("longvec")
        t0 = time.perf_counter()
        cmd = [str(cli), "index", str(args.bundle), str(root / "documents.jsonl"), str(args.db), "--threads", "2"]
        subprocess.run(cmd, check=True)
        build = {
            "seconds": round(time.perf_counter() - t0, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
            "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        }
    disk = {"tables_mb": round((du(args.db) - du(args.db / SHARDS)) / 2**20, 2)}
    disk["shards_mb"] = round(du(args.db / SHARDS) / 2**20, 2)
    index = Index(args.db)
    emb = Embedder.load(args.bundle, variant=args.variant, threads=args.threads)
    index.info.check(emb, args.variant)
    position = {doc_id: i for i, doc_id in enumerate(s.doc_ids)}
    rows: dict[str, dict] = {}
    for name, hybrid in (("hybrid", True), ("dense", False)):
        scores, seconds = [], []
        for q, g in zip(s.queries[:n], s.gold[:n]):
            t0 = time.perf_counter()
            [(_, hits)] = list(index.search(emb, [q], top_k=10, hybrid=hybrid))
            seconds.append(time.perf_counter() - t0)
            hits_ = [replace(h, document=position[d]) for h, d in hits]
            scores.append(first_hit(hits_, g.doc, g.answer))
        ms = np.array(seconds) * 1000
        rows[name] = {
            "ndcg10_answer": float(np.mean(scores)),
            "per_query": scores,
            "query_ms_p50": float(np.percentile(ms, 50)),
            "query_ms_p99": float(np.percentile(ms, 99)),
        }
        print(
            f"index {name}: first-hit nDCG@10 {np.mean(scores):.4f}, p50 {rows[name]['query_ms_p50']:.0f} ms, "
            f"p99 {rows[name]['query_ms_p99']:.0f} ms ({n} questions)",
            flush=True,
        )
    if args.library_json.is_file():
        lib = json.loads(args.library_json.read_text())["per_query"]
        idx = np.random.default_rng(0).integers(0, n, size=(2000, n))
        for name, key in (("hybrid", "zscore@0.5"), ("dense", "dense")):
            ref = np.array(lib[key]["answer"][:n])
            d = np.array(rows[name]["per_query"]) - ref
            means = d[idx].mean(axis=1)
            rows[name]["library_ndcg10_answer"] = float(ref.mean())
            rows[name]["minus_library"] = [
                float(d.mean()),
                float(np.percentile(means, 2.5)),
                float(np.percentile(means, 97.5)),
            ]
            print(
                f"  library {name} {ref.mean():.4f}; index - library {d.mean():+.4f} "
                f"[{np.percentile(means, 2.5):+.4f}, {np.percentile(means, 97.5):+.4f}]"
            )
    meta = {
        "command": "python bench/search_index.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "questions": n,
        "documents": index.info.documents,
        "chunks": index.info.chunks,
        "build": build,
        "disk": disk,
        "machine": machine(),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    print(json.dumps({k: v for k, v in meta.items() if k != "machine"}))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
