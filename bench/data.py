"""Evaluation sets in the shared JSONL format (see ../shared/data/README.md), read at run time, never copied.

A set is documents {id, text}, queries {id, text} and qrels lines {query_id, doc_id, answer_start, answer_end,
[paragraph_start, paragraph_end]} with half-open code-point offsets into the document text.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ROOT = Path(os.environ.get("LONGVEC_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def model_args(p: argparse.ArgumentParser) -> None:
    """The model and data every quality script takes: --bundle, --variant, --threads, --data."""
    p.add_argument("--bundle", type=Path, default=Path(__file__).resolve().parents[1] / "bundles/all-MiniLM-L6-v2")
    p.add_argument("--variant", default="optimized")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data", type=Path, default=DEFAULT_ROOT)


@dataclass(frozen=True)
class Gold:
    doc: int  # index into EvalSet.docs
    answer: tuple[int, int]  # the answer span (strict gold)
    passage: tuple[int, int]  # the paragraph span for SQuAD, the needle sentence for passkey (lenient gold)


@dataclass(frozen=True)
class EvalSet:
    name: str
    doc_ids: list[str]
    docs: list[str]
    queries: list[str]
    gold: list[Gold]  # one per query


def _jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load(folder: Path, name: str, queries_file: str = "queries.jsonl", qrels_file: str = "qrels.jsonl") -> EvalSet:
    docs = _jsonl(folder / "documents.jsonl")
    by_id = {d["id"]: i for i, d in enumerate(docs)}
    texts = {q["id"]: q["text"] for q in _jsonl(folder / queries_file)}
    queries, gold = [], []
    for r in _jsonl(folder / qrels_file):
        if r["query_id"] not in texts or r["doc_id"] not in by_id:
            continue
        answer = (r["answer_start"], r["answer_end"])
        passage = (r.get("paragraph_start", answer[0]), r.get("paragraph_end", answer[1]))
        queries.append(texts[r["query_id"]])
        gold.append(Gold(by_id[r["doc_id"]], answer, passage))
    return EvalSet(name, [d["id"] for d in docs], [d["text"] for d in docs], queries, gold)


def squad(root: Path = DEFAULT_ROOT, n_docs: int | None = None, n_queries: int | None = None) -> EvalSet:
    full = load(root / "squad-longdoc-dev", "squad-longdoc-dev")
    return subset(full, n_docs, n_queries)


def passkey_lengths(root: Path = DEFAULT_ROOT) -> list[int]:
    return sorted(int(p.name.split("_")[1]) for p in (root / "passkey").glob("len_*") if p.is_dir())


def passkey(length: int, root: Path = DEFAULT_ROOT, n_docs: int | None = None) -> EvalSet:
    """All queried documents come first, so a subset of n documents keeps min(n, 50) queries; the rest of
    the subset are unqueried documents (each holds another name's needle: distractors)."""
    full = load(root / "passkey" / f"len_{length:05d}", f"passkey-{length}")
    return subset(full, n_docs, None)


def subset(s: EvalSet, n_docs: int | None, n_queries: int | None) -> EvalSet:
    """The first n_docs documents that have queries (then others), and the first n_queries of their queries."""
    if n_docs is None and n_queries is None:
        return s
    queried = list(dict.fromkeys(g.doc for g in s.gold))
    order = queried + [i for i in range(len(s.docs)) if i not in set(queried)]
    keep = order[: n_docs or len(order)]
    new_index = {old: new for new, old in enumerate(keep)}
    pairs = [(q, g) for q, g in zip(s.queries, s.gold) if g.doc in new_index][: n_queries or len(s.queries)]
    return EvalSet(
        s.name,
        [s.doc_ids[i] for i in keep],
        [s.docs[i] for i in keep],
        [q for q, _ in pairs],
        [Gold(new_index[g.doc], g.answer, g.passage) for _, g in pairs],
    )
