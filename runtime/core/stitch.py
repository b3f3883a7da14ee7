"""Streaming stitching: a document's windows arrive in order and are folded into running span sums.

Coordinates: the stitched sequence is the first window's prefix (framing + prompt), then one state per content
token, then the last window's suffix framing. For a text that fits one window this is exactly that window, so a
short text pools exactly as sentence-transformers pools it. Memory is O(window x hidden + spans x hidden) plus
one pooled vector per window (1/stride of the token count), never O(tokens x hidden).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from longvec.kernels import PrefixAccumulator, center_ownership, window_weights
from longvec.runtime.bundle.manifest import Pooling

Stitch = Literal["center", "weighted"]


class DocumentStates:
    def __init__(
        self,
        starts: np.ndarray,
        content: int,
        n_tokens: int,
        prefix: int,
        suffix: int,
        spans: np.ndarray,
        dim: int,
        stitch: Stitch = "center",
        pooling: Pooling = "mean",
        include_prefix: bool = True,
    ) -> None:
        """`spans` are content-token spans [k, 2]; `content` is the content length of every window.
        `include_prefix=False` leaves the framing prefix and prompt out of mean pooling (as sentence-transformers
        does for a prompt with include_prompt=False)."""
        self.starts = np.asarray(starts, dtype=np.int64)
        self.content = min(content, n_tokens)
        self.n_tokens = n_tokens
        self.prefix, self.suffix = prefix, suffix
        self.total = prefix + n_tokens + suffix
        self.spans = np.asarray(spans, dtype=np.int64).reshape(-1, 2) + prefix
        self.pooling = pooling
        self._pool_begin = 0 if include_prefix else prefix
        self._next = 0
        self.window_pooled = np.zeros((len(self.starts), dim), dtype=np.float32)  # each window pooled alone
        # One window and no spans (every query): the stitched sequence is that window, so its pooled vector is
        # the answer and no stitching state is built; that state was most of a short text's runtime overhead.
        self._one_window = len(self.starts) == 1 and self.spans.shape[0] == 0
        if self._one_window:
            return
        bounds = np.concatenate(([0, prefix, prefix + n_tokens, self.total], self.spans.ravel()))
        self._acc = PrefixAccumulator(bounds, dim)
        self._stitch = stitch
        self._owned = center_ownership(self.starts, self.content, n_tokens)
        self._weights = window_weights(self.content)
        self._num = np.zeros((0, dim), dtype=np.float32)
        self._den = np.zeros(0, dtype=np.float32)
        self._buffer_start = 0

    @property
    def done(self) -> bool:
        return self._next == len(self.starts)

    def add(self, index: int, states: np.ndarray) -> None:
        """States [prefix + content + suffix, d] of window `index`; windows must come in order."""
        if index != self._next:
            raise RuntimeError(f"window {index} arrived before window {self._next}")
        self._next += 1
        p, c = self.prefix, self.content
        self.window_pooled[index] = self._pool_window(states)
        if self._one_window:
            return
        if index == 0:
            self._acc.add(states[:p])
        body = states[p : p + c]
        if self._stitch == "center":
            begin, end = self._owned[index] - self.starts[index]
            self._acc.add(body[begin:end])
        else:
            self._add_weighted(index, body)
        if self.done:
            self._acc.add(states[p + c :])

    def _add_weighted(self, index: int, body: np.ndarray) -> None:
        start = int(self.starts[index])
        grow = start + body.shape[0] - (self._buffer_start + self._num.shape[0])
        if grow > 0:
            self._num = np.concatenate((self._num, np.zeros((grow, body.shape[1]), np.float32)))
            self._den = np.concatenate((self._den, np.zeros(grow, np.float32)))
        lo = start - self._buffer_start
        self._num[lo : lo + body.shape[0]] += self._weights[:, None] * body
        self._den[lo : lo + body.shape[0]] += self._weights
        final = int(self.starts[index + 1]) if index + 1 < len(self.starts) else self.n_tokens
        k = final - self._buffer_start  # tokens before the next window's start are final
        self._acc.add(self._num[:k] / self._den[:k, None])
        self._num, self._den = self._num[k:], self._den[k:]
        self._buffer_start = final

    def _pool_window(self, states: np.ndarray) -> np.ndarray:
        if self.pooling == "mean":
            return states[self._pool_begin :].mean(axis=0, dtype=np.float32)
        return states[0] if self.pooling == "cls" else states[-1]

    def span_means(self) -> np.ndarray:
        """Mean of the stitched states over each content span given at construction."""
        if self._one_window:
            return np.zeros((0, self.window_pooled.shape[1]), dtype=np.float32)
        return self._acc.span_means(self.spans)

    def pooled(self) -> np.ndarray:
        """The model's pooling over the whole document: mean of the stitched sequence; for "cls" the mean of
        every window's first state (each window has its own [CLS]); for "last" the final window's last state."""
        if self._one_window:
            return self.window_pooled[0]
        if self.pooling == "mean":
            return self._acc.span_means(np.array([[self._pool_begin, self.total]]))[0]
        if self.pooling == "cls":
            return self.window_pooled.mean(axis=0)
        return self.window_pooled[-1]
