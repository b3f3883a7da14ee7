"""Streaming memory: peak RSS of embedding one document of N tokens, each size in a fresh subprocess.

    python bench/memory.py                                   # real model, 10k and 1M tokens of SQuAD text
    python bench/memory.py --sizes 10000,200000 --backend fake --text synthetic

The document is SQuAD articles (read at run time from $LONGVEC_DATA, never copied) repeated and cut to exactly N
tokens. Each child loads the embedder, builds the text, embeds it, and reports `ru_maxrss` (the peak of the whole
process) plus the peak before embedding. A (tokens x hidden) float32 array of a 1M-token MiniLM document would be
1.5 GB; streaming keeps the difference between sizes to what grows with the input itself (ids, offsets, the text,
one pooled vector per window and per chunk).

onnxruntime allocates its memory pattern for a batch shape on the second run of that shape (+140 MB for MiniLM at
32 windows x 256 tokens), once per process: a 10k-token document (40 windows, one full batch) stops before that,
any document of 20k tokens or more pays it. `--warmup` (the default) runs two full batches of windows before the
measured document, so the peaks compare what the document itself costs; `--no-warmup` measures cold processes.
`rss_mb_after_calls` in the JSON is the resident size after each encoder call (first 4 and last), to see the step.

`--backend null` returns zero states instantly, so its time is the non-encoder overhead: tokenization, window
planning, batching, stitching, pooling and chunking.
Prints a table and writes JSON to bench/out/memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import data as evaldata
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SQUAD = evaldata.DEFAULT_ROOT / "squad-longdoc-dev" / "documents.jsonl"
BUNDLE = ROOT / "bundles" / "all-MiniLM-L6-v2"


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def load_embedder(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from harness.wrappers import NullBackend

    from longvec.runtime import Embedder
    from longvec.runtime.backends.fake import FakeBackend
    from longvec.runtime.bundle.reader import Bundle
    from longvec.runtime.core.text import TextTokenizer

    if args.backend == "real":
        return Embedder.load(args.bundle, variant=args.variant, threads=args.threads, window=args.window)
    bundle = Bundle.open(args.bundle, verify=False)
    manifest = bundle.manifest
    tokenizer = TextTokenizer.from_file(bundle.path(manifest.tokenizer_file))
    backend = (
        FakeBackend(hidden_size=manifest.hidden_size) if args.backend == "fake" else NullBackend(manifest.hidden_size)
    )
    return Embedder(backend, tokenizer, manifest, args.window)


def base_text(kind: str, path: Path) -> str:
    if kind == "synthetic":
        rng = np.random.default_rng(0)
        words = ["lamp", "keeper", "tower", "storm", "harbour", "ledger", "signal", "island", "fog", "boat"]
        sentences = [" ".join(rng.choice(words, 12)).capitalize() + "." for _ in range(4000)]
        return "\n\n".join(" ".join(sentences[i : i + 6]) for i in range(0, len(sentences), 6))
    with path.open(encoding="utf-8") as f:
        return "\n\n".join(json.loads(line)["text"] for line in f)


def document(embedder, base: str, n_tokens: int) -> str:  # type: ignore[no-untyped-def]
    """`base` repeated and cut after exactly `n_tokens` tokens (copies are joined at whitespace, where a BERT-style
    tokenizer splits anyway, so token counts add up)."""
    offsets = embedder.tokenizer.encode([base])[0].offsets
    copies, rest = divmod(n_tokens, len(offsets))
    tail = [base[: offsets[rest - 1, 1]]] if rest else []
    return "\n\n".join([base] * copies + tail)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024.0 for line in f if line.startswith("VmRSS"))


def watch_calls(embedder):  # type: ignore[no-untyped-def]
    """The embedder behind a backend that records the resident size after every encoder call, and that record."""
    from harness.wrappers import TracedBackend, with_backend

    trace: list[float] = []
    return with_backend(embedder, TracedBackend(embedder.backend, lambda: trace.append(round(rss_mb(), 1)))), trace


def warm_up(embedder) -> None:  # type: ignore[no-untyped-def]
    """Two full batches of windows, the shape every long document uses (see the module docstring)."""
    plan = embedder.plan()
    batch = embedder._pipeline.batching
    per_call = max(1, min(batch.max_batch, batch.max_tokens // plan.window))
    ids = np.full((per_call, plan.window), embedder.manifest.framing.pad_id + 1000, dtype=np.int64)
    for _ in range(2):
        embedder.backend.run(ids, np.ones_like(ids))


def child(args: argparse.Namespace) -> dict[str, object]:
    t0 = time.perf_counter()
    embedder = load_embedder(args)
    if args.warmup:
        warm_up(embedder)
    embedder, trace = watch_calls(embedder)
    text = document(embedder, base_text(args.text, args.data), args.child)
    before = peak_mb()
    plan = embedder.plan(stride=None if args.stride == "half" else embedder.plan().content)
    t1, cpu1 = time.perf_counter(), time.process_time()
    if args.api == "embed":
        vector = embedder.embed([text], stride=plan.stride)[0]
        n_chunks = 0
    else:
        [res] = embedder.embed_documents([text], chunk_tokens=args.chunk_tokens, stride=plan.stride)
        vector, n_chunks = res.vector, len(res.chunk_vectors)
        if res.n_tokens != args.child:
            raise RuntimeError(f"built {res.n_tokens} tokens, wanted {args.child}")
    seconds, cpu = time.perf_counter() - t1, time.process_time() - cpu1
    if not np.all(np.isfinite(vector)):
        raise RuntimeError("non-finite vector")
    return {
        "tokens": args.child,
        "chars": len(text),
        "windows": plan.n_windows(args.child),
        "window": plan.window,
        "stride": plan.stride,
        "chunks": n_chunks,
        "peak_before_embed_mb": round(before, 1),
        "peak_mb": round(peak_mb(), 1),
        "embed_seconds": round(seconds, 2),
        "embed_cpu_seconds": round(cpu, 2),  # all threads of the process: a loaded machine inflates wall time only
        "tokens_per_second": round(args.child / seconds),
        "setup_seconds": round(t1 - t0, 2),
        "rss_mb_after_calls": trace[:4] + trace[-1:],
    }


def run_sizes(args: argparse.Namespace) -> list[dict[str, object]]:
    rows = []
    for n in args.sizes:
        cmd = [sys.executable, __file__, "--child", str(n), *sys.argv[1:]]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ.copy())
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"  {n:>9,} tokens: peak {rows[-1]['peak_mb']} MB, {rows[-1]['embed_seconds']} s", file=sys.stderr)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[10_000, 1_000_000])
    p.add_argument("--backend", choices=["real", "fake", "null"], default="real")
    p.add_argument("--api", choices=["embed", "documents"], default="embed")
    p.add_argument("--text", choices=["squad", "synthetic"], default="squad")
    p.add_argument("--data", type=Path, default=SQUAD)
    p.add_argument("--bundle", type=Path, default=BUNDLE)
    p.add_argument("--variant", default="optimized")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--window", type=int, default=None)
    p.add_argument("--stride", choices=["content", "half"], default="content")
    p.add_argument("--chunk-tokens", type=int, default=128)
    p.add_argument("--warmup", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "memory.json")
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        print(json.dumps(child(args)))
        return
    rows = run_sizes(args)
    smallest, largest = rows[0], rows[-1]
    growth = float(largest["peak_mb"]) - float(smallest["peak_mb"])  # type: ignore[arg-type]
    print(f"\nbackend={args.backend} api={args.api} text={args.text} stride={args.stride} warmup={args.warmup}")
    print(f"{'tokens':>10} {'windows':>8} {'peak MB':>8} {'before MB':>9} {'embed s':>8} {'cpu s':>8} {'tok/s':>8}")
    for r in rows:
        print(
            f"{r['tokens']:>10,} {r['windows']:>8,} {r['peak_mb']:>8} {r['peak_before_embed_mb']:>9} "
            f"{r['embed_seconds']:>8} {r['embed_cpu_seconds']:>8} {r['tokens_per_second']:>8,}"
        )
    print(f"peak RSS growth from {smallest['tokens']:,} to {largest['tokens']:,} tokens: {growth:.1f} MB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k not in ("child", "out")}
    args.out.write_text(json.dumps({"config": config, "rows": rows, "growth_mb": round(growth, 1)}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
