"""Library results -> response JSON bytes (run off the event loop: large documents have many chunk vectors).

Vectors are float32. JSON numbers are written at float32 precision: each the shortest decimal that reads back as
the same float32 (what NumPy prints for a float32), not the 17 digits of the float64 it widens to. A reader that
parses them and casts to float32 gets the exact vector; the response is ~0.6x the size.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from longvec.kernels import matryoshka
from longvec.runtime.core.sparse import SparseVector
from longvec.runtime.embedder import DocumentResult
from longvec.runtime.server.errors import NonFiniteOutput


def shortest_float32(x: np.ndarray) -> np.ndarray:
    """float64 values whose repr (what json writes) is the shortest decimal that rounds back to the same float32.

    Vectorized: each value rounded to k significant digits for k = 6..9, keeping the first that round-trips (9
    always does for normal floats). Below 6 digits the 6-digit rounding is already the shortest decimal once
    its trailing zeros go: float32's half-ulp (~6e-8 relative) is far below a 6-digit step. The division by an
    exact power of ten is correctly rounded, so the double is the one nearest the decimal and repr prints it
    back. The rare values no k finds (below 1e-16 or above 1e22, where the power of ten is not exact) are
    formatted one by one by NumPy."""
    x = np.asarray(x, dtype=np.float32)
    wide = x.astype(np.float64)
    out = wide.copy()
    todo = np.isfinite(wide) & (wide != 0)
    exponent = np.zeros_like(wide)
    exponent[todo] = np.floor(np.log10(np.abs(wide[todo])))
    for digits in range(6, 10):
        if not todo.any():
            break
        decimals = digits - 1 - exponent
        exact = np.abs(decimals) <= 22  # 10**22 is the largest exact power of ten
        scale = 10.0 ** np.abs(np.where(exact, decimals, 0))
        with np.errstate(over="ignore", invalid="ignore"):
            candidate = np.where(decimals >= 0, np.round(wide * scale) / scale, np.round(wide / scale) * scale)
            same = todo & exact & (candidate.astype(np.float32) == x)
        out[same] = candidate[same]
        todo &= ~same
    for i in np.flatnonzero(todo):  # rare: tiny or huge values; NumPy's own shortest float32 text, one by one
        out.flat[i] = float(str(x.flat[i]))
    return out


def _vectors(x: np.ndarray, dimensions: int | None, encoding: str) -> list[Any]:
    x = np.asarray(x, dtype=np.float32).reshape(-1, x.shape[-1])
    if not np.isfinite(x).all():  # JSON has no NaN; a vector with one is useless to the client anyway
        raise NonFiniteOutput("the model produced NaN or infinite values for this input (a broken bundle?)")
    if dimensions is not None:
        x = matryoshka(x, dimensions)
    if encoding == "base64":  # OpenAI's format: little-endian float32 bytes
        return [base64.b64encode(np.ascontiguousarray(row, dtype="<f4").tobytes()).decode("ascii") for row in x]
    return shortest_float32(x).tolist()


def _dumps(body: dict[str, Any]) -> bytes:
    # compact separators, as the error bodies (starlette's JSONResponse); no NaN ever reaches a client
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


def _usage(n_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": n_tokens, "total_tokens": n_tokens}


def embeddings(
    vectors: Sequence[np.ndarray], dimensions: int | None, encoding: str, model: str, n_tokens: int
) -> bytes:
    rows = _vectors(np.stack(vectors), dimensions, encoding)
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(rows)]
    return _dumps({"object": "list", "data": data, "model": model, "usage": _usage(n_tokens)})


def _sparse(x: Any) -> dict[str, list[Any]]:
    """A sparse vector as {indices, values}, whatever container the library returns it in."""
    if hasattr(x, "indices") and hasattr(x, "values"):
        indices, values = x.indices, x.values
    elif isinstance(x, dict):
        indices, values = list(x.keys()), list(x.values())
    else:
        indices, values = x
    weights = np.asarray(values, dtype=np.float32)
    if not np.isfinite(weights).all():
        raise NonFiniteOutput("a sparse vector holds NaN or infinite weights")
    return {"indices": np.asarray(indices).astype(int).tolist(), "values": shortest_float32(weights).tolist()}


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
    return _dumps({"object": "list", "data": data, "model": model, "usage": _usage(n_tokens)})
