"""Encoder batches (windows padded together for one backend run): sequences sorted by length so padding stays
small, packed under a token budget."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np


def pack_by_length(lengths: Sequence[int], max_tokens: int, max_batch: int) -> Iterator[np.ndarray]:
    """Yield index arrays, one per encoder batch: count x longest <= max_tokens (a single over-long item still
    goes)."""
    lengths_arr = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(lengths_arr, kind="stable")
    batch: list[int] = []
    longest = 0
    for i in order.tolist():
        longest_if = max(longest, int(lengths_arr[i]))
        if batch and (len(batch) + 1 > max_batch or (len(batch) + 1) * longest_if > max_tokens):
            yield np.asarray(batch, dtype=np.int64)
            batch, longest_if = [], int(lengths_arr[i])
        batch.append(i)
        longest = longest_if
    if batch:
        yield np.asarray(batch, dtype=np.int64)


def pad_batch(seqs: Sequence[np.ndarray], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask), int64 [batch, longest], right-padded."""
    longest = max(len(s) for s in seqs)
    ids = np.full((len(seqs), longest), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), longest), dtype=np.int64)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return ids, mask
