"""Vector normalization and Matryoshka truncation."""

import numpy as np

_TINY = np.float32(1e-12)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Unit L2 norm along the last axis; an all-zero row stays zero instead of becoming NaN."""
    x32 = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x32, axis=-1, keepdims=True)
    return x32 / np.maximum(norm, _TINY)


def matryoshka(x: np.ndarray, dims: int) -> np.ndarray:
    """Keep the first `dims` components, then renormalize (Matryoshka representation truncation)."""
    if not 0 < dims <= x.shape[-1]:
        raise ValueError(f"dims must be in 1..{x.shape[-1]}, got {dims}")
    return l2_normalize(x[..., :dims])
