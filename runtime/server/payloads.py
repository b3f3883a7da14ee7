"""Library results -> response JSON bytes (run off the event loop: large documents have many chunk vectors)."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from longvec.kernels import matryoshka
from longvec.runtime.core.sparse import SparseVector
from longvec.runtime.embedder import DocumentResult


def _vectors(x: np.ndarray, dimensions: int | None, encoding: str) -> list[Any]:
    x = np.asarray(x, dtype=np.float32).reshape(-1, x.shape[-1])
    if dimensions is not None:
        x = matryoshka(x, dimensions)
    if encoding == "base64":  # OpenAI's format: little-endian float32 bytes
        return [base64.b64encode(np.ascontiguousarray(row, dtype="<f4").tobytes()).decode("ascii") for row in x]
    return x.tolist()  # float32 -> float is exact, and json writes floats so they read back exactly


def _usage(n_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": n_tokens, "total_tokens": n_tokens}


def embeddings(
    vectors: Sequence[np.ndarray], dimensions: int | None, encoding: str, model: str, n_tokens: int
) -> bytes:
    rows = _vectors(np.stack(vectors), dimensions, encoding)
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(rows)]
    return json.dumps({"object": "list", "data": data, "model": model, "usage": _usage(n_tokens)}).encode()


def _sparse(x: Any) -> dict[str, list[Any]]:
    """A sparse vector as {indices, values}, whatever container the library returns it in."""
    if hasattr(x, "indices") and hasattr(x, "values"):
        indices, values = x.indices, x.values
    elif isinstance(x, dict):
        indices, values = list(x.keys()), list(x.values())
    else:
        indices, values = x
    return {"indices": np.asarray(indices).astype(int).tolist(), "values": np.asarray(values, float).tolist()}


def documents(
    results: Sequence[DocumentResult],
    ids: Sequence[str],
    dimensions: int | None,
    encoding: str,
    model: str,
    n_tokens: int,
) -> bytes:
    data = []
    for i, (doc, doc_id) in enumerate(zip(results, ids)):
        chunk_vectors = _vectors(doc.chunk_vectors, dimensions, encoding)
        sparse: list[SparseVector | None] = [None] * len(chunk_vectors)
        if doc.chunk_sparse is not None:
            sparse = list(doc.chunk_sparse)
        chunks = [
            {
                "index": k,
                "start": int(start),
                "end": int(end),
                "token_start": int(t0),
                "token_end": int(t1),
                "embedding": vec,
                "sparse": None if sp is None else _sparse(sp),
            }
            for k, ((start, end), (t0, t1), vec, sp) in enumerate(
                zip(doc.chunk_spans.tolist(), doc.chunk_token_spans.tolist(), chunk_vectors, sparse)
            )
        ]
        data.append(
            {
                "object": "document",
                "index": i,
                "id": doc_id,
                "embedding": _vectors(doc.vector, dimensions, encoding)[0],
                "n_tokens": doc.n_tokens,
                "n_tokens_embedded": doc.n_tokens_embedded,
                "n_windows": doc.n_windows,
                "mode": doc.mode,
                "chunks": chunks,
            }
        )
    return json.dumps({"object": "list", "data": data, "model": model, "usage": _usage(n_tokens)}).encode()
