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

from longvec.runtime.errors import InputError
from longvec.runtime.text import Tokens

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


def _word_chars(text: str) -> np.ndarray:
    """Per character: is it part of a word? ASCII letters and digits, and non-ASCII letters, marks and
    ideographs (approximated as code points >= U+00C0 outside the punctuation blocks). Vectorized."""
    cp = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    ascii_word = ((cp >= 48) & (cp <= 57)) | ((cp | 32) >= 97) & ((cp | 32) <= 122)
    punct_block = (
        ((cp >= 0x2000) & (cp <= 0x206F)) | ((cp >= 0x3000) & (cp <= 0x303F)) | ((cp >= 0xFF00) & (cp <= 0xFF0F))
    )
    return ascii_word | ((cp >= 0xC0) & ~punct_block)


def _word_breaks(text: str, tokens: Tokens) -> np.ndarray:
    """breaks[i] is True when a chunk may start at token i without splitting a word."""
    n = len(tokens)
    breaks = np.ones(n + 1, dtype=bool)
    if n > 1:
        word = np.append(_word_chars(text), False)
        starts, ends = tokens.offsets[1:, 0], tokens.offsets[:-1, 1]
        breaks[1:n] = (starts > ends) | ~word[starts] | ~word[np.maximum(ends - 1, 0)]
    return breaks


def _to_chunks(tokens: Tokens, token_spans: np.ndarray) -> Chunks:
    token_spans = np.asarray(token_spans, dtype=np.int64).reshape(-1, 2)
    chars = np.stack([tokens.offsets[token_spans[:, 0], 0], tokens.offsets[token_spans[:, 1] - 1, 1]], axis=1).reshape(
        -1, 2
    )
    return Chunks(chars, token_spans)


def _pack(n_tokens: int, size: int, breaks: np.ndarray, cuts: np.ndarray | None = None) -> np.ndarray:
    """Greedy token spans of at most `size`; ends on a preferred cut (segment end) or else a word break."""
    spans = []
    pos = 0
    preferred = np.zeros(n_tokens + 1, dtype=bool) if cuts is None else np.isin(np.arange(n_tokens + 1), cuts)
    while pos < n_tokens:
        end = min(pos + size, n_tokens)
        if end < n_tokens:
            lo = pos + 1
            for mask, floor in ((preferred, lo), (breaks, pos + max(1, size // 2))):
                hits = np.flatnonzero(mask[floor : end + 1])
                if hits.size:
                    end = floor + int(hits[-1])
                    break
        spans.append((pos, end))
        pos = end
    return np.asarray(spans, dtype=np.int64).reshape(-1, 2)


def chunk_by_tokens(text: str, tokens: Tokens, size: int) -> Chunks:
    return _to_chunks(tokens, _pack(len(tokens), size, _word_breaks(text, tokens)))


def _chunk_by_pattern(text: str, tokens: Tokens, size: int, pattern: re.Pattern[str]) -> Chunks:
    """Whole segments (sentences, paragraphs) packed up to `size` tokens; a longer segment is split."""
    seg_ends = np.array([m.end() for m in pattern.finditer(text)], dtype=np.int64)
    # token index where each segment ends = first token starting at or after the separator's end
    cuts = np.searchsorted(tokens.offsets[:, 0], seg_ends, side="left")
    return _to_chunks(tokens, _pack(len(tokens), size, _word_breaks(text, tokens), cuts))


def chunk_by_sentences(text: str, tokens: Tokens, size: int) -> Chunks:
    return _chunk_by_pattern(text, tokens, size, _SENTENCE_END)


def chunk_by_paragraphs(text: str, tokens: Tokens, size: int) -> Chunks:
    return _chunk_by_pattern(text, tokens, size, _PARAGRAPH_END)


def chunk_by_spans(text: str, tokens: Tokens, spans: Sequence[Sequence[int]]) -> Chunks:
    """Caller-given character spans; each must cover whole tokens and at least one."""
    arr = np.asarray(spans, dtype=np.int64).reshape(-1, 2) if len(spans) else np.zeros((0, 2), np.int64)
    starts, ends = tokens.offsets[:, 0], tokens.offsets[:, 1]
    lo = np.searchsorted(ends, arr[:, 0], side="right")  # first token ending after the span start
    hi = np.searchsorted(starts, arr[:, 1], side="left")  # first token starting at or after the span end
    for k, (s, e) in enumerate(arr.tolist()):
        if not 0 <= s < e <= len(text):
            raise InputError(f"span {k} ({s}, {e}) is not a non-empty range inside the text (0..{len(text)})")
        if lo[k] < len(tokens) and starts[lo[k]] < s:
            raise InputError(f"span {k} starts at {s}, inside the token at {starts[lo[k]]}..{ends[lo[k]]}")
        if hi[k] > 0 and ends[hi[k] - 1] > e:
            raise InputError(f"span {k} ends at {e}, inside the token at {starts[hi[k] - 1]}..{ends[hi[k] - 1]}")
        if hi[k] <= lo[k]:
            raise InputError(f"span {k} ({s}, {e}) contains no token")
    return Chunks(arr, np.stack([lo, hi], axis=1).astype(np.int64).reshape(-1, 2))


def make_chunks(text: str, tokens: Tokens, chunking: str, size: int, spans: Sequence[Sequence[int]] | None) -> Chunks:
    if chunking == "spans":
        if spans is None:
            raise InputError("chunking='spans' needs spans=[...] for every text")
        return chunk_by_spans(text, tokens, spans)
    chunkers = {"tokens": chunk_by_tokens, "sentences": chunk_by_sentences, "paragraphs": chunk_by_paragraphs}
    return chunkers[chunking](text, tokens, size)
