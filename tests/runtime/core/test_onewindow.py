"""The one-window path of `embed` (runtime/core/onewindow.py): a single text that fits one window goes to the
encoder in one call of exactly its framed length, and its vector is the one the general pipeline gives (the path
every text took before), for the real model and for every pooling mode, prompt rule and kind of backend."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest

from longvec.kernels import l2_normalize
from longvec.kernels.pool_weights import own_rows
from longvec.runtime import Embedder
from longvec.runtime.backends.fake import FakeBackend
from longvec.runtime.bundle.manifest import PoolingConfig
from longvec.runtime.core.pipeline import Batching, Pipeline, PipelineConfig, TokenSequence
from longvec.runtime.core.prompts import prompt_ids, prompted_tokens
from longvec.runtime.errors import InputError

QUERY = "How did keepers keep the lamp burning through the night?"


def pipeline_vectors(emb: Embedder, texts: list[str], prompt: str | None = None) -> np.ndarray:
    """Each text through the general pipeline (windows, packing, weight rows, running sums), normalized as the
    model does: what `embed` returned for a single short text before the one-window path. Built from the core
    modules the embedder composes, on the embedder's own backend and batching (no private attribute)."""
    text = emb.resolve_prompt(prompt)
    plan = emb.plan(prompt=prompt)
    pipeline = Pipeline(emb.backend, PipelineConfig(emb.manifest.framing, emb.manifest.pooling, emb.batching))
    ids = prompt_ids(emb.tokenizer, text)
    rows = []
    for t in texts:
        [tokens] = prompted_tokens(emb.tokenizer, [t], text, ids)
        [encoded] = pipeline.run([TokenSequence(tokens.ids)], plan, ids)
        rows.append(encoded.pooled)
    pooled = np.stack(rows)
    return l2_normalize(pooled) if emb.manifest.pooling.normalize else pooled.astype(np.float32)


def text_of(emb: Embedder, n_tokens: int) -> str:
    text = " ".join(["harbor", "light", "keeper", "stone"] * n_tokens)
    tokens = emb.tokenizer.encode([text])[0]
    return text[: int(tokens.offsets[n_tokens - 1, 1])]


def test_real_model_one_window_matches_the_pipeline(embedder: Embedder, encoder_calls: list[tuple[int, ...]]) -> None:
    content = embedder.plan().content
    texts = [QUERY, "a", text_of(embedder, content - 1), text_of(embedder, content)]
    got = np.concatenate([embedder.embed([t]) for t in texts])
    # one encoder call per text, exactly its framed length: no padding, no second window
    framing = len(embedder.manifest.framing.prefix_ids) + len(embedder.manifest.framing.suffix_ids)
    lengths = [len(t) + framing for t in embedder.tokenizer.encode(texts)]
    assert encoder_calls == [(1, n) for n in lengths]
    want = pipeline_vectors(embedder, texts)
    assert float((got * want).sum(axis=1).min()) >= 0.99999
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_real_model_text_past_one_window_takes_the_pipeline(
    embedder: Embedder, encoder_calls: list[tuple[int, ...]]
) -> None:
    content = embedder.plan().content
    text = text_of(embedder, content + 1)
    got = embedder.embed([text])
    assert len(encoder_calls) == 1 and encoder_calls[0][0] == 2  # two windows, batched by the pipeline
    np.testing.assert_allclose(got, pipeline_vectors(embedder, [text]), atol=1e-6)


def test_real_model_states_graph_gives_the_same_vector(bundle_dir: object, embedder: Embedder) -> None:
    with Embedder.load(bundle_dir, threads=2, pooled=False) as states:  # type: ignore[arg-type]
        assert not states.backend.capabilities.pools
        got = states.embed([QUERY])
    assert float((got * embedder.embed([QUERY])).sum()) >= 0.99999


