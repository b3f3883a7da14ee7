"""Embedder.search: one call from a question to the passages, dense fused with BM25 over the same chunks."""

from __future__ import annotations

import numpy as np
import pytest

from longvec.runtime import Embedder, Hit, InputError, fuse_scores, sparse_scores
from longvec.runtime.core.search import FUSIONS, LexicalIndex, fuse, snap_to_sentences

DOCS = [
    "Lighthouses were lit with wood, then coal, then whale oil. The Fresnel lens of 1822 bent the light into a "
    "beam seen from twenty miles. Keepers trimmed the wicks every four hours through the night. "
    "In fog, a bell or a horn warned ships instead of the light. " * 3,
    "The honey bee dances to tell its sisters where flowers are. A waggle run points along the sun's direction; "
    "its length says how far to fly. Drones do not forage. " * 3,
    "Tides rise and fall twice a day because the moon pulls the oceans. Spring tides come at new and full moon. ",
]


def test_one_query_gives_hits_with_exact_spans(embedder: Embedder) -> None:
    hits = embedder.search("Who tells the hive where the flowers are?", DOCS, top_k=3, chunk_tokens=32)
    assert isinstance(hits, list) and len(hits) == 3 and all(isinstance(h, Hit) for h in hits)
    assert hits[0].document == 1
    for h in hits:
        assert h.text == DOCS[h.document][h.start : h.end]
        assert h.lexical is not None and h.snippet is None
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_a_list_of_queries_gives_one_list_each_and_equals_one_by_one(embedder: Embedder) -> None:
    queries = ["When are spring tides?", "What lens made the beam?", "bees"]
    together = embedder.search(queries, DOCS, top_k=4, chunk_tokens=32)
    assert len(together) == 3
    for q, hits in zip(queries, together):
        alone = embedder.search(q, DOCS, top_k=4, chunk_tokens=32)
        assert [(h.document, h.start, h.end, h.text) for h in hits] == [
            (h.document, h.start, h.end, h.text) for h in alone
        ]
        assert np.allclose([h.score for h in hits], [h.score for h in alone], atol=1e-5)  # batched query rows
    assert together[0][0].document == 2 and together[1][0].document == 0


def test_embedded_documents_give_the_same_hits_as_texts(embedder: Embedder) -> None:
    q = "How often were the wicks trimmed?"
    from_texts = embedder.search(q, DOCS, top_k=5, chunk_tokens=32)
    results = embedder.embed_documents(DOCS, chunk_tokens=32, sparse=True)
    from_results = embedder.search(q, results, top_k=5)
    assert [(h.document, h.start, h.end) for h in from_results] == [(h.document, h.start, h.end) for h in from_texts]
    assert np.allclose([h.score for h in from_results], [h.score for h in from_texts], atol=1e-6)
    assert all(h.text is None for h in from_results)
    # without sparse vectors, the texts give them (and hit.text); without either, hybrid is refused, not dense
    plain = embedder.embed_documents(DOCS, chunk_tokens=32)
    with_texts = embedder.search(q, plain, top_k=5, texts=DOCS)
    assert [(h.document, h.start, h.score) for h in with_texts] == [(h.document, h.start, h.score) for h in from_texts]
    assert with_texts[0].text == from_texts[0].text
    with pytest.raises(InputError, match="sparse"):
        embedder.search(q, plain)


def test_scores_are_the_documented_fusion(embedder: Embedder) -> None:
    q = "a horn in fog"
    results = embedder.embed_documents(DOCS, chunk_tokens=32, sparse=True)
    vectors = np.concatenate([r.chunk_vectors for r in results])
    sparse = [v for r in results for v in r.chunk_sparse or []]
    dense = vectors @ embedder.embed([q])[0]
    lexical = sparse_scores(embedder.embed_sparse_queries([q]), sparse)[0]
    n = len(vectors)
    # the default: z-score at alpha 0.5 (each score standardized over the chunks searched)
    z = lambda x: (x - x.mean()) / x.std()  # noqa: E731
    default = embedder.search(q, results, top_k=n)
    assert np.allclose(sorted(h.score for h in default), sorted(0.5 * z(dense) + 0.5 * z(lexical)), atol=1e-4)
    fused = fuse_scores(dense, lexical, alpha=0.5)
    hits = embedder.search(q, results, top_k=n, fusion="minmax")
    assert len(hits) == n
    order = np.lexsort((np.arange(n), -fused))
    flat = [int(np.flatnonzero(np.cumsum([len(r.chunk_spans) for r in results]) > i)[0]) for i in order]
    assert [h.document for h in hits] == flat
    assert np.allclose([h.score for h in hits], fused[order], atol=1e-5)
    assert np.allclose([h.dense for h in hits], dense[order], atol=1e-5)
    assert np.allclose([h.lexical for h in hits], lexical[order], rtol=1e-5)
    only = embedder.search(q, results, top_k=3, hybrid=False)
    assert np.allclose([h.score for h in only], np.sort(dense)[::-1][:3], atol=1e-5)
    assert all(h.lexical is None and h.score == h.dense for h in only)


