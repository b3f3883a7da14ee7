"""Pure NumPy kernels on arrays: the pool weights that stitch windows and pool spans in one matmul, window
ownership and weights, normalization and Matryoshka truncation.

Nothing here imports anything but numpy (tests/test_packaging.py). The runtime pools through these weights
(runtime/core/stitch.py); plain reference implementations of stitching and span means live in tests/oracles.py.
"""

from longvec.kernels.normalize import l2_normalize, matryoshka
from longvec.kernels.pool_weights import center_stitch_weights, overlap_stitch_weights, span_rows
from longvec.kernels.stitching import center_ownership, window_weights

__all__ = [
    "center_ownership",
    "center_stitch_weights",
    "l2_normalize",
    "matryoshka",
    "overlap_stitch_weights",
    "span_rows",
    "window_weights",
]
