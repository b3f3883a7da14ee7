"""Chunkers: character spans of a text, mapped to token spans through the tokenizer's offsets.

Every chunk is a half-open character span `[start, end)` into the caller's text and the half-open token span
of the content tokens inside it. Chunkers never split a word when a word boundary is near.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from longvec.runtime.core.text import Tokens
from longvec.runtime.errors import InputError

Chunking = Literal["tokens", "sentences", "paragraphs", "spans"]
CHUNKINGS: tuple[str, ...] = ("tokens", "sentences", "paragraphs", "spans")

_SENTENCE_END = re.compile(r"(?<=[.!?。！？])[\"')\]]*\s+|\n+")
_PARAGRAPH_END = re.compile(r"\n[ \t]*\n\s*")


@dataclass(frozen=True)
class Chunks:
    char_spans: np.ndarray  # [k, 2] int64
    token_spans: np.ndarray  # [k, 2] int64

    def __len__(self) -> int:
        return int(self.token_spans.shape[0])


def _is_word_char(cp: np.ndarray) -> np.ndarray:
    """Per code point: is it part of a word? ASCII letters and digits, and non-ASCII letters, marks and
    ideographs (approximated as code points >= U+00C0 outside the punctuation blocks)."""
    lower = cp | 32
    ascii_word = ((cp >= 48) & (cp <= 57)) | ((lower >= 97) & (lower <= 122))
    punct_block = (
        ((cp >= 0x2000) & (cp <= 0x206F)) | ((cp >= 0x3000) & (cp <= 0x303F)) | ((cp >= 0xFF00) & (cp <= 0xFF0F))
    )
    return ascii_word | ((cp >= 0xC0) & ~punct_block)


def _word_breaks(text: str, tokens: Tokens) -> np.ndarray:
    """breaks[i] is True when a chunk may start at token i without splitting a word.

    Only the characters at token edges are classified (2 per token), not the whole text."""
    n = len(tokens)
    breaks = np.ones(n + 1, dtype=bool)
    if n > 1:
        cp = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        starts, ends = tokens.offsets[1:, 0], tokens.offsets[:-1, 1]
        first = _is_word_char(cp[np.minimum(starts, len(cp) - 1)])
        last = _is_word_char(cp[np.maximum(ends - 1, 0)])
        breaks[1:n] = (starts > ends) | ~first | ~last
    return breaks


def _to_chunks(tokens: Tokens, token_spans: np.ndarray) -> Chunks:
    token_spans = np.asarray(token_spans, dtype=np.int64).reshape(-1, 2)
    chars = np.stack([tokens.offsets[token_spans[:, 0], 0], tokens.offsets[token_spans[:, 1] - 1, 1]], axis=1).reshape(
        -1, 2
    )
    return Chunks(chars, token_spans)


def _cut_mask(n_tokens: int, cuts: np.ndarray) -> np.ndarray:
    mask = np.zeros(n_tokens + 1, dtype=bool)
    mask[cuts[(cuts > 0) & (cuts <= n_tokens)]] = True
    return mask


def _pack(n_tokens: int, size: int, tiers: Sequence[tuple[np.ndarray, int]]) -> np.ndarray:
    """Greedy token spans of at most `size` tokens.

    `tiers` are (mask over token positions 0..n where a chunk may end, shortest chunk allowed to end there), most
    preferred first: e.g. paragraph ends, then sentence ends, then word breaks in the second half of the span.
    A span ends at the last allowed position of the first tier that has one, or at `size` tokens (one word
    longer than `size` has to be cut). One loop iteration per chunk, never per token.
    """
    spans = []
    pos = 0
    while pos < n_tokens:
        end = min(pos + size, n_tokens)
        if end < n_tokens:
            for mask, shortest in tiers:
                floor = pos + max(1, shortest)
                hits = np.flatnonzero(mask[floor : end + 1])
                if hits.size:
                    end = floor + int(hits[-1])
                    break
        spans.append((pos, end))
        pos = end
    return np.asarray(spans, dtype=np.int64).reshape(-1, 2)


def _word_tier(text: str, tokens: Tokens, size: int) -> tuple[np.ndarray, int]:
    return _word_breaks(text, tokens), size // 2


def _segment_cuts(text: str, tokens: Tokens, pattern: re.Pattern[str]) -> np.ndarray:
    """Mask of token positions where a segment (sentence, paragraph) ends: the first token starting at or after
    each separator's end."""
    seg_ends = np.fromiter((m.end() for m in pattern.finditer(text)), dtype=np.int64)
    return _cut_mask(len(tokens), np.searchsorted(tokens.offsets[:, 0], seg_ends, side="left"))


