"""`longvec embed BUNDLE INPUT OUTPUT_DIR`: the batch-job subcommand."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from longvec.runtime.cli.command import Command
from longvec.runtime.cli.options import add_bundle_arg, add_document_args, add_load_args
from longvec.runtime.errors import InputError
from longvec.runtime.jobs.corpus import Fields
from longvec.runtime.jobs.local import DEFAULT_SHARD_SIZE, JobOptions, Summary, run_local
from longvec.runtime.jobs.stops import Terminated


def _embed_args(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Embed a corpus of JSONL, Parquet or text files into Parquet shards (documents/, chunks/, errors.jsonl). "
        "Rerunning the same command resumes an interrupted job (Ctrl-C: exit 130, SIGTERM: 143); exit 4 when "
        "every document failed or an input file changed during the job, 8 when the output cannot be written."
    )
    add_bundle_arg(p)
    p.add_argument(
        "input",
        type=Path,
        help="JSONL (.jsonl, .jsonl.gz) or Parquet file, or a directory of them; or a directory of .txt / .md files "
        "(one document per file, its path in the directory as id)",
    )
    p.add_argument("output_dir", type=Path, help="new or empty directory, or one to resume (not inside the input)")
    p.add_argument("--text-field", default="text", help="the field (column) that holds the text (default: text)")
    p.add_argument("--id-field", default="id", help="the field (column) that holds the document id (default: id)")
    add_load_args(p)  # with --engine ray, --threads is per actor and --device cuda makes one actor per GPU
    add_document_args(p, stride=False)  # a job's options are recorded with its output; stride is not among them yet
    p.add_argument(
        "--shard-size",
        type=int,
        default=DEFAULT_SHARD_SIZE,
        help=f"documents per output shard (default: {DEFAULT_SHARD_SIZE})",
    )
    p.add_argument("--engine", choices=("local", "ray"), default="local", help="where to run (default: local)")
    p.add_argument("--ray-address", default=None, help="an existing Ray cluster (default: start a local one)")
    p.add_argument("--ray-actors", type=int, default=None, help="embedding actors (default: CPUs / threads)")
    p.add_argument("--sparse", action="store_true", help="also write a sparse (BM25) vector per chunk (default: off)")
    p.add_argument(
        "--keep-fields",
        default="",
        metavar="FIELD,...",
        help="input fields to copy into documents/ as string columns, e.g. text,title (default: none)",
    )
    p.add_argument(
        "--offsets",
        choices=("codepoints", "utf16"),
        default="codepoints",
        help="unit of char_start / char_end: Unicode code points, as Python indexes a str, or UTF-16 code units, "
        "as JavaScript, Java and C# index one (default: codepoints)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start over an output directory of another job (other input or options) instead of refusing it "
        "(default: off)",
    )


def job_options(args: argparse.Namespace, fields: Fields, sparse: bool | None = None) -> JobOptions:
    """A batch job's options from this command's arguments (`longvec index` builds its index with the same job;
    `sparse` overrides --sparse there)."""
    return JobOptions(
        chunk_tokens=args.chunk_tokens,
        fields=fields,
        variant=args.variant,
        shard_size=args.shard_size,
        sparse=args.sparse if sparse is None else sparse,
        threads=args.threads,
        chunking=args.chunking,
        mode=args.mode,
        window=args.window,
        prompt_name=args.prompt_name,
        prompt=args.prompt,
        device=args.device,
        offsets=args.offsets,
    )


def _embed(args: argparse.Namespace) -> int:
    """Embed a corpus of JSONL or Parquet files into Parquet shards, resumable, on one machine or Ray."""
    options = job_options(args, Fields(text=args.text_field, id=args.id_field, keep=_names(args.keep_fields)))
    if args.engine == "ray":
        from longvec.runtime.jobs.ray_engine import run_ray

        summary = run_ray(
            args.bundle_dir, args.input, args.output_dir, options, args.ray_address, args.ray_actors, args.overwrite
        )
    else:
        try:
            summary = run_local(args.bundle_dir, args.input, args.output_dir, options, overwrite=args.overwrite)
        except Terminated:
            print("terminated (SIGTERM); rerun the same command to resume", file=sys.stderr)
            return 143  # 128 + SIGTERM, as a shell reports a process it ended
    _report(summary, args.output_dir)
    if summary.errors and not summary.documents:
        raise InputError(
            f"every document failed ({summary.errors}); first reason: {_first_reason(args.output_dir)}; "
            f"see {args.output_dir / 'errors.jsonl'}"
        )
    return 0


def _names(flag: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in flag.split(",")) if flag.strip() else ()


def _first_reason(output_dir: Path) -> str:
    try:
        with (output_dir / "errors.jsonl").open(encoding="utf-8") as f:
            first = json.loads(f.readline())
        return f"{first['source']}: {first['reason']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "unknown"


def _report(s: Summary, output_dir: Path) -> None:
    print(
        f"{s.documents} documents, {s.chunks} chunks in {output_dir} "
        f"({s.shards_written} shards written, {s.shards_skipped} already done); "
        f"this run: {s.documents_this_run} documents, {s.tokens:,} tokens in {s.seconds:.1f} s = "
        f"{s.docs_per_s:,.1f} docs/s, {s.tokens_per_s:,.0f} tokens/s"
    )
    if s.errors:
        duplicates = f", {s.duplicates} of them for a duplicate id" if s.duplicates else ""
        print(
            f"{s.errors} documents could not be embedded{duplicates}: see {output_dir / 'errors.jsonl'}",
            file=sys.stdout,
        )


COMMAND = Command(
    "embed",
    "Embed a corpus of JSONL or Parquet files into Parquet shards, resumable, on one machine or Ray.",
    _embed_args,
    _embed,
)
