"""mode="blend": each chunk vector is the normalized sum of its naive and its late vector (both normalized)."""

from __future__ import annotations

import numpy as np

from longvec.runtime import Embedder

TEXT = (
    "The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, a region in "
    "France. They were descended from Norse raiders and pirates from Denmark, Iceland and Norway who, under their "
    "leader Rollo, agreed to swear fealty to King Charles III of West Francia. Through generations of "
    "assimilation and mixing with the native Frankish and Roman-Gaulish populations, their descendants would "
    "gradually merge with the Carolingian-based cultures of West Francia."
)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _states(emb: Embedder, ids: np.ndarray) -> np.ndarray:
    """Token states of [CLS] ids [SEP], straight from the encoder: no windows, batching or stitching."""
    framed = np.concatenate(([101], ids, [102])).astype(np.int64)[None, :]
    return emb.backend.run(framed, np.ones_like(framed))[0]


def test_blend_of_a_short_document_is_the_normalized_sum(embedder: Embedder) -> None:
    [res] = embedder.embed_documents([TEXT], mode="blend", chunk_tokens=24)
    ids = embedder.tokenizer.encode([TEXT])[0].ids
    assert len(ids) + 2 <= embedder.window and len(res.chunk_vectors) >= 4
    whole = _states(embedder, ids)
    expected = []
    for s, e in res.chunk_token_spans.tolist():
        late = whole[1 + s : 1 + e].mean(axis=0)  # the chunk's tokens in the context of the whole text
        naive = _states(embedder, ids[s:e]).mean(axis=0)  # the chunk encoded alone, mean-pooled as ST does
        expected.append(_unit(_unit(late) + _unit(naive)))
    np.testing.assert_allclose(res.chunk_vectors, np.stack(expected), atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(res.chunk_vectors, axis=1), 1.0, atol=1e-5)
    # the document vector is the whole text pooled, as for "late"
    np.testing.assert_allclose(res.vector, _unit(whole.mean(axis=0)), atol=2e-5)


def test_blend_of_a_long_document_combines_the_late_and_naive_results(fake: Embedder) -> None:
    text = " ".join([TEXT] * 4)  # several windows of the fake model
    kw = {"chunk_tokens": 20, "window": 48}
    [blend] = fake.embed_documents([text], mode="blend", **kw)
    [late] = fake.embed_documents([text], mode="late", **kw)
    [naive] = fake.embed_documents([text], mode="naive", **kw)
    assert blend.n_windows > 2
    np.testing.assert_array_equal(blend.chunk_spans, late.chunk_spans)
    np.testing.assert_allclose(blend.chunk_vectors, _unit(late.chunk_vectors + naive.chunk_vectors), atol=1e-5)
    np.testing.assert_allclose(blend.vector, late.vector, atol=1e-6)
