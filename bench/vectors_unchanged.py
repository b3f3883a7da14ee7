"""Do two installs of longvec give the same vectors? Save one install's vectors, compare another's against them.

    /work/main/.venv/bin/python bench/vectors_unchanged.py save BUNDLE /tmp/before.npz
    .venv/bin/python bench/vectors_unchanged.py compare BUNDLE /tmp/before.npz   # exit 1 below min cos 0.99999

Held-out text: the first SQuAD-longdoc articles (../shared/data, not in the repository), cut to a few windows each so
the run takes seconds; every document mode with each chunking, caller spans, sparse, `dimensions`, `normalize`,
a prompt, the weighted stitch, the `_iter` forms and `embed`. Used for refactors that must not move a vector.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from longvec.runtime import Embedder

DATA = Path(__file__).resolve().parents[1] / "../shared/data/squad-longdoc-dev/documents.jsonl"
MODES = ("late", "naive", "window_mean", "truncate", "blend", "auto")


def texts() -> list[str]:
    lines = DATA.read_text(encoding="utf-8").splitlines()[:3]
    return [json.loads(line)["text"][: 2500 + 1500 * i] for i, line in enumerate(lines)]


def vectors(emb: Embedder) -> dict[str, np.ndarray]:
    docs = texts()
    out: dict[str, np.ndarray] = {"embed": emb.embed(docs), "embed_q": emb.embed(docs, prompt="query: ", stride=40)}
    out["embed_iter"] = np.stack(list(emb.embed_iter(docs, batch_size=2)))
    spans = [[[0, 200], [100, 900], [0, len(t)]] for t in docs]
    cases: list[tuple[str, dict[str, Any]]] = []
    for mode in MODES:
        for chunking in ("tokens", "sentences", "paragraphs"):
            cases.append((f"{mode}-{chunking}", {"mode": mode, "chunking": chunking, "chunk_tokens": 64}))
        cases.append((f"{mode}-spans", {"mode": mode, "spans": spans, "snap": True}))
        cases.append((f"{mode}-dims", {"mode": mode, "dimensions": 96, "window": 128, "stride": 50}))
        cases.append((f"{mode}-weighted", {"mode": mode, "stitch": "weighted", "normalize": False}))
    for name, kwargs in cases:
        results = emb.embed_documents(docs, **kwargs)
        out[name + "/doc"] = np.stack([r.vector for r in results])
        out[name + "/chunks"] = np.concatenate([r.chunk_vectors for r in results])
        out[name + "/spans"] = np.concatenate([r.chunk_spans for r in results]).astype(np.float32)
        out[name + "/counts"] = np.array([[r.n_tokens, r.n_tokens_embedded, r.n_windows] for r in results], np.float32)
    iterated = list(emb.embed_documents_iter(docs, mode="blend", chunk_tokens=64, batch_size=2))
    out["iter/chunks"] = np.concatenate([r.chunk_vectors for r in iterated])
    [sparse] = emb.embed_documents(docs[:1], chunk_tokens=64, sparse=True)
    out["sparse"] = np.concatenate([np.concatenate([s.indices, s.values]) for s in sparse.chunk_sparse or []])
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("action", choices=("save", "compare"))
    p.add_argument("bundle")
    p.add_argument("file")
    a = p.parse_args()
    with Embedder.load(a.bundle, threads=2) as emb:
        now = vectors(emb)
    if a.action == "save":
        np.savez(a.file, **now)
        print(f"saved {len(now)} arrays to {a.file}")
        return 0
    before = dict(np.load(a.file))
    worst, bad = 1.0, []
    for name, old in before.items():
        new = now.get(name)
        if new is None or new.shape != old.shape:
            bad.append(f"{name}: shape {None if new is None else new.shape} != {old.shape}")
            continue
        if name.endswith(("/spans", "/counts")) or name == "sparse":
            if not np.allclose(old, new, rtol=1e-6, atol=1e-6):
                bad.append(f"{name}: differs")
            continue
        a2, b2 = old.reshape(-1, old.shape[-1]), new.reshape(-1, new.shape[-1])
        cos = (a2 * b2).sum(1) / np.maximum(np.linalg.norm(a2, axis=1) * np.linalg.norm(b2, axis=1), 1e-30)
        worst = min(worst, float(cos.min()) if len(cos) else 1.0)
        if len(cos) and cos.min() < 0.99999:
            bad.append(f"{name}: min cos {cos.min():.7f}")
    print(f"{len(before)} arrays compared, min cos {worst:.9f}; {len(bad)} problems")
    for line in bad:
        print("  " + line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
