"""Throughput of a batch job (`longvec embed`) on the local engine and on Ray Data, same input, same machine.

The corpus is built at run time from the SQuAD paragraphs of squad-longdoc-dev (each article's text split on
blank lines), cycled with new ids until it has --docs documents, and written to a temporary directory; nothing
is copied into the repository. Each engine runs as the CLI a user would run, in its own process; the time is the
wall clock of the whole command (model load, and for Ray the cluster start-up, included), and tokens are those the
job reports in _progress.json. Both outputs are checked to hold the same document ids and chunk counts.

    .venv/bin/python bench/jobs.py                         # 10,000 documents, both engines
    .venv/bin/python bench/jobs.py --docs 500 --engines local
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import data as evaldata
import pyarrow.parquet as pq
from harness.machine import machine
from harness.markdown import table

ROOT = Path(__file__).resolve().parents[1]
LONGVEC = [sys.executable, "-c", "import sys; from longvec.runtime.cli.main import main; sys.exit(main())"]


def build_corpus(path: Path, n_docs: int, source: Path) -> int:
    paragraphs = []
    for line in source.read_text(encoding="utf-8").splitlines():
        doc = json.loads(line)
        paragraphs += [(doc["id"], k, p) for k, p in enumerate(doc["text"].split("\n\n")) if p.strip()]
    with path.open("w", encoding="utf-8") as f:
        for i in range(n_docs):
            article, k, text = paragraphs[i % len(paragraphs)]
            f.write(json.dumps({"id": f"{article}#{k}#{i // len(paragraphs)}", "text": text}) + "\n")
    return len(paragraphs)


def run(engine: str, bundle: Path, corpus: Path, out: Path, args: argparse.Namespace) -> dict[str, object]:
    cmd = [*LONGVEC, "embed", str(bundle), str(corpus), str(out), "--engine", engine]
    cmd += ["--shard-size", str(args.shard_size), "--chunk-tokens", str(args.chunk_tokens)]
    if engine == "local":
        cmd += ["--threads", str(args.threads)]
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    load_after = os.getloadavg()[0]  # other work on the machine: the numbers are only comparable at similar load
    if result.returncode != 0:
        raise SystemExit(f"{engine} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    state = json.loads((out / "_progress.json").read_text())
    shards = state["shards"].values()
    docs, tokens = sum(s["documents"] for s in shards), sum(s["tokens"] for s in shards)
    return {
        "engine": engine,
        "documents": docs,
        "chunks": sum(s["chunks"] for s in shards),
        "errors": sum(s["errors"] for s in shards),
        "tokens": tokens,
        "seconds": round(seconds, 2),
        "docs_per_s": round(docs / seconds, 1),
        "tokens_per_s": round(tokens / seconds),
        "load_1min": [round(load_before, 1), round(load_after, 1)],
        "summary": result.stdout.strip().splitlines()[-1],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--docs", type=int, default=10_000)
    p.add_argument("--engines", default="local,ray")
    p.add_argument("--bundle", type=Path, default=ROOT / "bundles" / "all-MiniLM-L6-v2")
    p.add_argument("--data", type=Path, default=evaldata.DEFAULT_ROOT / "squad-longdoc-dev" / "documents.jsonl")
    p.add_argument("--threads", type=int, default=2, help="encoder threads of the local engine")
    p.add_argument("--shard-size", type=int, default=1000)
    p.add_argument("--chunk-tokens", type=int, default=128)
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "jobs.json")
    args = p.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="longvec-jobs-") as tmp:
        corpus = Path(tmp) / "corpus.jsonl"
        n_paragraphs = build_corpus(corpus, args.docs, args.data)
        print(f"corpus: {args.docs} documents cycled from {n_paragraphs} SQuAD paragraphs; {os.cpu_count()} CPUs")
        for engine in args.engines.split(","):
            row = run(engine, args.bundle, corpus, Path(tmp) / f"out-{engine}", args)
            print(f"{engine}: {row['summary']}")
            rows.append(row)
        if len(rows) > 1:
            ids = [
                sorted(pq.read_table(Path(tmp) / f"out-{r['engine']}" / "documents", columns=["id"])["id"].to_pylist())
                for r in rows
            ]
            same = all(i == ids[0] for i in ids) and len({r["chunks"] for r in rows}) == 1
            print(f"same documents and chunk counts on every engine: {same}")
            if not same:
                raise SystemExit("engines disagree")

    print()
    header = ["engine", "documents", "tokens", "wall s", "docs/s", "tokens/s"]
    cells = ["engine", "documents", "tokens", "seconds", "docs_per_s", "tokens_per_s"]
    formats = ["{}", "{:,}", "{:,}", "{:.1f}", "{:,.1f}", "{:,}"]
    print("\n".join(table(header, ([f.format(r[c]) for f, c in zip(formats, cells)] for r in rows))))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    meta = {"docs": args.docs, "threads": args.threads, "machine": machine()}
    args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
