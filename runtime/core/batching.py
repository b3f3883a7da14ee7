"""Encoder batches (windows padded together for one backend run): sequences sorted by length, split where the
padding a split saves is worth an encoder call, packed under a token budget."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import pairwise

import numpy as np


def pack_by_length(
    lengths: Sequence[int], max_tokens: int, max_batch: int, call_tokens: int = 0
) -> Iterator[np.ndarray]:
    """Yield index arrays, one per encoder batch, in length order: count x longest <= max_tokens and count <=
    max_batch (a single over-long item still goes).

    Where the sorted run is cut is chosen to minimize the encoder's work, modelled as the padded tokens it runs
    (count x longest per batch) plus `call_tokens` per call: an encoder call's fixed cost, in tokens. A CPU
    encoder's time is close to linear in padded tokens (bench/batch_cost.py), so 32 queries of 8-30 tokens
    padded together run twice the tokens they hold, and cutting them where their lengths jump saves most of it.
    call_tokens=0 leaves only the budget: the fewest batches, each as full as the budget allows."""
    lengths_arr = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(lengths_arr, kind="stable")
    if call_tokens <= 0:
        yield from _greedy(order, lengths_arr, max_tokens, max_batch)
        return
    cuts = _cuts(lengths_arr[order], max_tokens, max_batch, call_tokens)
    for start, end in pairwise(cuts):
        yield order[start:end]


def _greedy(order: np.ndarray, lengths: np.ndarray, max_tokens: int, max_batch: int) -> Iterator[np.ndarray]:
    batch: list[int] = []
    longest = 0
    for i in order.tolist():
        longest_if = max(longest, int(lengths[i]))
        if batch and (len(batch) + 1 > max_batch or (len(batch) + 1) * longest_if > max_tokens):
            yield np.asarray(batch, dtype=np.int64)
            batch, longest_if = [], int(lengths[i])
        batch.append(i)
        longest = longest_if
    if batch:
        yield np.asarray(batch, dtype=np.int64)


def _cuts(ascending: np.ndarray, max_tokens: int, max_batch: int, call_tokens: int) -> list[int]:
    """Batch boundaries [0, ..., n] over ascending lengths at the least total cost: best[j] is the cost of the
    first j items, the last batch being items i..j-1 (its longest is item j-1, the lengths being sorted)."""
    n = len(ascending)
    best = np.zeros(n + 1, dtype=np.float64)
    start = np.zeros(n + 1, dtype=np.int64)
    for j in range(1, n + 1):
        longest = int(ascending[j - 1])
        fits = max(1, min(max_batch, max_tokens // max(longest, 1)))  # items a batch ending at j may hold
        i = np.arange(max(0, j - fits), j)
        cost = best[i] + (j - i) * longest
        k = int(np.argmin(cost))  # the first minimum: the earliest start, so the fewest batches on a tie
        best[j], start[j] = cost[k] + call_tokens, i[k]
    cuts = [n]
    while cuts[-1] > 0:
        cuts.append(int(start[cuts[-1]]))
    return cuts[::-1]


def pad_batch(seqs: Sequence[np.ndarray], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask), int64 [batch, longest], right-padded."""
    longest = max(len(s) for s in seqs)
    ids = np.full((len(seqs), longest), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), longest), dtype=np.int64)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return ids, mask
