"""Document modes: the one table that says what each `mode=` of `embed_documents` does.

A mode is three decisions, and every other part of longvec reads them from its entry here:
- which encoder passes run: the whole document through its windows (`doc_pass="whole"`), only its first window
  (`"head"`, the text past it is not embedded and chunks past it are not returned), no document pass (None), and
  whether every chunk is also encoded alone (`chunk_pass`);
- hence what a call costs: runtime.core.budget turns the passes into encoder positions (a whole pass costs the
  document's windows, a head pass one window, a chunk pass one sequence per chunk), and the stride matters only
  where windows overlap (a whole pass, or chunks longer than a window);
- how the document vector and the chunk vectors are formed from what the passes return (`form`).

The library's embed_documents, its cost model, the server's admission, batch jobs and the CLI's choices all read
this table, and a bundle's `default_mode` is checked against it when an Embedder is made. A new mode is one entry
in TABLE (and its name in `Mode`, for type checkers; tests/runtime/core/test_modes.py keeps the two equal).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import numpy as np

from longvec.kernels import l2_normalize
from longvec.runtime.core.pipeline import Encoded
from longvec.runtime.errors import InputError

Mode = Literal["auto", "late", "naive", "window_mean", "truncate", "blend"]
AUTO: Mode = (
    "auto"  # not a mode of its own: the bundle's mode (and its stride when none is given), runtime/bundle/defaults
)
DocPass = Literal["whole", "head"]


@dataclass(frozen=True)
class Passes:
    """What the encoder returned for one document, for a mode's `form`."""

    doc: Encoded | None  # the document pass; None when the mode has none
    alone: np.ndarray  # [n_chunks, dim] each chunk encoded alone, pooled as the model pools; [0, dim] without
    finish: Callable[[np.ndarray], np.ndarray]  # the model's own normalization (L2 or none)

    @property
    def whole(self) -> Encoded:
        if self.doc is None:
            raise AssertionError("this mode has no document pass")  # a table entry that contradicts itself
        return self.doc


@dataclass(frozen=True)
class DocumentMode:
    name: str
    doc_pass: DocPass | None
    chunk_pass: bool
    # (document vector [dim], chunk vectors [n_chunks, dim]) as the model gives them; the caller's dimensions and
    # normalize are applied after
    form: Callable[[Passes], tuple[np.ndarray, np.ndarray]]
    summary: str  # one line for help texts and the HTTP schema

    def __post_init__(self) -> None:
        if self.doc_pass is None and not self.chunk_pass:
            raise ValueError(f"mode {self.name!r} runs no encoder pass")

    @property
    def vector_from_chunks(self) -> bool:
        """No document pass: the document vector is pooled from the chunks, so every document needs one."""
        return self.doc_pass is None


def _late(p: Passes) -> tuple[np.ndarray, np.ndarray]:
    return p.whole.pooled, p.whole.span_means


def _naive(p: Passes) -> tuple[np.ndarray, np.ndarray]:
    return l2_normalize(p.alone).mean(axis=0), p.alone


def _window_mean(p: Passes) -> tuple[np.ndarray, np.ndarray]:
    return p.finish(p.whole.window_pooled).mean(axis=0), p.whole.span_means


def _blend(p: Passes) -> tuple[np.ndarray, np.ndarray]:
    return p.whole.pooled, l2_normalize(l2_normalize(p.alone) + l2_normalize(p.whole.span_means))


_ENTRIES = (
    DocumentMode("late", "whole", False, _late, "chunk vectors pooled from the whole document's contextual states"),
    DocumentMode("naive", None, True, _naive, "each chunk encoded alone, the document vector their mean"),
    DocumentMode(
        "window_mean",
        "whole",
        False,
        _window_mean,
        "late chunk vectors, the document vector the mean of its windows",
    ),
    DocumentMode(
        "truncate",
        "head",
        False,
        _late,
        "only the first window, as sentence-transformers would (n_tokens_embedded says how much)",
    ),
    DocumentMode("blend", "whole", True, _blend, "late and naive chunk vectors, normalized and summed"),
)
TABLE: Mapping[str, DocumentMode] = MappingProxyType({m.name: m for m in _ENTRIES})


def names() -> tuple[str, ...]:
    """Every name `mode=` takes: "auto" and the table's modes."""
    return (AUTO, *TABLE)


def lookup(name: str) -> DocumentMode:
    """The table's entry for a resolved mode name ("auto" is resolved to the bundle's mode before this)."""
    found = TABLE.get(name) if isinstance(name, str) else None
    if found is None:
        raise InputError(f"mode must be one of {names()}, got {name!r}")
    return found
