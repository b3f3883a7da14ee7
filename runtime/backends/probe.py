"""One tiny run of a freshly loaded graph, so that a bundle whose parts disagree fails at load, naming the file,
instead of at the first request: a tokenizer that gives token ids past the model's embedding table (onnxruntime:
"index out of range" on the first text that has one), or a pooled graph whose output is not [batch, rows, hidden]
(a wrong export: one row where each pooling row should have its own). The run is 1 x 2 tokens: a few ms."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from longvec.runtime.backends.base import Backend
from longvec.runtime.errors import BundleError, LongvecError


def probe(backend: Backend, id_bound: int, path: Path) -> None:
    """`id_bound`: one past the largest token id the tokenizer can produce. Raises BundleError naming `path`."""
    ids = np.full((1, 2), max(0, id_bound - 1), dtype=np.int64)
    try:
        out = backend.run(ids, np.ones_like(ids))
    except LongvecError:
        raise
    except Exception as e:  # onnxruntime raises its own types (InvalidArgument, Fail, ...), IndexError for shapes
        raise BundleError(
            path,
            f"the graph fails on token id {id_bound - 1}, the largest the bundle's tokenizer gives (is the model's "
            f"embedding table smaller than the tokenizer's vocabulary?): {type(e).__name__}: {e}",
        ) from e
    want = (1, 2, backend.hidden_size)
    if tuple(np.shape(out)) != want:
        raise BundleError(
            path,
            f"the graph returns shape {list(np.shape(out))} for one text of 2 tokens, expected {list(want)} "
            "([batch, rows, hidden]: one row per pooling row, or per token); re-export the bundle",
        )
