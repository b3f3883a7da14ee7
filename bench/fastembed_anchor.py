"""Anchor longvec's sparse vectors to fastembed's `Qdrant/bm25` (Bm25 class), offline.

fastembed downloads the model's files (an empty config.json and per-language stop-word lists) from the Hugging
Face hub, which is unreachable here. Its Bm25 accepts `specific_model_path`, so this script writes those two files
into a temporary directory, english.txt being longvec's STOPWORDS (NLTK's English list, which is what the hub
repository ships), and then compares both implementations on every paragraph and every question of
squad-longdoc-dev and on passkey documents: identical term ids, weights within float32 rounding.

Needs fastembed (not a longvec dependency), e.g. in a separate venv:
    python -m venv /tmp/fe && /tmp/fe/bin/pip install fastembed 'snowballstemmer<3'
    PYTHONPATH=<longvec install> /tmp/fe/bin/python bench/fastembed_anchor.py [DATA_ROOT] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import data as evaldata
import numpy as np

from longvec.runtime.core.sparse import STOPWORDS, SparseEncoder


def compare(fe: list, ours: list) -> dict:
    mismatched, max_diff = 0, 0.0
    for a, b in zip(fe, ours):
        order = np.argsort(a.indices)
        if not np.array_equal(np.asarray(a.indices)[order], b.indices):
            mismatched += 1
            continue
        if len(b):
            max_diff = max(max_diff, float(np.abs(np.asarray(a.values, np.float64)[order] - b.values).max()))
    return {"n": len(ours), "id_mismatches": mismatched, "max_abs_weight_diff": max_diff}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "root", type=Path, nargs="?", default=evaldata.DEFAULT_ROOT, help="data root holding squad-longdoc-dev/"
    )
    p.add_argument(
        "--out", type=Path, default=Path("fastembed_anchor.json"), help="JSON result (default: in the current folder)"
    )
    args = p.parse_args(argv)
    try:
        from fastembed.sparse.bm25 import Bm25
    except ImportError as e:
        print(f"fastembed_anchor: error: needs fastembed, not a longvec dependency (see --help) ({e})", file=sys.stderr)
        return 5

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.json").write_text("{}")
        (Path(tmp) / "english.txt").write_text("\n".join(sorted(STOPWORDS)) + "\n")
        model = Bm25("Qdrant/bm25", specific_model_path=tmp)
        enc = SparseEncoder()
        root = args.root
        docs = [json.loads(x) for x in (root / "squad-longdoc-dev" / "documents.jsonl").open()]
        paragraphs = [d["text"][s:e] for d in docs for s, e in d["paragraph_spans"]]
        questions = [json.loads(x)["text"] for x in (root / "squad-longdoc-dev" / "queries_full.jsonl").open()]
        passkey = evaldata.passkey(1024, root, 20)
        out = {
            "squad paragraphs (documents)": compare(list(model.embed(paragraphs)), enc.documents(paragraphs)),
            "squad questions (queries)": compare(list(model.query_embed(questions)), enc.queries(questions)),
            "passkey-1024 documents": compare(list(model.embed(passkey.docs)), enc.documents(passkey.docs)),
        }
    print(json.dumps(out, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    return 0 if all(v["id_mismatches"] == 0 for v in out.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
