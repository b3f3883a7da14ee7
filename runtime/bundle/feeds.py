"""What a bundle's graph is fed: its inputs (manifest `input_names`, or the session's) for one padded batch.

The one place that knows how each graph input is filled, for the runtime's backends, the export's parity and
calibration runs, and the benchmarks: every caller feeds a graph exactly alike.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from longvec.runtime.errors import BackendUnavailable

# The pooled graph's extra input and its one output (export/pooled.py adds them; the backends and build-engine
# feed and read them): spelled here only.
POOL_INPUT = "pool_weights"  # [batch, rows, seq] float32
POOL_OUTPUT = "pooled_sums"  # [batch, rows, hidden] float32
FED = ("input_ids", "attention_mask", "token_type_ids", POOL_INPUT)


def encoder_feeds(
    input_names: Iterable[str],
    input_ids: np.ndarray,
    attention_mask: np.ndarray,
    pool_weights: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """`{name: array}` for each of the graph's inputs: ids and mask as given, token types all zero (longvec
    encodes one segment per sequence), and for a pooled graph the pool weights [batch, rows, seq] (float32). An
    input outside `FED`, or a pooled graph's input without weights, cannot be fed and is named in the error."""
    feeds = {}
    for name in input_names:
        if name == POOL_INPUT and pool_weights is not None:
            feeds[name] = pool_weights.astype(np.float32, copy=False)
        elif name == "input_ids":
            feeds[name] = input_ids
        elif name == "attention_mask":
            feeds[name] = attention_mask
        elif name == "token_type_ids":
            feeds[name] = np.zeros_like(input_ids)
        else:
            raise BackendUnavailable(f"the graph has an input {name!r}; longvec feeds only {', '.join(FED)}")
    return feeds