def chunk_by_tokens(text: str, tokens: Tokens, size: int) -> Chunks:
    return _to_chunks(tokens, _pack(len(tokens), size, [_word_tier(text, tokens, size)]))


def chunk_by_sentences(text: str, tokens: Tokens, size: int) -> Chunks:
    """Whole sentences packed up to `size` tokens; a longer sentence is split at a word break."""
    sentences = _segment_cuts(text, tokens, _SENTENCE_END)
    return _to_chunks(tokens, _pack(len(tokens), size, [(sentences, 1), _word_tier(text, tokens, size)]))


def chunk_by_paragraphs(text: str, tokens: Tokens, size: int) -> Chunks:
    """Whole paragraphs packed up to `size` tokens; a longer paragraph is split at sentence ends, and a sentence
    longer than `size` at a word break."""
    paragraphs = _segment_cuts(text, tokens, _PARAGRAPH_END)
    sentences = _segment_cuts(text, tokens, _SENTENCE_END)
    tiers = [(paragraphs, 1), (sentences, 1), _word_tier(text, tokens, size)]
    return _to_chunks(tokens, _pack(len(tokens), size, tiers))


def chunk_by_spans(text: str, tokens: Tokens, spans: Sequence[Sequence[int]], snap: bool = False) -> Chunks:
    """Caller-given character spans; each must cover whole tokens and at least one. With `snap`, a span that
    starts or ends inside a token is widened to the whole token (the returned character spans say so)."""
    try:
        arr = np.asarray(spans, dtype=np.int64).reshape(-1, 2) if len(spans) else np.zeros((0, 2), np.int64)
    except (TypeError, ValueError) as err:
        raise InputError(f"spans must be a list of [start, end] character offsets: {err}") from None
    except OverflowError:  # NumPy's int64: an offset >= 2**63 (or < -2**63) is outside any text anyway
        raise InputError(
            f"spans must be character offsets inside the text (0..{len(text)}); one is out of range"
        ) from None
    starts, ends = tokens.offsets[:, 0], tokens.offsets[:, 1]
    lo = np.searchsorted(ends, arr[:, 0], side="right")  # first token ending after the span start
    hi = np.searchsorted(starts, arr[:, 1], side="left")  # first token starting at or after the span end
    n = len(tokens)
    if snap and n:
        arr = arr.copy()
        inside = (arr[:, 0] < arr[:, 1]) & (arr[:, 0] >= 0) & (arr[:, 1] <= len(text))
        head, tail = (lo < n) & inside, (hi > 0) & inside
        arr[head, 0] = np.minimum(arr[head, 0], starts[lo[head]])
        arr[tail, 1] = np.maximum(arr[tail, 1], ends[hi[tail] - 1])
    checks = (
        (
            ~((arr[:, 0] >= 0) & (arr[:, 0] < arr[:, 1]) & (arr[:, 1] <= len(text))),
            "is not a non-empty range inside the text (0..{L})",
        ),
        ((lo < n) & (starts[np.minimum(lo, n - 1)] < arr[:, 0]), "starts inside the token at {t0}..{t1}"),
        ((hi > 0) & (ends[np.maximum(hi - 1, 0)] > arr[:, 1]), "ends inside the token at {u0}..{u1}"),
        (hi <= lo, "contains no token"),
    )
    for bad, message in checks:  # four vectorized checks; only the first failing span is formatted
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            t, u = min(int(lo[k]), n - 1), max(int(hi[k]) - 1, 0)
            detail = message.format(L=len(text), t0=starts[t], t1=ends[t], u0=starts[u], u1=ends[u])
            raise InputError(f"span {k} ({arr[k, 0]}, {arr[k, 1]}) {detail}")
    return Chunks(arr, np.stack([lo, hi], axis=1).astype(np.int64).reshape(-1, 2))


def make_chunks(
    text: str,
    tokens: Tokens,
    chunking: str,
    size: int,
    spans: Sequence[Sequence[int]] | None,
    snap: bool = False,
) -> Chunks:
    if chunking == "spans":
        if spans is None:
            raise InputError("chunking='spans' needs spans=[...] for every text")
        return chunk_by_spans(text, tokens, spans, snap)
    chunkers = {"tokens": chunk_by_tokens, "sentences": chunk_by_sentences, "paragraphs": chunk_by_paragraphs}
    return chunkers[chunking](text, tokens, size)
