"""POST /v1/search: `Embedder.search` over HTTP, admitted like /v1/documents (the same checks, cost model and
limits, the queries' encoder work added) and run through the same queue, cancellation, logs and metrics.

A search never shares a library call with another request: BM25's IDF is taken over the chunks of the documents
of that request, so two requests searched together would change each other's scores (SearchOptions carries a
request number, which keeps it apart in the batcher)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from longvec.runtime.core.budget import embed_cost
from longvec.runtime.core.search import Hit
from longvec.runtime.core.sparse import require_stemmer
from longvec.runtime.errors import InputError, LimitExceeded, LongvecError
from longvec.runtime.server.admission import Admission, Admitted
from longvec.runtime.server.errors import with_param
from longvec.runtime.server.options import SearchOptions
from longvec.runtime.server.schema import SearchRequest
from longvec.runtime.server.settings import flag


def queries_of(body: SearchRequest) -> list[str]:
    return [body.query] if isinstance(body.query, str) else list(body.query)


def texts_of(body: SearchRequest) -> list[str]:
    return [d if isinstance(d, str) else d.text for d in body.documents]


def ids_of(body: SearchRequest) -> list[str | None]:
    return [None if isinstance(d, str) else d.id for d in body.documents]


def admit(adm: Admission, body: SearchRequest) -> Admitted:
    """Admission's checks in its order: counts and texts, options, then tokens and the cost against the limits."""
    s, emb = adm.settings, adm.emb
    queries, texts = queries_of(body), texts_of(body)
    single = isinstance(body.query, str)
    adm._texts(queries, "query", "query" if single else "query[{i}]")
    adm._texts(texts, "documents", "documents[{i}]")
    if body.hybrid:
        try:
            require_stemmer()
        except (ImportError, LongvecError) as e:
            raise with_param(InputError(f"hybrid search is not available: {e}"), "hybrid") from None
    if body.chunk_tokens < s.min_chunk_tokens:
        message = f"chunk_tokens={body.chunk_tokens} is below this server's minimum {s.min_chunk_tokens}"
        raise with_param(LimitExceeded(f"{message} ({flag('min_chunk_tokens')})", "min_chunk_tokens"), "chunk_tokens")
    # the documents' call as `Embedder.search` makes it (mode auto, the bundle's default prompt), resolved and
    # costed by the library, as /v1/documents is; the queries add their own encoder work
    call = emb.document_call(chunk_tokens=body.chunk_tokens, sparse=body.hybrid, max_chunks=s.max_chunks)
    query_plan = emb.plan()
    with adm.in_flight.hold(sum(map(len, texts)) + sum(map(len, queries))), adm._kept_on_success(texts, call.prompt):
        adm._tokenize(texts, "documents[{i}]", call.prompt)
        query_tokens = [len(t) for t in emb.tokenizer.encode(queries)]
        for i, n in enumerate(query_tokens):
            if n == 0:
                item = "query" if single else f"query[{i}]"
                raise with_param(InputError(f"{item} has no tokens for this model's tokenizer"), item)
        docs = emb.prepare_documents(call, texts).cost
        asked = embed_cost(query_tokens, query_plan, query_plan.window - query_plan.content)
        cost = replace(
            docs,
            texts=docs.texts + asked.texts,
            tokens=docs.tokens + asked.tokens,
            encoder_tokens=docs.encoder_tokens + asked.encoder_tokens,
        )
        adm._check(cost, "documents")
    options = SearchOptions(tuple(queries), body.top_k, body.hybrid, body.chunk_tokens, s.max_chunks)
    return Admitted(options, texts, [None] * len(texts), cost, call.prompt)


def render(results: Sequence[Any], body: SearchRequest, model: str, n_tokens: int) -> bytes:
    """The hits of the one library call (the first result; the others are placeholders, one per text)."""
    per_query: list[list[Hit]] = results[0]
    ids, texts = ids_of(body), texts_of(body)
    data = [
        {
            "object": "search_result",
            "query": qi,
            "hits": [
                {
                    "document": h.document,
                    "id": ids[h.document],
                    "start": h.start,
                    "end": h.end,
                    "score": h.score,
                    "dense": h.dense,
                    "lexical": h.lexical,
                    "text": texts[h.document][h.start : h.end],
                }
                for h in hits
            ],
        }
        for qi, hits in enumerate(per_query)
    ]
    usage = {"prompt_tokens": n_tokens, "total_tokens": n_tokens}
    return json.dumps({"object": "list", "data": data, "model": model, "usage": usage}).encode()
