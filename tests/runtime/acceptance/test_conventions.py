"""The conventions people reach for, as sentence-transformers and fastembed define them: a single string where a
list goes, `encode` with sentence-transformers' arguments, and `similarity`."""

from __future__ import annotations

import numpy as np
import pytest

from longvec.runtime import Embedder, InputError, similarity

TEXTS = ["The keeper trimmed the wick.", "Sand drifts along the coast.", "Vectors of similar texts are close."]


def test_a_single_string_gives_one_vector(fake: Embedder) -> None:
    whole = fake.embed(TEXTS)
    one = fake.embed(TEXTS[0])  # SentenceTransformer.encode("text") -> [dim]
    assert one.shape == (fake.dim,) and one.dtype == np.float32
    np.testing.assert_allclose(one, whole[0], atol=1e-6)
    assert fake.embed(TEXTS[1], prompt="query: ", dimensions=8).shape == (8,)
    lazy = list(fake.embed_iter(TEXTS[2]))  # fastembed's TextEmbedding.embed("text") yields one vector
    assert len(lazy) == 1
    np.testing.assert_allclose(lazy[0], whole[2], atol=1e-6)
    with pytest.raises(InputError):
        fake.embed("   ")


def test_encode_takes_sentence_transformers_arguments(make_fake: type) -> None:
    raw = make_fake(normalize=False)  # a model without a Normalize module
    plain = raw.embed(TEXTS)
    np.testing.assert_allclose(raw.encode(TEXTS), plain, atol=1e-6)  # normalize_embeddings=False: as the model does
    unit = raw.encode(TEXTS, normalize_embeddings=True, batch_size=2)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(unit, plain / np.linalg.norm(plain, axis=1, keepdims=True), atol=1e-5)
    assert raw.encode(TEXTS[0]).shape == (raw.dim,)
    assert raw.encode(TEXTS, truncate_dim=4, normalize_embeddings=True).shape == (3, 4)
    listed = raw.encode(TEXTS, convert_to_numpy=False)
    assert isinstance(listed, list) and len(listed) == 3 and listed[0].shape == (raw.dim,)
    np.testing.assert_allclose(raw.encode(TEXTS, prompt="query: "), raw.embed(TEXTS, prompt="query: "), atol=1e-6)
    for unsupported in ({"convert_to_tensor": True}, {"precision": "int8"}, {"output_value": "token_embeddings"},
                        {"device": "cuda"}):  # fmt: skip
        with pytest.raises(InputError, match="float32 sentence embeddings"):
            raw.encode(TEXTS, **unsupported)


def test_similarity_is_cosine_like_sentence_transformers_cos_sim(fake: Embedder) -> None:
    a, b = fake.embed(TEXTS[:2]), fake.embed(TEXTS)
    scores = fake.similarity(a, b)
    assert scores.shape == (2, 3) and scores.dtype == np.float32
    want = (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (b / np.linalg.norm(b, axis=1, keepdims=True)).T
    np.testing.assert_allclose(scores, want, atol=1e-6)
    np.testing.assert_allclose(np.diag(similarity(b, b)), 1.0, atol=1e-6)
    assert similarity(a[0], b).shape == (1, 3)  # a [dim] vector is one row
    assert similarity(np.zeros(fake.dim), b).tolist() == [[0.0, 0.0, 0.0]]
    with pytest.raises(InputError, match="similarity needs"):
        similarity(a, b[:, :4])
    torch = pytest.importorskip("torch")
    util = pytest.importorskip("sentence_transformers.util")
    theirs = util.cos_sim(torch.from_numpy(a * 3.0), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(similarity(a * 3.0, b), theirs, atol=1e-6)
