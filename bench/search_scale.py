"""`longvec index` at scale: build time, peak and sampled memory, disk size, and query latency of an index of N
documents (default 100,000) built here.

The corpus is synthetic and says so: each document is 1-3 consecutive sentences of squad-longdoc-dev, starting at
a seeded random sentence, with its number as a prefix so no two are equal ("[17] The keeper ..."); the questions
are the set's own, so the lexical and dense parts of a query see realistic text. The build runs as `longvec index`
does for a user (a child process, `--threads 2`); its resident memory is sampled every half second, so a build
that streams shows the same memory at a quarter of the corpus as at the end.

    .venv/bin/python bench/search_scale.py --docs 100000 --db /tmp/scale-index
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import data as evaldata
import numpy as np
from harness.machine import machine
from load_compare import tree_rss_mb
from search_index import du

from longvec.runtime import Embedder
from longvec.runtime.jobs.lance_index import SHARDS, Index

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def corpus(root: Path, n: int, out: Path, seed: int = 0) -> dict[str, float]:
    """Writes `n` documents as JSONL ({"id", "text"}) and returns their size in characters."""
    sentences = []
    for line in (root / "documents.jsonl").read_text().splitlines():
        text = json.loads(line)["text"]
        sentences += [s.strip() for s in _SENTENCE.split(text) if len(s.strip()) > 20]
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(sentences) - 4, size=n)
    lengths = rng.integers(1, 4, size=n)
    chars = 0
    with out.open("w") as f:
        for i, (a, k) in enumerate(zip(starts, lengths)):
            text = f"[{i}] " + " ".join(sentences[a : a + k])
            chars += len(text)
            f.write(json.dumps({"id": f"d{i}", "text": text}) + "\n")
    return {"documents": n, "sentences_in_pool": len(sentences), "mean_chars": round(chars / n, 1)}


def build(bundle: Path, corpus_path: Path, db: Path, threads: int) -> dict[str, object]:
    cli = Path(sys.executable).with_name("longvec")
    cmd = [str(cli), "index", str(bundle), str(corpus_path), str(db), "--threads", str(threads)]
    load = Path("/proc/loadavg").read_text().split()[:3]
    t0 = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    samples: list[tuple[float, float]] = []
    while child.poll() is None:
        samples.append((time.perf_counter() - t0, tree_rss_mb(child.pid)))
        time.sleep(0.5)
    seconds = time.perf_counter() - t0
    if child.returncode != 0:
        raise SystemExit(f"longvec index exited {child.returncode}")
    series = [(t, m) for t, m in samples if m > 0]
    at = {f"{int(q * 100)}%": round(max(m for t, m in series if t <= q * seconds), 1) for q in (0.25, 0.5, 0.75)}
    return {
        "command": " ".join(cmd[1:]),
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "peak_rss_mb_by_elapsed_time": {**at, "100%": round(max(m for _, m in series), 1)},
        "loadavg_before": load,
        "loadavg_after": Path("/proc/loadavg").read_text().split()[:3],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    evaldata.model_args(p)
    p.add_argument("--docs", type=int, default=100_000)
    p.add_argument("--db", type=Path, required=True)
    p.add_argument("--queries", type=int, default=500, help="questions timed, one at a time (hybrid and dense)")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "search_scale.json")
    args = p.parse_args(argv)
    root = args.data / "squad-longdoc-dev"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "corpus.jsonl"
        made = corpus(root, args.docs, path)
        print(json.dumps({"corpus": made}), flush=True)
        built = build(args.bundle, path, args.db, args.threads)
    print(json.dumps({"build": built}), flush=True)
    disk = {"tables_mb": round((du(args.db) - du(args.db / SHARDS)) / 2**20, 1)}
    disk["shards_mb"] = round(du(args.db / SHARDS) / 2**20, 1)
    index = Index(args.db)
    emb = Embedder.load(args.bundle, variant=args.variant, threads=args.threads)
    questions = [json.loads(line)["text"] for line in (root / "queries_full.jsonl").read_text().splitlines()]
    questions = questions[: args.queries]
    latency: dict[str, dict[str, float]] = {}
    for name, hybrid in (("hybrid", True), ("dense", False)):
        list(index.search(emb, questions[:5], top_k=10, hybrid=hybrid))  # warm: the tables' first reads
        ms = []
        for q in questions:
            t0 = time.perf_counter()
            list(index.search(emb, [q], top_k=10, hybrid=hybrid))
            ms.append((time.perf_counter() - t0) * 1000)
        latency[name] = {
            "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1),
        }
        print(f"{name}: p50 {latency[name]['p50_ms']} ms, p99 {latency[name]['p99_ms']} ms", flush=True)
    result = {
        "command": "python bench/search_scale.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "corpus": made,
        "documents": index.info.documents,
        "chunks": index.info.chunks,
        "build": built,
        "disk": disk,
        "query_latency": latency,
        "queries_timed": len(questions),
        "machine": machine(),
        "loadavg_end": Path("/proc/loadavg").read_text().split()[:3],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
