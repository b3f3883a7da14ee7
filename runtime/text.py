"""Tokenization: once per text, without truncation or special tokens, keeping character offsets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from longvec.runtime.errors import InputError


@dataclass(frozen=True)
class Tokens:
    """The content tokens of one text: ids [n] and half-open character offsets [n, 2] into that text."""

    ids: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def validate_texts(texts: Sequence[str], allow_blank: bool = False) -> list[str]:
    """Reject what cannot be embedded faithfully, naming the item; the caller's list is not changed."""
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of str, not a single str (wrap it in a list)")
    out = list(texts)
    for i, text in enumerate(out):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is {type(text).__name__}, expected str")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise InputError(f"texts[{i}] is not valid Unicode (lone surrogate at {e.start})") from e
        if not allow_blank and not text.strip():
            raise InputError(f"texts[{i}] is empty or whitespace only; there is nothing to embed")
    return out


class TextTokenizer:
    """A `tokenizers.Tokenizer` with truncation and padding switched off: longvec windows, not the tokenizer."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tok = tokenizer

    @classmethod
    def from_file(cls, path: Path) -> TextTokenizer:
        return cls(Tokenizer.from_file(str(path)))

    def encode(self, texts: Sequence[str]) -> list[Tokens]:
        encodings = self._tok.encode_batch(list(texts), add_special_tokens=False)
        return [
            Tokens(
                np.asarray(e.ids, dtype=np.int64),
                np.asarray(e.offsets, dtype=np.int64).reshape(-1, 2),
            )
            for e in encodings
        ]

    def ids(self, text: str) -> tuple[int, ...]:
        return tuple(self._tok.encode(text, add_special_tokens=False).ids)
