"""Pure NumPy kernels on arrays: span pooling, window stitching, normalization, output quantization.

Nothing here imports anything but numpy, and nothing loops in Python over tokens (segment
sums loop over span boundaries where that measured faster than `np.add.reduceat`, see pooling.segment_sums).
"""

from longvec.kernels.normalize import l2_normalize, matryoshka
from longvec.kernels.pooling import (
    PrefixAccumulator,
    prefix_sums,
    span_first,
    span_max,
    span_mean,
    span_sums_from_prefix,
)
from longvec.kernels.quantize import binary_quantize, int8_quantize
from longvec.kernels.stitching import center_ownership, stitch_center, stitch_weighted, window_weights

__all__ = [
    "PrefixAccumulator",
    "binary_quantize",
    "center_ownership",
    "int8_quantize",
    "l2_normalize",
    "matryoshka",
    "prefix_sums",
    "span_first",
    "span_max",
    "span_mean",
    "span_sums_from_prefix",
    "stitch_center",
    "stitch_weighted",
    "window_weights",
]