def explicit(backend: FakeBackend, framed: np.ndarray, mode: str, begin: int) -> np.ndarray:
    """The model's pooling of one window, written out on its token states."""
    states = backend.run(framed[None], np.ones_like(framed)[None])[0]
    if mode == "mean":
        return states[begin:].mean(axis=0)
    return states[0] if mode == "cls" else states[-1]


@pytest.mark.parametrize("pooled", [True, False])
@pytest.mark.parametrize("mode", ["mean", "cls", "last"])
@pytest.mark.parametrize("include_prompt", [True, False])
@pytest.mark.parametrize("prompt", [None, "query: "])
def test_one_window_matches_pipeline_and_written_out_pooling(
    make_fake: Callable[..., Embedder], pooled: bool, mode: str, include_prompt: bool, prompt: str | None
) -> None:
    base = make_fake(pooling=mode, normalize=False)
    manifest = replace(base.manifest, pooling=PoolingConfig(mode, False, include_prompt))  # type: ignore[arg-type]
    backend = FakeBackend(hidden_size=base.dim, pooled=pooled, record=True)
    emb = Embedder(backend, base.tokenizer, manifest, base.window, Batching())
    texts = [QUERY, "lamp", text_of(emb, emb.plan(prompt=prompt).content)]
    for text in texts:
        backend.inputs.clear()
        got = emb.embed([text], prompt=prompt)
        [(framed, mask)] = backend.inputs  # one call, one row, exactly the framed text
        prompt_text = emb.resolve_prompt(prompt)
        ids_of_prompt = prompt_ids(emb.tokenizer, prompt_text)
        [content] = prompted_tokens(emb.tokenizer, [text], prompt_text, ids_of_prompt)
        want_ids = np.concatenate(([101], ids_of_prompt, content.ids, [102])).astype(np.int64)
        np.testing.assert_array_equal(framed, want_ids[None])
        assert mask.all()
        begin = 0 if include_prompt or not ids_of_prompt else 1 + len(ids_of_prompt)
        np.testing.assert_allclose(got[0], explicit(backend, want_ids, mode, begin), atol=1e-5)
        np.testing.assert_allclose(got, pipeline_vectors(emb, [text], prompt), atol=1e-6)


def test_several_texts_still_share_the_pipeline_batches(fake: Embedder) -> None:
    texts = [QUERY, "lamp", "the keeper lit the lamp at dusk"]
    backend = fake.backend
    assert isinstance(backend, FakeBackend)
    before = len(backend.calls)
    together = fake.embed(texts)
    assert len(backend.calls) - before == 1  # one packed batch, not one call per text
    alone = np.concatenate([fake.embed([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-6)


def test_options_still_apply_to_a_single_text(fake: Embedder) -> None:
    whole = fake.embed([QUERY], normalize=False)
    cut = fake.embed([QUERY], dimensions=4)
    np.testing.assert_allclose(cut[0], whole[0, :4] / np.linalg.norm(whole[0, :4]), atol=1e-6)
    with pytest.raises(InputError, match="batch_size"):
        fake.embed([QUERY], batch_size=0)
    with pytest.raises(InputError, match=r"texts\[0\] has no tokens"):
        fake.embed(["\u200b"])


def test_own_rows_mean_cls_last() -> None:
    rows = own_rows(np.array([0, 2, 0, 0]), np.array([4, 5, 3, 3]), 6, np.array(["mean", "mean", "cls", "last"]))
    np.testing.assert_allclose(rows[0], [0.25, 0.25, 0.25, 0.25, 0, 0])
    np.testing.assert_allclose(rows[1], [0, 0, 1 / 3, 1 / 3, 1 / 3, 0], rtol=1e-6)
    np.testing.assert_array_equal(rows[2], [1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(rows[3], [0, 0, 1, 0, 0, 0])
    assert rows.dtype == np.float32
    np.testing.assert_array_equal(own_rows(np.array([1]), np.array([3]), 4), [[0, 0.5, 0.5, 0]])
