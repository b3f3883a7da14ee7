"""`longvec search BUNDLE FILE QUERY...`: the passages of one text file that answer one or more queries, hybrid
by default (`Embedder.search`), embedded once per run, as text or JSON lines (`COMMAND`, in the CLI's table)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import cast

from longvec.runtime.cli.command import Command
from longvec.runtime.cli.inputs import read_text_file as _read
from longvec.runtime.cli.options import add, add_bundle_arg, add_document_args, add_load_args, load_kwargs
from longvec.runtime.core.search import Hit
from longvec.runtime.core.text import validate_texts
from longvec.runtime.errors import InputError

# A file this long takes seconds or more to embed: the command says so on stderr (stdout stays JSON with --json).
LONG_FILE_TOKENS = 16_384


def queries_from(given: list[str], path: Path | None) -> list[str]:
    """The queries on the command line, then one per non-empty line of `path` ("-": standard input)."""
    queries = list(given)
    if path is not None:
        lines = sys.stdin.read() if str(path) == "-" else _read(path)
        queries += [line.strip() for line in lines.splitlines() if line.strip()]
    if not queries:
        raise InputError("no query: give one or more QUERY arguments or --queries FILE")
    return validate_texts(queries)  # a blank query is refused before anything is embedded


def print_hit(hit: Hit, rank: int, row: dict[str, object] | None, lead: str) -> None:
    """One hit: `row` as a JSON line (--json), else a ranked line (`lead` before the span) with a one-line
    snippet, as `longvec search` and `longvec query` both print."""
    if row is not None:
        print(json.dumps(row, ensure_ascii=False))
        return
    snippet = " ".join((hit.text or "").split())
    print(f"{rank}. {lead}chars {hit.start}-{hit.end}\n   {snippet[:300]}{'…' if len(snippet) > 300 else ''}")


def add_query_args(p: argparse.ArgumentParser, json_fields: str) -> None:
    """The queries and how hits are ranked and printed: the same for `search` (one file) and `query` (an index)."""
    p.add_argument("query", nargs="*", help="one or more questions or phrases to look for")
    p.add_argument(
        "--queries", type=Path, default=None, help="a file of queries, one per line; - reads stdin (default: none)"
    )
    p.add_argument("--json", action="store_true", help=f"one JSON line per hit: {{{json_fields}, ...}} (default: text)")
    p.add_argument("--dense-only", action="store_true", help="rank by the dense vectors alone (default: off: hybrid)")


def _search_args(p: argparse.ArgumentParser) -> None:
    add_bundle_arg(p)
    p.add_argument("file", type=Path, help="a UTF-8 text file of any length")
    add_query_args(p, '"query", "start", "end"')
    p.add_argument("--top", type=int, default=3, help="how many chunks to print per query (default: 3)")
    add_load_args(p)
    add_document_args(p)
    add(p, "--query-prompt-name", "a prompt of the bundle for the queries only, e.g. query", shown="as --prompt-name")


def _search(args: argparse.Namespace) -> int:
    """Find the passages of a text file that answer one or more queries (dense + BM25), with character spans."""
    from longvec.runtime import Embedder

    text = _read(args.file)
    queries = queries_from(args.query, args.queries)
    with Embedder.load(args.bundle_dir, **load_kwargs(args)) as emb:
        started = time.monotonic()
        n_tokens = emb.count_tokens([text])[0]
        long = n_tokens >= LONG_FILE_TOKENS
        if long:
            print(f"embedding {args.file}: {n_tokens:,} tokens ...", file=sys.stderr, flush=True)
        doc = emb.embed_documents(
            [text],
            chunking=args.chunking,
            chunk_tokens=args.chunk_tokens,
            stride=args.stride,
            mode=args.mode,
            prompt=args.prompt,
            prompt_name=args.prompt_name,
            sparse=not args.dense_only,
        )
        if long:
            print(f"embedded in {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
        hits = emb.search(
            queries,
            doc,
            texts=[text],
            top_k=args.top,
            hybrid=not args.dense_only,
            prompt_name=args.query_prompt_name or args.prompt_name,
            prompt=None if args.query_prompt_name else args.prompt,
        )
    if not args.json:
        d = doc[0]
        print(
            f"{args.file}: {len(text)} chars, {d.n_tokens} tokens, {d.n_windows} windows, "
            f"{len(d.chunk_spans)} chunks ({d.mode}, {'dense' if args.dense_only else 'dense + BM25'})"
        )
    for query, found in zip(queries, cast("list[list[Hit]]", hits)):  # a list of queries: one list each
        if not args.json and len(queries) > 1:
            print(f"\n{query}")
        for rank, h in enumerate(found, 1):
            row = {"query": query, "rank": rank, "start": h.start, "end": h.end, "score": h.score}
            row |= {"dense": h.dense, "lexical": h.lexical, "text": h.text}
            print_hit(h, rank, row if args.json else None, f"score {h.score:.3f}  ")
    return 0


COMMAND = Command(
    "search",
    "Find the passages of a text file that answer one or more queries (dense + BM25), with character spans.",
    _search_args,
    _search,
)
