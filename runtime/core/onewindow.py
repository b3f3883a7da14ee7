"""One text that fits one window (every query): one encoder run, none of the long-document machinery.

A text of at most `plan.content` tokens is its own stitched sequence (runtime.core.stitch), so its vector is the
model's pooling of that one window. The pipeline gets there through per-sequence layouts, length packing, weight-row
bookkeeping and running sums, which cost a single query ~0.1 ms of Python against ~2.3 ms of encoder
(bench/overhead.py). Here the framed ids, the mask and the same weight row (kernels.pool_weights.own_rows, where
the pipeline's rows come from too) go to the same backend in one call, so the vector is the one the pipeline gives.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from longvec.kernels.pool_weights import own_rows
from longvec.runtime.backends import Backend, pools_on_device
from longvec.runtime.bundle.manifest import Framing, Pooling, PoolingConfig
from longvec.runtime.core.stitch import host_pool


def one_window_pooled(
    backend: Backend, framing: Framing, pooling: PoolingConfig, ids: np.ndarray, prompt_ids: tuple[int, ...] = ()
) -> np.ndarray:
    """The model's pooling (not normalized) of one window framed around the content ids `ids` (int64, after the
    prompt's `prompt_ids`), float32 [1, hidden]. The caller has checked that they fit one window."""
    prefix = framing.prefix_ids + prompt_ids
    input_ids = np.concatenate((np.asarray(prefix, np.int64), ids, np.asarray(framing.suffix_ids, np.int64)))[None]
    mask = np.ones_like(input_ids)
    # as the pipeline frames a window: the prompt is left out of mean pooling unless the model pools it
    begin = 0 if pooling.include_prompt or not prompt_ids else len(prefix)
    rows = _rows(begin, input_ids.shape[1], pooling.mode)
    if pools_on_device(backend):
        return backend.run_pooled(input_ids, mask, rows)[:, 0]
    return host_pool(backend.run(input_ids, mask), rows)[:, 0]


@lru_cache(maxsize=1024)
def _rows(begin: int, width: int, mode: Pooling) -> np.ndarray:
    """[1, 1, width] pool weights of one window (a query's length recurs: built once per length, read-only)."""
    rows = own_rows(np.array([begin]), np.array([width]), width, mode)[:, None, :]
    rows.flags.writeable = False
    return rows
