"""Output quantization of embedding vectors (for storage), not of the model."""

import numpy as np


def int8_quantize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row int8: returns (codes, scale) with x ≈ codes * scale[:, None]."""
    x32 = np.atleast_2d(np.asarray(x, dtype=np.float32))
    scale = np.abs(x32).max(axis=1) / 127.0
    safe = np.where(scale > 0, scale, 1.0).astype(np.float32)
    codes = np.clip(np.rint(x32 / safe[:, None]), -127, 127).astype(np.int8)
    return codes, scale.astype(np.float32)


def binary_quantize(x: np.ndarray) -> np.ndarray:
    """One bit per dimension (x > 0), packed big-endian into uint8 like sentence-transformers' 'ubinary'."""
    x32 = np.atleast_2d(np.asarray(x, dtype=np.float32))
    return np.packbits(x32 > 0, axis=1)
