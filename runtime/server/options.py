"""What a request asks the library to do. These frozen values are also the batch key: requests with equal
options may share one library call, and the call is made here, the one place the server calls the library."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from longvec.runtime.core.chunking import Chunking
from longvec.runtime.embedder import Embedder, Mode


@dataclass(frozen=True)
class EmbedOptions:
    """POST /v1/embeddings: one vector per text."""

    prompt: str | None = None  # as the request gave them, the server's default name applied
    prompt_name: str | None = None

    def run(self, emb: Embedder, texts: list[str], extras: list[Any], n_requests: int) -> Sequence[Any]:
        return list(emb.embed(texts, prompt=self.prompt, prompt_name=self.prompt_name))


@dataclass(frozen=True)
class DocumentOptions:
    """POST /v1/documents: a document vector plus chunk vectors per text; `extras` are per-text spans."""

    chunking: Chunking
    chunk_tokens: int
    mode: Mode
    window: int | None
    stride: int | None
    sparse: bool
    max_chunks: int  # per request; a shared call of n requests may return n times as many
    prompt: str | None = None
    prompt_name: str | None = None
    snap: bool = False

    def run(self, emb: Embedder, texts: list[str], extras: list[Any], n_requests: int) -> Sequence[Any]:
        return emb.embed_documents(
            texts,
            chunking=self.chunking,
            chunk_tokens=self.chunk_tokens,
            window=self.window,
            stride=self.stride,
            mode=self.mode,
            spans=extras if self.chunking == "spans" else None,
            sparse=self.sparse,
            max_chunks=self.max_chunks * n_requests,
            prompt=self.prompt,
            prompt_name=self.prompt_name,
            snap=self.snap,
        )


_requests = itertools.count()


@dataclass(frozen=True)
class SearchOptions:
    """POST /v1/search: the texts are the documents searched; the result is one list of hits per query, handed
    back as the first of one result per text. `request` differs for every request, so no two share a call (BM25's
    IDF is over the request's own chunks)."""

    queries: tuple[str, ...]
    top_k: int
    hybrid: bool
    chunk_tokens: int
    max_chunks: int
    request: int = field(default_factory=lambda: next(_requests))

    def run(self, emb: Embedder, texts: list[str], extras: list[Any], n_requests: int) -> Sequence[Any]:
        hits = emb.search(
            list(self.queries), texts, top_k=self.top_k, hybrid=self.hybrid, chunk_tokens=self.chunk_tokens
        )
        return [hits] + [None] * (len(texts) - 1)


Options = EmbedOptions | DocumentOptions | SearchOptions
