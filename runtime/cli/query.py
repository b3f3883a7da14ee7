"""`longvec query DB QUERY...`: search a `longvec index` (hybrid by default) with the model it was built with."""

from __future__ import annotations

import argparse
from pathlib import Path

from longvec.runtime.backends.options import DEVICES
from longvec.runtime.cli.command import Command
from longvec.runtime.cli.options import LOAD_DEFAULTS, add
from longvec.runtime.cli.search import add_query_args, print_hit, queries_from
from longvec.runtime.errors import InputError
from longvec.runtime.jobs.lance_index import Index


def _query_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("db", type=Path, help="an index built by `longvec index`")
    add_query_args(p, '"query", "id", "start", "end"')
    p.add_argument("--top-k", type=int, default=10, help="hits per query (default: 10)")
    p.add_argument(
        "--bundle",
        type=Path,
        default=None,
        help="the bundle to embed queries with (default: the one the index records)",
    )
    add(p, "--variant", "graph variant: any the bundle holds (`longvec inspect` lists them)", shown="the index's")
    add(
        p,
        "--device",
        "cuda: onnxruntime-gpu; auto: CUDA when it really runs",
        default=LOAD_DEFAULTS["device"],
        choices=DEVICES,
    )
    add(p, "--threads", "encoder threads", type=int, default=LOAD_DEFAULTS["threads"], shown="all cores")


def _query(args: argparse.Namespace) -> int:
    """Search a `longvec index` for the passages that answer one or more queries (dense + BM25)."""
    from longvec.runtime import Embedder

    if args.top_k < 1:
        raise InputError(f"--top-k must be at least 1, got {args.top_k}")
    index = Index(args.db)
    queries = queries_from(args.query, args.queries)
    bundle = args.bundle or (Path(index.info.bundle) if index.info.bundle else None)
    if bundle is None:
        raise InputError(f"{args.db} does not record its bundle's path: give --bundle (model {index.info.model})")
    variant = args.variant or index.info.variant
    with Embedder.load(bundle, variant=variant, device=args.device, threads=args.threads) as emb:
        index.info.check(emb, variant)
        for qi, hits in index.search(emb, queries, top_k=args.top_k, hybrid=not args.dense_only):
            if not args.json and len(queries) > 1:
                print(f"\n{queries[qi]}")
            for rank, (h, doc_id) in enumerate(hits, 1):
                row = {"query": queries[qi], "id": doc_id, "start": h.start, "end": h.end, "score": h.score}
                print_hit(h, rank, row | {"text": h.text} if args.json else None, f"{doc_id} score {h.score:.3f}  ")
    return 0


COMMAND = Command(
    "query",
    "Search a `longvec index` for the passages that answer one or more queries (dense + BM25).",
    _query_args,
    _query,
)
