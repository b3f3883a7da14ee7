"""Window stitching: which window owns each token, and how much each position of a window counts.

`starts[i]` is the first token (document coordinates) of window i, every window holds `length` tokens of
content (a document shorter than one window has a single window of its own length), and windows are sorted.
"""

import numpy as np


def center_ownership(starts: np.ndarray, length: int, n_tokens: int) -> np.ndarray:
    """[n_windows, 2] half-open token ranges: each token goes to the window whose center is nearest.

    With equal lengths the nearest center changes hands at the midpoint of consecutive centers, so the
    owned ranges tile [0, n_tokens) exactly.
    """
    starts = np.asarray(starts, dtype=np.int64)
    mids = (starts[:-1] + starts[1:] + length) // 2
    begins = np.concatenate(([0], mids))
    ends = np.concatenate((mids, [n_tokens]))
    return np.stack([begins, ends], axis=1)


def window_weights(length: int) -> np.ndarray:
    """Triangular weights, highest at the center: edge tokens saw the least context."""
    pos = np.arange(length, dtype=np.float32)
    return np.minimum(pos + 1, length - pos)
