"""`longvec index BUNDLE INPUT DB` and `longvec index --from-shards OUT DB --input INPUT`: a LanceDB search index
of a corpus (the `index` extra)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from longvec.runtime.cli.command import Command
from longvec.runtime.cli.embed import _embed_args, _report, job_options
from longvec.runtime.errors import InputError
from longvec.runtime.jobs.corpus import Fields
from longvec.runtime.jobs.lance_index import SHARDS, import_lancedb, write_tables
from longvec.runtime.jobs.local import run_local


def _index_args(p: argparse.ArgumentParser) -> None:
    _embed_args(p)  # the batch job's inputs and options: the index is built by the same job
    p.description = (
        "Embed a corpus of JSONL or Parquet files into a LanceDB index at DB (chunks with text, vectors and BM25 "
        "weights, a full-text index, the bundle recorded); rerunning resumes. With --from-shards OUT: index a "
        "finished `longvec embed` job (longvec index --from-shards OUT DB --input INPUT)."
    )
    for action in p._actions:  # the positional names of this command
        if action.dest == "output_dir":
            action.help = "DB: the index directory (new, or one to resume)"
        if action.dest in ("bundle_dir", "input"):
            action.nargs = "?"
        if action.dest == "sparse":
            action.help = "always on here: the index holds BM25 weights (default: on)"
    p.add_argument(
        "--from-shards",
        type=Path,
        default=None,
        metavar="OUT",
        help="a finished `longvec embed` job (default: none: embed INPUT)",
    )
    p.add_argument(
        "--input",
        dest="job_input",
        type=Path,
        default=None,
        help="with --from-shards: that job's input, for the chunk text (default: none)",
    )


def _index(args: argparse.Namespace) -> int:
    """Build a LanceDB search index of a corpus (hybrid: dense + BM25), resumable, for `longvec query`."""
    import_lancedb()  # before any embedding
    fields = Fields(text=args.text_field, id=args.id_field)
    if args.from_shards is not None:
        # `index --from-shards OUT DB`: the one positional given is DB (BUNDLE and INPUT are optional)
        db: Path = args.output_dir
        if args.bundle_dir is not None or args.input is not None or args.job_input is None:
            raise InputError("usage: longvec index --from-shards OUT DB --input INPUT (the job's input, for the text)")
        info = write_tables(args.from_shards, args.job_input, db, fields, None, sys.stdout)
        print(f"{info.documents} documents, {info.chunks} chunks indexed in {db} ({info.model})")
        return 0
    if args.bundle_dir is None or args.input is None or args.output_dir is None:
        raise InputError("usage: longvec index BUNDLE INPUT DB (or --from-shards OUT DB --input INPUT)")
    options = job_options(args, fields, sparse=True)  # the index holds BM25 weights
    db = args.output_dir
    if db.exists() and not db.is_dir():
        raise InputError(f"{db}: exists and is not a directory")
    db.mkdir(parents=True, exist_ok=True)
    if args.engine == "ray":
        from longvec.runtime.jobs.ray_engine import run_ray

        summary = run_ray(
            args.bundle_dir, args.input, db / SHARDS, options, args.ray_address, args.ray_actors, args.overwrite
        )
    else:
        summary = run_local(args.bundle_dir, args.input, db / SHARDS, options, overwrite=args.overwrite)
    _report(summary, db / SHARDS)
    if summary.errors and not summary.documents:
        raise InputError(f"every document failed ({summary.errors}); see {db / SHARDS / 'errors.jsonl'}")
    info = write_tables(db / SHARDS, args.input, db, fields, args.bundle_dir, sys.stdout)
    print(f"{info.documents} documents, {info.chunks} chunks indexed in {db} ({info.model})")
    return 0


COMMAND = Command(
    "index",
    "Build a LanceDB search index of a corpus (hybrid: dense + BM25), resumable, for `longvec query`.",
    _index_args,
    _index,
)
