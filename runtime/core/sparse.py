"""Sparse lexical vectors for hybrid search: BM25 term-frequency weights over stemmed words.

A chunk's sparse vector holds, for each distinct term t of the chunk text, the saturated term frequency

    w(t) = tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avg_len))

where `len` counts the chunk's terms and `avg_len` is a fixed parameter (not fitted to a corpus, so a vector
never changes when other chunks are added). IDF is left to the index: Qdrant's sparse vectors with
`modifier="idf"` multiply by ln(1 + (N - n + 0.5) / (n + 0.5)) at query time, which makes the dot product with
a query vector (weight 1 per distinct query term) exactly the BM25 score.

Terms (fixed; changing any of this changes every id and must bump the `TERMS_VERSION`):
1. every character that is neither a word character (`\\w`) nor whitespace becomes a space; the text is
   lowercased; terms are the maximal runs of `\\w` characters;
2. terms in `STOPWORDS` (NLTK's English list, 179 words) and terms longer than 40 characters are dropped;
3. each remaining term is stemmed with the Snowball 2 English (Porter2) stemmer, the pure-Python
   `snowballstemmer<3` (Snowball 3 changed the algorithm; PyStemmer is not used for the same reason); an empty
   stem is dropped. This is the stemmer of fastembed's `py_rust_stemmers` (identical on all 16,121 distinct
   words of the SQuAD evaluation set).

Term ids: `abs(murmur3_x86_32(stem.encode("utf-8"), seed=0))` with the 32-bit result read as a signed int, i.e.
`abs(mmh3.hash(stem))`, implemented below in pure Python. With the defaults k1=1.2, b=0.75, avg_len=256 this is
the scheme of fastembed's `Qdrant/bm25` model, so longvec chunk vectors and fastembed (or Qdrant) query vectors
can share one index.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from longvec.runtime.errors import BackendUnavailable, InputError

TERMS_VERSION = 1

STOPWORDS: frozenset[str] = frozenset(
    """a about above after again against ain all am an and any are aren aren't as at be because been before being
    below between both but by can couldn couldn't d did didn didn't do does doesn doesn't doing don don't down
    during each few for from further had hadn hadn't has hasn hasn't have haven haven't having he her here hers
    herself him himself his how i if in into is isn isn't it it's its itself just ll m ma me mightn mightn't more
    most mustn mustn't my myself needn needn't no nor not now o of off on once only or other our ours ourselves out
    over own re s same shan shan't she she's should should've shouldn shouldn't so some such t than that that'll
    the their theirs them themselves then there these they this those through to too under until up ve very was
    wasn wasn't we were weren weren't what when where which while who whom why will with won won't wouldn wouldn't
    y you you'd you'll you're you've your yours yourself yourselves""".split()  # noqa: SIM905 (179 words: readable)
)
MAX_TERM_CHARS = 40

_NOT_WORD_OR_SPACE = re.compile(r"[^\w\s]")
_WORD = re.compile(r"\w+")
_M32 = 0xFFFFFFFF


@dataclass(frozen=True)
class SparseVector:
    """Term ids (int64, sorted, unique) and their weights (float32, same length)."""

    indices: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        indices = np.asarray(self.indices, dtype=np.int64).reshape(-1)
        values = np.asarray(self.values, dtype=np.float32).reshape(-1)
        if indices.shape != values.shape:
            raise InputError(f"sparse vector has {indices.size} indices but {values.size} values")
        if indices.size > 1 and not np.all(np.diff(indices) > 0):
            raise InputError("sparse vector indices must be sorted and unique")
        object.__setattr__(self, "indices", indices)
        object.__setattr__(self, "values", values)

    def __len__(self) -> int:
        return int(self.indices.size)

    def to_dict(self) -> dict[str, list[Any]]:
        """The shape Qdrant and most JSON APIs take: {"indices": [...], "values": [...]}."""
        return {"indices": self.indices.tolist(), "values": self.values.tolist()}

    @classmethod
    def from_weights(cls, weights: dict[int, float]) -> SparseVector:
        ids = np.fromiter(weights.keys(), dtype=np.int64, count=len(weights))
        vals = np.fromiter(weights.values(), dtype=np.float64, count=len(weights))
        order = np.argsort(ids)
        return cls(ids[order], vals[order].astype(np.float32))


def _rotl32(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _M32


def murmur3_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3 x86_32 (Austin Appleby's reference), unsigned 32-bit result."""
    c1, c2 = 0xCC9E2D51, 0x1B873593
    h = seed & _M32
    n_blocks = len(data) // 4
    for i in range(0, 4 * n_blocks, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = _rotl32((k * c1) & _M32, 15) * c2 & _M32
        h = (_rotl32(h ^ k, 13) * 5 + 0xE6546B64) & _M32
    tail = data[4 * n_blocks :]
    if tail:
        k = int.from_bytes(tail, "little")
        h ^= _rotl32((k * c1) & _M32, 15) * c2 & _M32
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _M32
    return h ^ (h >> 16)


@lru_cache(maxsize=1 << 17)
def term_id(term: str) -> int:
    """abs(signed murmur3_32(term)); equals `abs(mmh3.hash(term))`."""
    h = murmur3_32(term.encode("utf-8"))
    return abs(h - (1 << 32) if h >= 1 << 31 else h)


_local = threading.local()  # snowball stemmer objects keep state between calls: one per thread


def require_stemmer() -> Any:
    """The calling thread's stemmer; raises BackendUnavailable when snowballstemmer (a dependency) is missing."""
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        try:
            from snowballstemmer.english_stemmer import EnglishStemmer
        except ImportError as e:
            raise BackendUnavailable(
                "sparse vectors need the Snowball stemmer, a dependency of longvec that is missing here: "
                "pip install 'snowballstemmer>=2.2,<3' (or reinstall 'longvec[sparse]')"
            ) from e
        stemmer = EnglishStemmer()  # the pure-Python class: PyStemmer may carry a newer Snowball
        if stemmer.stemWord("organization") != "organ":
            # Snowball 3 changed the English algorithm ("organization" -> "organiz", "university" -> "universiti"):
            # the ids would no longer match existing indexes or fastembed's Qdrant/bm25.
            raise BackendUnavailable("sparse vectors need the Snowball 2 English stemmer: snowballstemmer>=2.2,<3")
        _local.stemmer = stemmer
    return stemmer


@lru_cache(maxsize=1 << 17)
def _stem(word: str) -> str:
    return str(require_stemmer().stemWord(word))


def terms(text: str) -> list[str]:
    """The stemmed, stop-word-free terms of a text, in order (see the module docstring)."""
    words = _WORD.findall(_NOT_WORD_OR_SPACE.sub(" ", text).lower())
    stems = (_stem(w) for w in words if w not in STOPWORDS and len(w) <= MAX_TERM_CHARS)
    return [s for s in stems if s]


_WORD_START = re.compile(r"(?<!\w)\w")  # where a word of `terms` starts (its words are the \w runs of the text)


def term_bound(text: str, char_spans: np.ndarray) -> int:
    """An upper bound on the (chunk, term) pairs of `text`'s chunks at `char_spans` [k, 2], before any stemming:
    each chunk has at most the words that start inside it, plus one cut at its start. Overlapping spans count
    their words again, as their sparse vectors do."""
    if len(char_spans) == 0:
        return 0
    starts = np.fromiter((m.start() for m in _WORD_START.finditer(text)), dtype=np.int64)
    spans = np.asarray(char_spans, dtype=np.int64).reshape(-1, 2)
    inside = np.searchsorted(starts, spans[:, 1]) - np.searchsorted(starts, spans[:, 0])
    return int(inside.sum()) + len(spans)


def word_count(text: str) -> int:
    """The words of `text` as `terms` splits it (before stop words and stemming)."""
    return len(_WORD_START.findall(text))


@dataclass(frozen=True)
class SparseEncoder:
    """BM25 document weights and binary query weights; the defaults are fastembed `Qdrant/bm25`'s."""

    k1: float = 1.2
    b: float = 0.75
    avg_len: float = 256.0

    def __post_init__(self) -> None:
        if not (self.k1 > 0 and 0 <= self.b <= 1 and self.avg_len > 0):
            raise InputError(f"need k1 > 0, 0 <= b <= 1, avg_len > 0; got {self.k1}, {self.b}, {self.avg_len}")

    def document(self, text: str) -> SparseVector:
        found = terms(text)
        if not found:
            return SparseVector(np.zeros(0, np.int64), np.zeros(0, np.float32))
        norm = self.k1 * (1.0 - self.b + self.b * len(found) / self.avg_len)
        counts = Counter(found)
        return SparseVector.from_weights({term_id(t): tf * (self.k1 + 1.0) / (tf + norm) for t, tf in counts.items()})

    def query(self, text: str) -> SparseVector:
        ids = np.unique(np.fromiter((term_id(t) for t in terms(text)), dtype=np.int64))
        return SparseVector(ids, np.ones(ids.size, np.float32))

    def documents(self, texts: Sequence[str]) -> list[SparseVector]:
        return [self.document(t) for t in texts]

    def queries(self, texts: Sequence[str]) -> list[SparseVector]:
        return [self.query(t) for t in texts]
