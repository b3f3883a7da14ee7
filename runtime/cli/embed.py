"""`longvec embed BUNDLE INPUT OUTPUT_DIR`: the batch-job subcommand (registered on import by the CLI)."""

from __future__ import annotations

import argparse
from pathlib import Path

from longvec.runtime.cli.main import command
from longvec.runtime.embedder import DEFAULT_CHUNK_TOKENS, DEFAULT_VARIANT
from longvec.runtime.jobs.corpus import Fields
from longvec.runtime.jobs.local import DEFAULT_SHARD_SIZE, JobOptions, Summary, run_local


def _embed_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle_dir", type=Path)
    p.add_argument("input", type=Path, help="JSONL (.jsonl, .jsonl.gz) or Parquet file, or a directory of them")
    p.add_argument("output_dir", type=Path, help="new or empty directory, or one to resume")
    p.add_argument("--text-field", default="text")
    p.add_argument("--id-field", default="id")
    p.add_argument("--chunk-tokens", type=int, default=DEFAULT_CHUNK_TOKENS)
    p.add_argument("--variant", default=DEFAULT_VARIANT)
    p.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE, help="documents per output shard")
    p.add_argument("--threads", type=int, default=None, help="encoder threads (per Ray actor with --engine ray)")
    p.add_argument("--engine", choices=("local", "ray"), default="local")
    p.add_argument("--ray-address", default=None, help="an existing Ray cluster (default: start a local one)")
    p.add_argument("--ray-actors", type=int, default=None, help="embedding actors (default: CPUs / threads)")
    p.add_argument("--sparse", action="store_true", help="also write a sparse (lexical) vector per chunk")


@command("embed", _embed_args)
def _embed(args: argparse.Namespace) -> int:
    """Embed a corpus of JSONL or Parquet files into Parquet shards, resumable, on one machine or Ray."""
    options = JobOptions(
        chunk_tokens=args.chunk_tokens,
        fields=Fields(text=args.text_field, id=args.id_field),
        variant=args.variant,
        shard_size=args.shard_size,
        sparse=args.sparse,
        threads=args.threads,
    )
    if args.engine == "ray":
        from longvec.runtime.jobs.ray_engine import run_ray

        summary = run_ray(args.bundle_dir, args.input, args.output_dir, options, args.ray_address, args.ray_actors)
    else:
        summary = run_local(args.bundle_dir, args.input, args.output_dir, options)
    _report(summary, args.output_dir)
    return 0


def _report(s: Summary, output_dir: Path) -> None:
    print(
        f"{s.documents} documents, {s.chunks} chunks in {output_dir} "
        f"({s.shards_written} shards written, {s.shards_skipped} already done); "
        f"this run: {s.documents_this_run} documents, {s.tokens:,} tokens in {s.seconds:.1f} s = "
        f"{s.docs_per_s:,.1f} docs/s, {s.tokens_per_s:,.0f} tokens/s"
    )
    if s.errors:
        print(f"{s.errors} documents could not be embedded: see {output_dir / 'errors.jsonl'}")
