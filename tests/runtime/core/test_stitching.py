"""Streaming stitching and pooling against a plain reference: every window run by hand through the backend, the
windows stitched with the kernels over the full array, spans pooled with a loop."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import replace
from itertools import pairwise
from types import ModuleType

import numpy as np
import pytest

from longvec.kernels import l2_normalize
from longvec.runtime import Embedder
from longvec.runtime.core.batching import pack_by_length


def with_pooling(emb: Embedder, **changes: object) -> Embedder:
    """The same fake backend and tokenizer under another pooling config (e.g. include_prompt=False)."""
    manifest = dataclasses.replace(emb.manifest, pooling=dataclasses.replace(emb.manifest.pooling, **changes))
    return Embedder(emb.backend, emb.tokenizer, manifest, emb.window, emb.batching)


def reference(
    oracles: ModuleType,
    emb: Embedder,
    text: str,
    token_spans: np.ndarray,
    stride: int | None,
    stitch: str,
    prompt: str | None,
) -> tuple[np.ndarray, np.ndarray]:
    """(document vector, chunk vectors) computed the slow, obvious way."""
    plan = emb.plan(stride=stride, prompt=prompt)
    ids = emb.tokenizer.encode([text])[0].ids.tolist()
    n = len(ids)
    head = list(emb.manifest.framing.prefix_ids) + (list(emb.tokenizer.ids(prompt)) if prompt else [])
    tail = list(emb.manifest.framing.suffix_ids)
    starts = plan.starts(n)
    length = min(plan.content, n)
    windows = []
    for s in starts.tolist():  # one window per call: nothing shared with the pipeline's batching
        framed = np.asarray([head + ids[s : s + length] + tail], dtype=np.int64)
        windows.append(emb.backend.run(framed, np.ones_like(framed))[0])
    states = np.stack(windows)
    p = len(head)
    body = states[:, p : p + length]
    stitched = (
        oracles.stitch_center(body, starts, n) if stitch == "center" else oracles.stitch_weighted(body, starts, n)
    )
    chunks = np.stack([stitched[s:e].astype(np.float64).mean(axis=0) for s, e in token_spans.tolist()])
    pooling = emb.manifest.pooling
    if pooling.mode == "mean":
        full = np.concatenate((states[0, :p], stitched, states[-1, p + length :])).astype(np.float64)
        begin = p if prompt and not pooling.include_prompt else 0
        doc = full[begin:].mean(axis=0)
    elif pooling.mode == "cls":
        doc = states[:, 0].astype(np.float64).mean(axis=0)  # every window's own [CLS]
    else:
        doc = states[-1, -1]
    finish = l2_normalize if pooling.normalize else np.asarray
    return finish(doc.astype(np.float32)), finish(chunks.astype(np.float32))


@pytest.mark.parametrize("stitch", ["center", "weighted"])
@pytest.mark.parametrize("pooling", ["mean", "cls", "last"])
@pytest.mark.parametrize("prompt", [None, "query: "])
def test_late_chunks_of_multi_window_documents_equal_the_reference(
    oracles: ModuleType,
    make_fake: Callable[..., Embedder],
    text_of: Callable[..., str],
    stitch: str,
    pooling: str,
    prompt: str | None,
) -> None:
    emb = make_fake(window=32, pooling=pooling, max_tokens=32 * 3)
    texts = [text_of(120, 1), text_of(7, 2), text_of(333, 3)]
    for stride in (None, 5, emb.plan(prompt=prompt).content):
        results = emb.embed_documents(texts, chunk_tokens=13, stride=stride, prompt=prompt, stitch=stitch, mode="late")
        vectors = emb.embed(texts, stride=stride, prompt=prompt) if stitch == "center" else None
        for k, (text, res) in enumerate(zip(texts, results)):
            assert res.n_windows == emb.plan(stride=stride, prompt=prompt).n_windows(res.n_tokens)
            doc, chunks = reference(oracles, emb, text, res.chunk_token_spans, stride, stitch, prompt)
            np.testing.assert_allclose(res.chunk_vectors, chunks, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(res.vector, doc, rtol=1e-5, atol=1e-6)
            if vectors is not None:
                np.testing.assert_allclose(vectors[k], doc, rtol=1e-5, atol=1e-6)
    assert results[2].n_windows > 3  # the test really covered multi-window documents


@pytest.mark.parametrize("stitch", ["center", "weighted"])
@pytest.mark.parametrize("over", [-1, 0, 1, 2])
@pytest.mark.parametrize("prompt", [None, "query: "])
def test_one_token_over_exactly_one_window_and_one_under(
    oracles: ModuleType,
    make_fake: Callable[..., Embedder],
    text_of: Callable[..., str],
    stitch: str,
    over: int,
    prompt: str | None,
) -> None:
    probe = make_fake()
    text = text_of(25, 9)
    n = len(probe.tokenizer.encode([text])[0])
    overhead = 2 + (len(probe.tokenizer.ids(prompt.rstrip())) if prompt else 0)
    emb = make_fake(window=n - over + overhead)  # content = n - over tokens
    assert emb.plan(prompt=prompt).content == n - over
    [res] = emb.embed_documents([text], chunk_tokens=4, prompt=prompt, stitch=stitch, mode="late")
    assert res.n_windows == (1 if over <= 0 else 2)
    doc, chunks = reference(oracles, emb, text, res.chunk_token_spans, None, stitch, prompt)
    np.testing.assert_allclose(res.chunk_vectors, chunks, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res.vector, doc, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("stitch", ["center", "weighted"])
def test_prompt_left_out_of_the_mean_when_the_model_says_so(
    oracles: ModuleType, make_fake: Callable[..., Embedder], text_of: Callable[..., str], stitch: str
) -> None:
    emb = with_pooling(make_fake(window=32), include_prompt=False)
    text = text_of(90, 4)
    [res] = emb.embed_documents([text], chunk_tokens=10, prompt="query: ", stitch=stitch, mode="late")
    doc, chunks = reference(oracles, emb, text, res.chunk_token_spans, None, stitch, "query: ")
    np.testing.assert_allclose(res.vector, doc, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res.chunk_vectors, chunks, rtol=1e-5, atol=1e-6)
    with_prompt = make_fake(window=32).embed_documents(
        [text], chunk_tokens=10, prompt="query: ", stitch=stitch, mode="late"
    )[0]
    assert not np.allclose(with_prompt.vector, res.vector)


@pytest.mark.parametrize("pooling", ["mean", "cls", "last"])
@pytest.mark.parametrize("stitch", ["center", "weighted"])
def test_a_document_shorter_than_one_window_is_the_single_pass(
    make_fake: Callable[..., Embedder], text_of: Callable[..., str], pooling: str, stitch: str
) -> None:
    emb = make_fake(window=64, pooling=pooling, normalize=False)
    text = text_of(30, 5)
    tok = emb.tokenizer.encode([text])[0]
    framed = np.concatenate(([101], tok.ids, [102]))[None]
    single = emb.backend.run(framed, np.ones_like(framed))[0]
    pooled = {"mean": single.mean(axis=0), "cls": single[0], "last": single[-1]}[pooling]
    [res] = emb.embed_documents([text, text_of(200, 6)], chunk_tokens=7, stitch=stitch, mode="late")[:1]
    assert res.n_windows == 1
    np.testing.assert_allclose(res.vector, pooled, rtol=1e-6, atol=1e-6)
    expected = np.stack([single[1 + s : 1 + e].mean(axis=0) for s, e in res.chunk_token_spans.tolist()])
    np.testing.assert_allclose(res.chunk_vectors, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(emb.embed([text])[0], pooled, rtol=1e-6, atol=1e-6)


def test_real_model_short_document_late_chunks_equal_one_onnx_pass(embedder: Embedder) -> None:
    text = (
        "The lighthouse stood on a granite ledge. Its keeper trimmed the wick at dusk and wound the clockwork "
        "that turned the lens. In winter the supply boat came once a month, if the sea allowed it."
    )
    tok = embedder.tokenizer.encode([text])[0]
    assert len(tok) < embedder.plan().content
    framed = np.concatenate(([101], tok.ids, [102]))[None]
    single = embedder.backend.run(framed, np.ones_like(framed))[0].astype(np.float64)
    [res] = embedder.embed_documents([text], chunk_tokens=9, mode="late")
    assert len(res.chunk_vectors) >= 4
    expected = l2_normalize(np.stack([single[1 + s : 1 + e].mean(axis=0) for s, e in res.chunk_token_spans.tolist()]))
    np.testing.assert_allclose(res.chunk_vectors, expected, atol=2e-5)
    np.testing.assert_allclose(res.vector, l2_normalize(single.mean(axis=0)), atol=2e-5)
    np.testing.assert_allclose(embedder.embed([text])[0], res.vector, atol=2e-5)


# --- batching -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_tokens", [1, 17, 64, 1000])
@pytest.mark.parametrize("max_batch", [1, 3, 64])
@pytest.mark.parametrize("call_tokens", [0, 20])
def test_pack_by_length_respects_the_budget_and_sorts(max_tokens: int, max_batch: int, call_tokens: int) -> None:
    rng = np.random.default_rng(max_tokens * 100 + max_batch)
    for size in (0, 1, 5, 200):
        lengths = rng.integers(1, 70, size).tolist()
        batches = [b.tolist() for b in pack_by_length(lengths, max_tokens, max_batch, call_tokens)]
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(size)), "every item exactly once"
        assert [lengths[i] for i in flat] == sorted(lengths), "packed in length order"
        for b in batches:
            assert 1 <= len(b) <= max_batch
            assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= max_tokens, "over the token budget"
        if size > 1 and max_batch > 1 and max_tokens >= 2 * 70:
            assert len(batches) < size  # the budget allowed packing, and it packed


def _cost(lengths: list[int], batches: list[list[int]], call_tokens: int) -> int:
    return sum(call_tokens + len(b) * max(lengths[i] for i in b) for b in batches)


def _least_cost(ascending: list[int], max_tokens: int, max_batch: int, call_tokens: int) -> int:
    """Every way to cut the sorted lengths into contiguous batches that fit, tried: the cheapest total."""
    n = len(ascending)
    best = min(
        (
            _cost(ascending, batches, call_tokens)
            for mask in range(2 ** max(n - 1, 0))
            for cuts in ([0, *[k + 1 for k in range(n - 1) if mask >> k & 1], n],)
            for batches in ([list(range(a, b)) for a, b in pairwise(cuts)],)
            if all(len(b) == 1 or (len(b) <= max_batch and len(b) * ascending[b[-1]] <= max_tokens) for b in batches)
        ),
        default=0,
    )
    return best


@pytest.mark.parametrize("seed", range(40))
def test_pack_by_length_cuts_at_the_least_padded_tokens_plus_calls(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 40, int(rng.integers(1, 10))).tolist()
    max_tokens, max_batch, call_tokens = int(rng.integers(30, 200)), int(rng.integers(1, 6)), int(rng.integers(1, 30))
    batches = [b.tolist() for b in pack_by_length(lengths, max_tokens, max_batch, call_tokens)]
    assert [lengths[i] for b in batches for i in b] == sorted(lengths)
    least = _least_cost(sorted(lengths), max_tokens, max_batch, call_tokens)
    assert _cost(lengths, batches, call_tokens) == least


def test_queries_of_two_lengths_go_in_two_batches_not_one_padded() -> None:
    lengths = [30, 8] * 16  # padded together: 32 x 30 = 960 tokens for 608 real ones
    cut = [b.tolist() for b in pack_by_length(lengths, 8192, 64, call_tokens=20)]
    assert sorted(len(b) for b in cut) == [16, 16] and all(len({lengths[i] for i in b}) == 1 for b in cut)
    assert [len(b) for b in pack_by_length(lengths, 8192, 64, call_tokens=0)] == [32]  # the budget alone: one
    assert [len(b) for b in pack_by_length([8] * 40, 8192, 64, call_tokens=20)] == [40]  # equal lengths: one


def test_cutting_batches_by_cost_leaves_every_vector_as_it_was(
    make_fake: Callable[..., Embedder], text_of: Callable[..., str]
) -> None:
    emb = make_fake(window=40)
    budget_only = Embedder(emb.backend, emb.tokenizer, emb.manifest, emb.window, replace(emb.batching, call_tokens=0))
    texts = [text_of(n, seed) for seed, n in enumerate([3, 30, 4, 29, 5, 31, 2, 28, 90, 6] * 3)]
    assert emb.batching.call_tokens > 0
    calls: list[int] = []
    run = emb.backend.run
    emb.backend.run = lambda ids, mask: calls.append(ids.shape[0]) or run(ids, mask)  # type: ignore[method-assign]
    vectors = emb.embed(texts)
    del emb.backend.run
    assert len(calls) > 2  # the short and the long texts were cut apart
    np.testing.assert_allclose(vectors, budget_only.embed(texts), rtol=1e-5, atol=1e-6)
    for a, b in zip(emb.embed_documents(texts, chunk_tokens=7), budget_only.embed_documents(texts, chunk_tokens=7)):
        np.testing.assert_allclose(a.chunk_vectors, b.chunk_vectors, rtol=1e-5, atol=1e-6)


def test_results_come_back_in_the_callers_order(
    make_fake: Callable[..., Embedder], text_of: Callable[..., str]
) -> None:
    emb = make_fake(window=40, max_tokens=100)  # at most 2 full windows per call: many batches
    texts = [text_of(n, seed) for seed, n in enumerate([3, 150, 12, 40, 1, 75, 9, 300, 20, 33])]
    alone = np.stack([emb.embed([t])[0] for t in texts])
    docs_alone = [emb.embed_documents([t], chunk_tokens=11, mode="late")[0] for t in texts]
    order = np.random.default_rng(7).permutation(len(texts))
    shuffled = [texts[i] for i in order]
    np.testing.assert_allclose(emb.embed(shuffled), alone[order], rtol=1e-5, atol=1e-6)
    for i, res in zip(order, emb.embed_documents(shuffled, chunk_tokens=11, mode="late")):
        np.testing.assert_array_equal(res.chunk_spans, docs_alone[i].chunk_spans)
        np.testing.assert_allclose(res.chunk_vectors, docs_alone[i].chunk_vectors, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(res.vector, docs_alone[i].vector, rtol=1e-5, atol=1e-6)


def test_batches_stay_under_the_token_budget(make_fake: Callable[..., Embedder], text_of: Callable[..., str]) -> None:
    emb = make_fake(window=40, max_tokens=130)
    emb.embed([text_of(n, n) for n in (2, 5, 9, 14, 30, 31, 200, 3, 7)])
    for batch, seq in emb.backend.calls:  # type: ignore[attr-defined]
        assert batch == 1 or batch * seq <= 130
    assert any(batch > 1 for batch, _ in emb.backend.calls)  # type: ignore[attr-defined]
