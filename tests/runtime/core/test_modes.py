"""The mode table (runtime/core/modes.py) is the one place a document mode is described: a mode added to it flows
through the options check, the cost model and embed_documents with no other edit, and one call is decided once
(`document_call` -> `prepare_documents` -> `embed_prepared`), the same way for the list, the `_iter` form, batch
jobs and the server."""

from __future__ import annotations

import typing
from collections.abc import Callable
from types import MappingProxyType

import numpy as np
import pytest

from longvec.kernels import l2_normalize
from longvec.runtime import Embedder
from longvec.runtime.bundle import defaults
from longvec.runtime.core import modes
from longvec.runtime.core.budget import document_cost, packed_lengths
from longvec.runtime.core.documents import DocumentOptions
from longvec.runtime.errors import InputError, LimitExceeded
from longvec.runtime.jobs.local import JobOptions

TEXT = " ".join(f"Sentence {i} tells of lighthouse keeper number {i} and the lamp." for i in range(40))


def _mean_of_chunks(p: modes.Passes) -> tuple[np.ndarray, np.ndarray]:
    return l2_normalize(p.whole.span_means).mean(axis=0), p.whole.span_means


def _head_and_alone(p: modes.Passes) -> tuple[np.ndarray, np.ndarray]:
    return p.whole.pooled, p.alone


