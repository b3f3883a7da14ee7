"""A deterministic fake encoder in NumPy, shipped so tests of everything above the backend need no model.

A token's state mixes its own embedding, its position and the mean of its window, so states depend on
context the way a real encoder's do: a different window gives a different state. With `pooled=True` it acts as a
pooled graph does (takes pool weights, returns only pooled sums, accumulating in float32), so the pipeline can be
tested against both kinds of engine.
"""

from __future__ import annotations

import numpy as np

from longvec.runtime.backends.base import Capabilities


class FakeBackend:
    def __init__(
        self, vocab_size: int = 32000, hidden_size: int = 16, seed: int = 0, record: bool = False, pooled: bool = False
    ) -> None:
        rng = np.random.default_rng(seed)
        self._table = rng.standard_normal((vocab_size, hidden_size)).astype(np.float32)
        self.hidden_size = hidden_size
        provider = "fake (NumPy, pooled)" if pooled else "fake (NumPy, token states)"
        self.capabilities = Capabilities(provider=provider, pools=pooled)
        self.calls: list[tuple[int, int]] = []  # (batch, seq) of every run, for batching tests
        # with record=True, the (input_ids, attention_mask) of every run, for tests of what the encoder saw;
        # off by default so long streaming runs stay O(window) in memory
        self.record = record
        self.inputs: list[tuple[np.ndarray, np.ndarray]] = []

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        self.calls.append(input_ids.shape)
        if self.record:
            self.inputs.append((input_ids.copy(), attention_mask.copy()))
        own = self._table[input_ids % self._table.shape[0]]
        mask = attention_mask[..., None].astype(np.float32)
        context = (own * mask).sum(axis=1, keepdims=True) / np.maximum(mask.sum(axis=1, keepdims=True), 1.0)
        position = np.sin(np.arange(input_ids.shape[1], dtype=np.float32) / 7.0)[None, :, None]
        return (own + 0.5 * context + 0.1 * position).astype(np.float32)

    def run_pooled(self, input_ids: np.ndarray, attention_mask: np.ndarray, pool_weights: np.ndarray) -> np.ndarray:
        """pooled_sums [batch, rows, hidden]: what the pooled graph's MatMul computes, here with einsum."""
        if pool_weights.shape[::2] != input_ids.shape or pool_weights.dtype != np.float32:
            raise ValueError(f"pool_weights {pool_weights.shape} {pool_weights.dtype} does not fit {input_ids.shape}")
        states = self.run(input_ids, attention_mask)
        return np.einsum("brs,bsh->brh", pool_weights, states, dtype=np.float32)

    def close(self) -> None:
        pass
