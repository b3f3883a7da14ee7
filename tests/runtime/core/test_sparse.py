"""Sparse lexical vectors: term ids pinned, weights as the BM25 formula says, chunk vectors from chunk text only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longvec.runtime import Embedder
from longvec.runtime.core import sparse as sp
from longvec.runtime.core.sparse import SparseEncoder, SparseVector, murmur3_32, term_id, terms
from longvec.runtime.errors import BackendUnavailable, InputError

TEXT = (
    "The Amazon rainforest covers much of the Amazon basin of South America. The majority of the forest is "
    "contained within Brazil, with 60% of the rainforest, followed by Peru with 13%.\n\n"
    "Deforestation is the conversion of forested areas to non-forested areas. The main sources of deforestation "
    "in the Amazon are human settlement and development of the land."
)


def test_murmur3_matches_reference_vectors() -> None:
    # Published MurmurHash3 x86_32 test vectors (and mmh3.hash(..., signed=False) agrees).
    assert murmur3_32(b"", 0) == 0
    assert murmur3_32(b"", 1) == 0x514E28B7
    assert murmur3_32(b"hello", 0) == 0x248BFA47
    assert murmur3_32(b"abc", 0) == 0xB3DD93FA
    assert murmur3_32(b"abcd", 0x9747B28C) == 0xF0478627
    assert murmur3_32(b"The quick brown fox jumps over the lazy dog", 0) == 0x2E4FF723


def test_golden_term_ids() -> None:
    # abs(mmh3.hash(term)): pinned forever; a change here breaks every index built with longvec or fastembed.
    golden = {
        "rainforest": 737715138,
        "amazon": 373664883,
        "univers": 482863870,
        "pass": 390204765,
        "key": 493065660,
        "日本語": 1515949417,
        "naïv": 756638508,
    }
    assert {t: term_id(t) for t in golden} == golden


def test_terms_lowercase_drop_stopwords_and_stem() -> None:
    assert terms("The Universities of the Amazon's rainforests, re-opened!") == [
        "univers",
        "amazon",
        "rainforest",
        "open",
    ]
    assert terms("x" * 41 + " ok") == ["ok"]  # over-long tokens are dropped, as fastembed does


def test_matches_fastembed_qdrant_bm25_reference_output() -> None:
    # Output of fastembed's Qdrant/bm25 for this text, as published in chromadb's BM25 tests: 12 terms of tf 1
    # in a 12-term document, so every weight is 2.2 / (1 + 1.2 * (0.25 + 0.75 * 12 / 256)).
    vec = SparseEncoder().document("Usain Bolt's top speed reached ~27.8 mph (44.72 km/h)")
    expected = [230246813, 395514983, 458027949, 488165615, 729632045, 734978415]
    expected += [997512866, 1114505193, 1381820790, 1501587190, 1649421877, 1837285388]
    assert vec.indices.tolist() == expected
    np.testing.assert_allclose(vec.values, 1.6391153, atol=1e-6)


def test_bm25_weights_follow_the_formula() -> None:
    enc = SparseEncoder(k1=1.5, b=0.5, avg_len=4.0)
    vec = enc.document("forest forest forest river")  # 4 terms: tf(forest)=3, tf(river)=1, len/avg_len=1
    weights = dict(zip(vec.indices.tolist(), vec.values.tolist()))
    assert weights[term_id("forest")] == pytest.approx(3 * 2.5 / (3 + 1.5))
    assert weights[term_id("river")] == pytest.approx(1 * 2.5 / (1 + 1.5))


def test_query_weights_are_one_per_distinct_term() -> None:
    q = SparseEncoder().query("Rainforest? rainforests of the Amazon")
    assert q.indices.tolist() == sorted({term_id("rainforest"), term_id("amazon")})
    assert q.values.tolist() == [1.0, 1.0]


def test_empty_and_stopword_only_text_give_empty_vectors() -> None:
    enc = SparseEncoder()
    for text in ("", "   ", "the of and, to! It is.", "¿?¡!"):
        doc, query = enc.document(text), enc.query(text)
        assert len(doc) == 0 and len(query) == 0
        assert doc.indices.dtype == np.int64 and doc.values.dtype == np.float32


@settings(max_examples=40, deadline=None)
@given(st.text(max_size=200))
def test_weights_positive_finite_indices_sorted_unique(text: str) -> None:
    vec = SparseEncoder().document(text)
    assert vec.indices.dtype == np.int64 and vec.values.dtype == np.float32
    assert np.all(np.diff(vec.indices) > 0)
    assert np.all((vec.indices >= 0) & (vec.indices <= 2**31))
    assert np.all(np.isfinite(vec.values)) and np.all(vec.values > 0)


def test_sparse_vector_validates() -> None:
    with pytest.raises(InputError):
        SparseVector(np.array([3, 1]), np.array([1.0, 1.0]))
    with pytest.raises(InputError):
        SparseVector(np.array([1, 1]), np.array([1.0, 1.0]))
    with pytest.raises(InputError):
        SparseVector(np.array([1]), np.array([1.0, 2.0]))
    assert SparseVector(np.array([1, 5]), np.array([0.5, 2.0])).to_dict() == {"indices": [1, 5], "values": [0.5, 2.0]}


def test_chunk_sparse_comes_from_the_chunk_text_only(fake: Embedder) -> None:
    [res] = fake.embed_documents([TEXT], chunk_tokens=16, sparse=True)
    assert res.chunk_sparse is not None and len(res.chunk_sparse) == len(res.chunk_spans) > 3
    for (s, e), vec in zip(res.chunk_spans.tolist(), res.chunk_sparse):
        ref = SparseEncoder().document(TEXT[s:e])
        np.testing.assert_array_equal(vec.indices, ref.indices)
        np.testing.assert_array_equal(vec.values, ref.values)
    # The same chunk text inside another document gets the same sparse vector (its dense vector may differ).
    prefix = "An unrelated opening about rivers, fish and boats. " * 5
    [other] = fake.embed_documents(
        [prefix + TEXT], spans=[[(len(prefix) + s, len(prefix) + e) for s, e in res.chunk_spans.tolist()]], sparse=True
    )
    assert other.chunk_sparse is not None
    for a, b in zip(res.chunk_sparse, other.chunk_sparse):
        np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_array_equal(a.values, b.values)


def test_stopword_only_chunk_gives_empty_vector_not_error(fake: Embedder) -> None:
    text = "It is all of them, and so on. Rainforest canopy height."
    [res] = fake.embed_documents([text], spans=[[(0, 29), (30, len(text))]], sparse=True)
    assert res.chunk_sparse is not None
    assert len(res.chunk_sparse[0]) == 0
    assert len(res.chunk_sparse[1]) == 3
    assert fake.embed_documents([text])[0].chunk_sparse is None  # only when asked for


def test_embed_sparse_queries_matches_encoder(fake: Embedder) -> None:
    queries = ["Where is the Amazon rainforest?", "", "of the"]
    got = fake.embed_sparse_queries(queries)
    assert [v.indices.tolist() for v in got] == [SparseEncoder().query(q).indices.tolist() for q in queries]
    assert len(got[1]) == 0 and len(got[2]) == 0


_CHILD = """
import json, sys
from longvec.runtime.core.sparse import SparseEncoder
enc = SparseEncoder()
print(json.dumps([enc.document(t).to_dict() for t in json.loads(sys.stdin.read())]))
"""


def test_identical_across_calls_and_processes() -> None:
    texts = [TEXT, TEXT[:120], "Déjà vu: naïve façade, 東京 and Zürich in 1999."]
    here = [SparseEncoder().document(t).to_dict() for t in texts]
    assert here == [SparseEncoder().document(t).to_dict() for t in texts]
    for seed in ("1", "2"):  # different str hash seeds: ids must not depend on Python's hash()
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", _CHILD], input=json.dumps(texts), env=env, capture_output=True, text=True, check=True
        )
        assert json.loads(out.stdout) == here


def test_thread_safe() -> None:
    texts = [f"{TEXT} variation {i} organizations universities generously" for i in range(40)]
    expected = [SparseEncoder().document(t).to_dict() for t in texts]
    sp._stem.cache_clear()  # make every thread run the stemmer, not the cache
    results: dict[int, dict[str, list[float]]] = {}

    def work(i: int) -> None:
        results[i] = SparseEncoder().document(texts[i]).to_dict()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i] for i in range(len(texts))] == expected


def test_snowball_3_stemmer_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    class Snowball3:  # what snowballstemmer 3.x's English stemmer returns for the probe word
        def stemWord(self, word: str) -> str:
            return "organiz"

    import snowballstemmer.english_stemmer as english

    monkeypatch.setattr(english, "EnglishStemmer", Snowball3)
    monkeypatch.setattr(sp, "_local", threading.local())
    with pytest.raises(BackendUnavailable, match="Snowball 2"):
        sp.require_stemmer()


def test_missing_stemmer_is_a_clear_error_before_encoding(fake: Embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "snowballstemmer.english_stemmer", None)  # import fails
    monkeypatch.setattr(sp, "_local", threading.local())
    sp._stem.cache_clear()
    calls = []
    monkeypatch.setattr(fake.backend, "run", lambda *a: calls.append(a))
    with pytest.raises(BackendUnavailable, match=r"longvec\[sparse\]"):
        fake.embed_documents([TEXT], sparse=True)
    assert calls == []
    sp._stem.cache_clear()