@pytest.fixture
def more_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two throwaway modes, each one table entry: a whole-document pass with the document vector as the mean of
    its late chunks, and a head-only pass plus every (kept) chunk encoded alone."""
    extra = (
        modes.DocumentMode("late_mean", "whole", False, _mean_of_chunks, "test: late chunks, their mean"),
        modes.DocumentMode("head_alone", "head", True, _head_and_alone, "test: first window, chunks alone"),
    )
    monkeypatch.setattr(modes, "TABLE", MappingProxyType({**modes.TABLE, **{m.name: m for m in extra}}))


def test_the_literal_names_the_table() -> None:
    assert typing.get_args(modes.Mode) == modes.names()
    assert {defaults.SHORT_CONTEXT_MODE, defaults.LONG_CONTEXT_MODE} <= set(modes.TABLE)


def test_unknown_modes_are_refused_everywhere(fake: Embedder) -> None:
    for check in (
        lambda: modes.lookup("mean"),
        lambda: DocumentOptions(mode="mean"),
        lambda: JobOptions(mode="mean"),
        lambda: fake.document_call(mode="mean"),  # type: ignore[arg-type]
        lambda: fake.embed_documents([TEXT], mode="mean"),  # type: ignore[arg-type]
    ):
        with pytest.raises(InputError, match="mode must be one of"):
            check()


@pytest.mark.usefixtures("more_modes")
def test_a_new_mode_is_one_table_entry(make_fake: Callable[..., Embedder]) -> None:
    emb = make_fake(window=48)
    assert "late_mean" in modes.names() and JobOptions(mode="late_mean").mode == "late_mean"
    [late] = emb.embed_documents([TEXT], chunk_tokens=16, mode="late")
    [new] = emb.embed_documents([TEXT], chunk_tokens=16, mode="late_mean")  # type: ignore[arg-type]
    assert new.mode == "late_mean" and new.n_windows == late.n_windows > 1
    np.testing.assert_allclose(new.chunk_vectors, late.chunk_vectors, atol=1e-6)
    np.testing.assert_allclose(new.vector, l2_normalize(l2_normalize(late.chunk_vectors).mean(axis=0)), atol=1e-6)
    # the cost model reads the same entry: a whole-document pass costs what late's does
    call = emb.document_call(chunk_tokens=16, mode="late_mean")  # type: ignore[arg-type]
    prepared = emb.prepare_documents(call, [TEXT])
    late_cost = emb.prepare_documents(emb.document_call(chunk_tokens=16, mode="late"), [TEXT]).cost
    assert prepared.cost == late_cost


@pytest.mark.usefixtures("more_modes")
def test_a_head_pass_with_a_chunk_pass_costs_and_keeps_what_it_says(make_fake: Callable[..., Embedder]) -> None:
    emb = make_fake(window=48)
    call = emb.document_call(chunk_tokens=16, mode="head_alone")  # type: ignore[arg-type]
    prepared = emb.prepare_documents(call, [TEXT])
    n = len(prepared.tokens[0])
    lengths = packed_lengths(n, 16)
    naive = document_cost([n], call.plan, call.overhead, "naive", [lengths]).encoder_tokens
    assert n > call.plan.content and prepared.cost.encoder_tokens == call.plan.window + naive
    [res] = emb.embed_prepared(prepared)
    [truncated] = emb.embed_documents([TEXT], chunk_tokens=16, mode="truncate")
    [naive_res] = emb.embed_documents([TEXT], chunk_tokens=16, mode="naive")
    assert res.n_tokens_embedded == truncated.n_tokens_embedded == call.plan.content
    np.testing.assert_array_equal(res.chunk_spans, truncated.chunk_spans)  # chunks past the head are not returned
    np.testing.assert_allclose(res.vector, truncated.vector, atol=1e-6)
    np.testing.assert_allclose(res.chunk_vectors, naive_res.chunk_vectors[: len(res.chunk_spans)], atol=1e-6)


@pytest.mark.parametrize("mode", [m for m in modes.names()])
def test_prepared_calls_give_what_embed_documents_gives(fake: Embedder, mode: str) -> None:
    texts = [TEXT, "a short one", TEXT[:300]]
    call = fake.document_call(chunk_tokens=16, mode=mode, dimensions=8)  # type: ignore[arg-type]
    assert call.mode.name == (fake.defaults.mode if mode == "auto" else mode)
    assert call.output.dimensions == 8 and call.plan == fake.plan(stride=call.plan.stride)
    prepared = fake.prepare_documents(call, texts)
    assert prepared.cost.tokens == sum(fake.count_tokens(texts))
    for got, want in zip(
        fake.embed_prepared(prepared),
        fake.embed_documents(texts, chunk_tokens=16, mode=mode, dimensions=8),  # type: ignore[arg-type]
        strict=True,
    ):
        np.testing.assert_array_equal(got.vector, want.vector)
        np.testing.assert_array_equal(got.chunk_vectors, want.chunk_vectors)
        np.testing.assert_array_equal(got.chunk_spans, want.chunk_spans)


def test_auto_is_resolved_once_with_the_bundles_stride(fake: Embedder) -> None:
    call = fake.document_call()
    assert call.mode.name == fake.defaults.mode
    assert call.plan.stride == fake.defaults.stride(fake.plan().content)
    assert fake.document_call(stride=7).plan.stride == 7  # the caller's stride wins
    assert fake.document_call(mode="late").plan.stride == fake.plan().stride  # an explicit mode: half windows


def test_the_iter_form_has_the_list_forms_limits(fake: Embedder) -> None:
    texts = [TEXT] * 3
    with pytest.raises(LimitExceeded, match="max_chunks"):
        list(fake.embed_documents_iter(texts, chunk_tokens=16, max_chunks=10))
    with pytest.raises(LimitExceeded, match="max_chunks"):  # counted over every group, as the list form does
        list(fake.embed_documents_iter(texts, chunk_tokens=16, batch_size=1, max_chunks=40))
    got = list(fake.embed_documents_iter(texts, chunk_tokens=16, batch_size=2))
    for a, b in zip(got, fake.embed_documents(texts, chunk_tokens=16), strict=True):
        np.testing.assert_array_equal(a.chunk_vectors, b.chunk_vectors)


def test_prepare_refuses_before_the_work(fake: Embedder) -> None:
    call = fake.document_call(chunk_tokens=1, max_chunks=50)
    with pytest.raises(LimitExceeded):
        fake.prepare_documents(call, [TEXT])
    with pytest.raises(InputError, match=r"texts\[1\] has no tokens"):
        fake.prepare_documents(fake.document_call(), ["fine", "\u200b"])
    with pytest.raises(InputError, match="needs spans"):
        fake.prepare_documents(fake.document_call(spans=True), [TEXT])