def test_lexical_index_equals_sparse_scores(embedder: Embedder) -> None:
    results = embedder.embed_documents(DOCS, chunk_tokens=16, sparse=True)
    chunks = [v for r in results for v in r.chunk_sparse or []]
    queries = embedder.embed_sparse_queries(["whale oil lens", "moon tides", "the of and", "waggle dance bees"])
    assert np.allclose(LexicalIndex(chunks).scores(queries), sparse_scores(queries, chunks), rtol=1e-6, atol=1e-6)


def test_fusions_rank_as_defined() -> None:
    dense = np.array([[0.9, 0.5, 0.1, 0.4]])
    lexical = np.array([[0.0, 3.0, 1.0, 2.0]])
    assert np.allclose(fuse(dense, lexical, "minmax", 0.3), fuse_scores(dense, lexical, 0.3))
    z = fuse(dense, lexical, "zscore", 0.5)
    zd = (dense - dense.mean()) / dense.std()
    zs = (lexical - lexical.mean()) / lexical.std()
    assert np.allclose(z, 0.5 * zd + 0.5 * zs)
    rrf = fuse(dense, lexical, "rrf", 0.5)  # ranks: dense 1,2,4,3; lexical 4,1,3,2
    expect = 0.5 / (60 + np.array([1, 2, 4, 3])) + 0.5 / (60 + np.array([4, 1, 3, 2]))
    assert np.allclose(rrf, expect)
    assert set(FUSIONS) == {"minmax", "zscore", "rrf"}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"top_k": 0}, "top_k"),
        ({"fusion": "sum"}, "fusion"),
        ({"alpha": 1.5}, "alpha"),
        ({"documents": "one string"}, "single str"),
        ({"documents": []}, "empty"),
        ({"query": 3}, "query"),
        ({"query": ""}, "empty"),
    ],
)
def test_bad_input_is_a_clear_error(embedder: Embedder, kwargs: dict, match: str) -> None:
    args = {"query": "bees", "documents": DOCS} | kwargs
    with pytest.raises(InputError, match=match):
        embedder.search(args.pop("query"), args.pop("documents"), **args)


def test_mixed_documents_are_refused(embedder: Embedder) -> None:
    [res] = embedder.embed_documents(DOCS[:1], sparse=True)
    with pytest.raises(InputError, match="mix"):
        embedder.search("bees", [DOCS[0], res])  # type: ignore[list-item]


def test_snap_widens_for_display_only(embedder: Embedder) -> None:
    plain = embedder.search("How far does the bee fly?", DOCS, top_k=3, chunk_tokens=16)
    snapped = embedder.search("How far does the bee fly?", DOCS, top_k=3, chunk_tokens=16, snap=True)
    for a, b in zip(plain, snapped):
        assert (a.document, a.start, a.end, a.score) == (b.document, b.start, b.end, b.score)
        assert b.snippet is not None
        lo, hi = b.snippet
        assert lo <= b.start and b.end <= hi
        shown = DOCS[b.document][lo:hi]
        assert shown[0].isupper() and shown.rstrip()[-1] in ".!?"


def test_snap_to_sentences() -> None:
    text = "First one. Second sentence here. Third bit!\nFourth"
    assert snap_to_sentences(text, 15, 25) == (11, 32)
    assert snap_to_sentences(text, 0, 5) == (0, 10)
    assert text[slice(*snap_to_sentences(text, 46, 48))] == "Fourth"
    assert snap_to_sentences("x" * 1000 + " a. b", 500, 501, max_chars=10) == (500, 501)  # no boundary near
