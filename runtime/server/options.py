"""What a request asks the library to do. These frozen values are also the batch key: requests with equal
options may share one library call, and the call is made here, the one place the server calls the library."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from longvec.runtime.embedder import DocumentCall, Embedder


@dataclass(frozen=True)
class EmbedOptions:
    """POST /v1/embeddings: one vector per text."""

    prompt: str | None = None  # as the request gave them, the server's default name applied
    prompt_name: str | None = None

    def run(self, emb: Embedder, texts: list[str], extras: list[Any], n_requests: int) -> Sequence[Any]:
        return list(emb.embed(texts, prompt=self.prompt, prompt_name=self.prompt_name))


@dataclass(frozen=True)
class DocumentOptions:
    """POST /v1/documents: a document vector plus chunk vectors per text; `extras` are per-text spans. `call` is
    what admission resolved with the library (`Embedder.document_call`: mode, window plan, prompt, snap,
    dimensions), its max_chunks the server's per request."""

    call: DocumentCall

    def run(self, emb: Embedder, texts: list[str], extras: list[Any], n_requests: int) -> Sequence[Any]:
        limit = self.call.max_chunks
        call = replace(self.call, max_chunks=None if limit is None else limit * n_requests)  # each was admitted
        spans = extras if call.chunking == "spans" else None
        return emb.embed_prepared(emb.prepare_documents(call, texts, spans))


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
