"""Parity of an exported graph against its reference (torch, or the fp32 graph), on varied real text."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from longvec.kernels import l2_normalize
from longvec.runtime.bundle.manifest import Parity, PoolingConfig
from longvec.runtime.errors import ParityError

# Mixed lengths in one padded batch, unicode, punctuation only, numbers, code: what breaks exports.
PARITY_TEXTS: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog.",
    "?!",
    "Embeddings map text to vectors; similar meanings end up close together in the space.",
    "Die Katze sitzt auf der Matte und schaut aus dem Fenster.",
    "東京は日本の首都であり、世界最大の都市圏の一つです。",
    "Emoji 🚀🔥 and accents: café, naïve, Zürich, São Paulo.",
    "def f(x):\n    return x ** 2  # squares a number",
    "1, 2, 3, 4, 5, 6, 7, 8, 9, 10 — the numbers go on: 3.14159, 2.71828, 1e-9.",
    "a",
    " ".join(["Long documents are split into overlapping windows and stitched back together."] * 12),
    "In 1905 Albert Einstein published four papers that changed physics: the photoelectric effect, "
    "Brownian motion, special relativity and the equivalence of mass and energy.",
    "Paragraph one.\n\nParagraph two, after a blank line.\n\tIndented third line.",
)


@dataclass(frozen=True)
class Tolerance:
    min_cosine: float
    max_abs_diff: float | None


TOLERANCES = {
    "fp32": Tolerance(min_cosine=0.9999, max_abs_diff=1e-2),
    "fp16": Tolerance(min_cosine=0.999, max_abs_diff=None),
    "int8": Tolerance(min_cosine=0.99, max_abs_diff=None),
}


def pool(states: np.ndarray, mask: np.ndarray, pooling: PoolingConfig) -> np.ndarray:
    m = mask.astype(np.float32)[..., None]
    if pooling.mode == "mean":
        out = (states * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1.0)
    elif pooling.mode == "cls":
        out = states[:, 0]
    else:
        out = states[np.arange(states.shape[0]), mask.sum(axis=1) - 1]
    return l2_normalize(out)


def compare(
    reference: Callable[[np.ndarray, np.ndarray], np.ndarray],
    candidate: Callable[[np.ndarray, np.ndarray], np.ndarray],
    batches: Sequence[tuple[np.ndarray, np.ndarray]],
    pooling: PoolingConfig,
    reference_name: str,
) -> Parity:
    max_abs, cosines = 0.0, []
    for ids, mask in batches:
        ref, got = reference(ids, mask), candidate(ids, mask)
        valid = mask.astype(bool)
        max_abs = max(max_abs, float(np.abs(ref[valid] - got[valid]).max()))
        cosines.append(np.einsum("nd,nd->n", pool(ref, mask, pooling), pool(got, mask, pooling)))
    cos = np.concatenate(cosines)
    return Parity(reference_name, max_abs, float(cos.min()), float(cos.mean()), int(cos.shape[0]))


def check(parity: Parity, precision: str, what: str) -> None:
    tol = TOLERANCES[precision]
    if parity.min_cosine < tol.min_cosine:
        raise ParityError(f"{what}: min cosine {parity.min_cosine:.6f} vs {parity.reference} is below {tol.min_cosine}")
    if tol.max_abs_diff is not None and parity.max_abs_diff > tol.max_abs_diff:
        raise ParityError(
            f"{what}: max |diff| {parity.max_abs_diff:.2e} vs {parity.reference} exceeds {tol.max_abs_diff:.0e}"
        )
