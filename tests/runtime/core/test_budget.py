"""The request cost model (longvec.runtime.core.budget) and the library's own bound on chunk output: a call that
would return too many chunk vectors is refused before any encoding, and the caller can raise the bound."""

from __future__ import annotations

import pytest

from longvec.runtime import Embedder
from longvec.runtime.core.budget import Cost, Limits, document_cost, embed_cost, packed_lengths
from longvec.runtime.core.windows import WindowPlan
from longvec.runtime.errors import InputError, LimitExceeded

PLAN = WindowPlan.make(256, None, 2, 512)  # content 254, stride 127


def test_encoder_tokens_follow_windows_and_mode() -> None:
    n = 29_000
    windows = PLAN.n_windows(n)
    assert embed_cost([n], PLAN, 2).encoder_tokens == windows * 256
    assert embed_cost([10], PLAN, 2).encoder_tokens == 12  # one short window: content plus framing
    chunks = packed_lengths(n, 128)
    assert sum(chunks) == n and len(chunks) == -(-n // 128)
    late = document_cost([n], PLAN, 2, "late", [chunks])
    naive = document_cost([n], PLAN, 2, "naive", [chunks])
    blend = document_cost([n], PLAN, 2, "blend", [chunks])
    truncate = document_cost([n], PLAN, 2, "truncate", [chunks])
    assert late.encoder_tokens == windows * 256
    assert naive.encoder_tokens == n + 2 * len(chunks)  # every chunk alone, framed
    assert blend.encoder_tokens == late.encoder_tokens + naive.encoder_tokens
    assert truncate.encoder_tokens == 256
    assert late.chunks == len(chunks) and late.tokens == n


def test_stride_one_multiplies_the_work() -> None:
    """Finding 2 of issue 15: window 512, stride 1 on a 5 KB text costs hundreds of windows."""
    tight = WindowPlan.make(512, 1, 2, 512)
    cost = embed_cost([1_000], tight, 2)
    assert cost.encoder_tokens == tight.n_windows(1_000) * 512 > 250_000


def test_limits_name_the_bound() -> None:
    cost = Cost(texts=1, tokens=100, encoder_tokens=5_000, chunks=40)
    Limits(max_request_tokens=100, max_request_encoder_tokens=5_000, max_chunks=40).check(cost)  # at the bound
    with pytest.raises(LimitExceeded, match="more than max_chunks=39; raise max_chunks") as info:
        Limits(max_chunks=39).check(cost)
    assert info.value.limit == "max_chunks"
    with pytest.raises(LimitExceeded, match=r"5000 encoder tokens .* at most 4999 per request \(--x\)"):
        Limits(max_request_encoder_tokens=4_999).check(cost, {"max_request_encoder_tokens": "--x"})


def test_embed_documents_refuses_chunk_amplification_before_encoding(make_fake: object) -> None:
    """Finding 1: chunk_tokens=1 on a long text returned one vector per token. The library now refuses a call
    whose chunk count exceeds max_chunks, before the encoder runs; the caller can raise the bound."""
    emb: Embedder = make_fake()  # type: ignore[operator]
    text = "the keeper lit the lamp at dusk and watched the ships " * 40  # ~480 tokens
    calls = emb.backend.calls  # type: ignore[attr-defined]
    with pytest.raises(LimitExceeded, match="more than max_chunks=100"):
        emb.embed_documents([text], chunk_tokens=1, max_chunks=100)
    assert calls == []  # refused before any encoding
    n_tokens = emb.count_tokens([text])[0]
    doc = emb.embed_documents([text], chunk_tokens=1, max_chunks=n_tokens)[0]
    assert len(doc.chunk_spans) == n_tokens
    with pytest.raises(LimitExceeded, match="max_chunks=2"):  # caller spans count too
        emb.embed_documents([text], spans=[[(0, 3), (4, 10), (11, 14)]], max_chunks=2)


def test_default_max_chunks_stops_a_book_at_one_token_per_chunk(make_fake: object) -> None:
    emb: Embedder = make_fake()  # type: ignore[operator]
    book = "word " * 70_000
    with pytest.raises(LimitExceeded, match="max_chunks=65536"):
        emb.embed_documents([book], chunk_tokens=1)
    assert emb.backend.calls == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("bound", [2**63, 2**64 + 5, -(2**63) - 1])
def test_span_bound_beyond_int64_is_an_input_error(make_fake: object, bound: int) -> None:
    """Finding 4: a span bound >= 2**63 raised a raw OverflowError."""
    emb: Embedder = make_fake()  # type: ignore[operator]
    with pytest.raises(InputError, match="out of range"):
        emb.embed_documents(["alpha beta"], spans=[[(0, bound)]])
