"""Window planning: where each encoder window of a long document starts.

A window holds `window` positions: the model's framing (e.g. [CLS] … [SEP]), the prompt, and up to
`content = window - framing - prompt` document tokens. Windows advance by `stride <= content`; the last one is
aligned to the end of the text, so every window of a long document is full and the same length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from longvec.runtime.errors import InputError


@dataclass(frozen=True)
class WindowPlan:
    window: int  # total positions per window, framing and prompt included
    content: int  # document tokens per window
    stride: int

    @classmethod
    def make(cls, window: int, stride: int | None, overhead: int, max_positions: int) -> WindowPlan:
        """`overhead` counts framing plus prompt tokens; `stride=None` means half-overlapping windows."""
        if window > max_positions:
            raise InputError(f"window={window} exceeds the model's {max_positions} positions")
        content = window - overhead
        if content < 1:
            raise InputError(f"window={window} leaves no room for text after {overhead} framing/prompt tokens")
        stride = max(1, content // 2) if stride is None else stride
        if not 1 <= stride <= content:
            raise InputError(f"stride must be in 1..{content} (the window's content length), got {stride}")
        return cls(window=window, content=content, stride=stride)

    def starts(self, n_tokens: int) -> np.ndarray:
        """First content token of each window; a text of at most `content` tokens gets one window at 0."""
        if n_tokens <= self.content:
            return np.zeros(1, dtype=np.int64)
        last = n_tokens - self.content
        starts = np.arange(0, last, self.stride, dtype=np.int64)
        return np.append(starts, last)

    def n_windows(self, n_tokens: int) -> int:
        if n_tokens <= self.content:
            return 1
        return -(-(n_tokens - self.content) // self.stride) + 1
