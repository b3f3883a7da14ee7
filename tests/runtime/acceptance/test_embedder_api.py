"""The Python API next to sentence-transformers and fastembed: dimensions / normalize, batch_size and a progress
bar, lazy iterators, a short repr, snapped spans, typed and documented parameters, the model's name, fusion."""

from __future__ import annotations

import inspect
import json
import shutil
import typing
from pathlib import Path

import numpy as np
import pytest

from longvec.kernels import l2_normalize
from longvec.runtime import Embedder, InputError, SparseVector, fuse_scores, sparse_scores
from longvec.runtime.bundle.reader import Bundle
from longvec.runtime.cli.main import main
from longvec.runtime.embedder import MODES

TEXTS = [
    "The lighthouse keeper climbed the stairs every night to trim the wick.",
    "Rivers carry sand to the sea. " * 30,  # several windows of the fake's 64
    "A short one.",
    "Embeddings map text to vectors; similar meanings end up close together in the space.",
]


def test_dimensions_truncate_and_renormalize_where_the_model_normalizes(fake: Embedder) -> None:
    full = fake.embed(TEXTS)
    got = fake.embed(TEXTS, dimensions=6)
    assert got.shape == (4, 6)
    np.testing.assert_allclose(got, l2_normalize(full[:, :6]), atol=1e-6)
    docs = fake.embed_documents(TEXTS, chunk_tokens=8, dimensions=6)
    whole = fake.embed_documents(TEXTS, chunk_tokens=8)
    for d, w in zip(docs, whole):
        assert d.vector.shape == (6,) and d.chunk_vectors.shape == (len(w.chunk_spans), 6)
        np.testing.assert_allclose(d.chunk_vectors, l2_normalize(w.chunk_vectors[:, :6]), atol=1e-6)
    for bad in (0, fake.dim + 1, 2.5, True):
        with pytest.raises(InputError, match="dimensions"):
            fake.embed(TEXTS, dimensions=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", MODES)
def test_normalize_false_gives_the_vectors_before_normalization(fake: Embedder, mode: str) -> None:
    raw = fake.embed(TEXTS, normalize=False)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    np.testing.assert_allclose(l2_normalize(raw), fake.embed(TEXTS), atol=1e-6)
    docs = fake.embed_documents(TEXTS, chunk_tokens=8, mode=mode, normalize=False)  # type: ignore[arg-type]
    normed = fake.embed_documents(TEXTS, chunk_tokens=8, mode=mode)  # type: ignore[arg-type]
    for d, n in zip(docs, normed):
        np.testing.assert_allclose(l2_normalize(d.vector), n.vector, atol=1e-5)
        np.testing.assert_allclose(l2_normalize(d.chunk_vectors), n.chunk_vectors, atol=1e-5)


def test_batch_size_and_the_progress_bar_change_nothing_but_the_display(
    fake: Embedder, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = TEXTS * 3
    whole = fake.embed(texts)
    capsys.readouterr()
    np.testing.assert_allclose(fake.embed(texts, batch_size=5, show_progress_bar=True), whole, atol=1e-6)
    assert "12/12" in capsys.readouterr().err
    docs = fake.embed_documents(texts, chunk_tokens=8, batch_size=5)
    for d, w in zip(docs, fake.embed_documents(texts, chunk_tokens=8)):
        np.testing.assert_allclose(d.chunk_vectors, w.chunk_vectors, atol=1e-6)
    with pytest.raises(InputError, match="batch_size"):
        fake.embed(texts, batch_size=0)


def test_iterators_are_lazy_and_equal_to_the_list_calls(fake: Embedder) -> None:
    pulled = 0

    def corpus() -> typing.Iterator[str]:
        nonlocal pulled
        for t in TEXTS * 50:
            pulled += 1
            yield t

    vectors = fake.embed_iter(corpus(), batch_size=3)
    first = next(vectors)
    assert pulled == 3  # one batch read, not the corpus
    np.testing.assert_allclose(first, fake.embed(TEXTS[:1])[0], atol=1e-6)
    np.testing.assert_allclose(np.stack([first, *vectors]), fake.embed(TEXTS * 50), atol=1e-6)
    docs = list(fake.embed_documents_iter(iter(TEXTS), chunk_tokens=8, batch_size=2))
    for d, w in zip(docs, fake.embed_documents(TEXTS, chunk_tokens=8), strict=True):
        np.testing.assert_allclose(d.chunk_vectors, w.chunk_vectors, atol=1e-6)
    with pytest.raises(InputError, match=r"texts\[5\] is empty"):  # named by its place in the whole stream
        list(fake.embed_iter(iter([*TEXTS, "ok", " "]), batch_size=2))


def test_document_result_repr_is_short(fake: Embedder) -> None:
    [doc] = fake.embed_documents(TEXTS[1:2], chunk_tokens=8, mode="late")
    text = repr(doc)
    assert text.startswith("DocumentResult(mode='late', dim=16, chunks=") and len(text) < 120
    assert "array" not in text


def test_snap_widens_spans_that_cut_a_token(fake: Embedder) -> None:
    text = "Lighthouses guided ships safely."
    inside = [(2, 14)]  # starts inside "lighthouses", ends inside "guided"
    with pytest.raises(InputError, match="starts inside the token"):
        fake.embed_documents([text], spans=[inside])
    [doc] = fake.embed_documents([text], spans=[inside], snap=True)
    start, end = doc.chunk_spans[0].tolist()
    assert start == 0 and text[start:end].startswith("Lighthouses") and end >= 14
    [exact] = fake.embed_documents([text], spans=[[(start, end)]])
    np.testing.assert_allclose(doc.chunk_vectors, exact.chunk_vectors, atol=1e-6)


def test_parameters_are_typed_and_documented() -> None:
    hints = typing.get_type_hints(Embedder.embed_documents)
    assert set(typing.get_args(hints["mode"])) == set(MODES)
    assert set(typing.get_args(hints["chunking"])) == {"tokens", "sentences", "paragraphs", "spans"}
    for name in ("load", "embed", "embed_documents", "embed_iter", "embed_documents_iter", "count_tokens", "plan"):
        assert getattr(Embedder, name).__doc__, name
    assert Embedder.__doc__
    for name in ("load", "embed", "embed_documents"):
        doc = inspect.getdoc(getattr(Embedder, name)) or ""
        for param in inspect.signature(getattr(Embedder, name)).parameters:
            if param not in ("self", "cls"):
                assert f"{param}:" in doc, f"{name}: parameter {param} is not documented"


def test_the_model_name_old_bundles_and_new(
    bundle_dir: Path, tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bundle that records its name shows and serves it; an old one (no field) goes by its folder's name."""
    old = tmp_path / "all-MiniLM-L6-v2"
    shutil.copytree(tiny_bundle, old)
    raw = json.loads((old / "manifest.json").read_text())
    raw.pop("name", None)
    (old / "manifest.json").write_text(json.dumps(raw))
    assert Bundle.open(old).model_name == "all-MiniLM-L6-v2"
    with Embedder.load(old, threads=1) as emb:
        assert emb.name == "all-MiniLM-L6-v2" and "all-MiniLM-L6-v2" in repr(emb)
    assert main(["inspect", str(old)]) == 0
    assert capsys.readouterr().out.startswith("model        all-MiniLM-L6-v2  (weights ")
    raw["name"] = "sentence-transformers/all-MiniLM-L6-v2"
    (old / "manifest.json").write_text(json.dumps(raw))
    with Embedder.load(old, threads=1) as emb:
        assert emb.name == "sentence-transformers/all-MiniLM-L6-v2"
    with Embedder.load(bundle_dir, threads=1) as real:  # the MiniLM bundle of this run, old or new
        assert real.name in ("sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2")


def test_sparse_scores_are_bm25_with_idf_over_the_documents() -> None:
    docs = [
        SparseVector.from_weights({1: 1.0, 2: 0.5}),
        SparseVector.from_weights({2: 2.0}),
        SparseVector.from_weights({3: 1.0}),
    ]
    query = SparseVector.from_weights({2: 1.0, 9: 1.0})
    idf2 = np.log1p((3 - 2 + 0.5) / (2 + 0.5))  # term 2 is in two of three documents; term 9 in none
    np.testing.assert_allclose(sparse_scores([query], docs), [[0.5 * idf2, 2.0 * idf2, 0.0]], rtol=1e-6)


def test_fuse_scores_is_a_min_max_convex_combination() -> None:
    dense, sparse = np.array([0.2, 0.6, 0.4]), np.array([3.0, 0.0, 1.0])
    np.testing.assert_allclose(fuse_scores(dense, sparse, alpha=0.5), [0.5, 0.5, 0.5 * 0.5 + 0.5 / 3], rtol=1e-6)
    np.testing.assert_allclose(fuse_scores(dense, sparse, alpha=1.0), [0.0, 1.0, 0.5], rtol=1e-6)
    assert fuse_scores(np.stack([dense, dense]), np.stack([sparse, sparse])).shape == (2, 3)
    with pytest.raises(InputError, match="alpha"):
        fuse_scores(dense, sparse, alpha=1.5)
    with pytest.raises(InputError, match="same"):
        fuse_scores(dense, sparse[:2])


def test_a_default_prompt_applies_everywhere_and_prompt_empty_turns_it_off(fake: Embedder) -> None:
    """The fake with a bundle default prompt: windows leave room for it, and prompt="" gives exactly the vectors
    and windows of a bundle without prompts (long texts included, where the room matters)."""
    import dataclasses

    manifest = dataclasses.replace(fake.manifest, prompts={"query": "query: ", "none": ""}, default_prompt="query")
    prompted = Embedder(fake.backend, fake.tokenizer, manifest, fake.window, fake.batching)
    n_prompt = len(fake.tokenizer.ids("query:"))
    assert prompted.plan().content == fake.plan().content - n_prompt
    assert prompted.plan(prompt="").content == prompted.plan(prompt_name="none").content == fake.plan().content
    np.testing.assert_allclose(prompted.embed(TEXTS, prompt=""), fake.embed(TEXTS), atol=1e-6)
    np.testing.assert_allclose(prompted.embed(TEXTS), fake.embed(TEXTS, prompt="query: "), atol=1e-6)
    off = prompted.embed_documents(TEXTS, chunk_tokens=8, prompt="")
    for d, w in zip(off, fake.embed_documents(TEXTS, chunk_tokens=8)):
        assert d.n_windows == w.n_windows
        np.testing.assert_allclose(d.chunk_vectors, w.chunk_vectors, atol=1e-6)
    on = prompted.embed_documents(TEXTS, chunk_tokens=8)
    assert on[1].n_windows == fake.embed_documents(TEXTS[1:2], chunk_tokens=8, prompt="query: ")[0].n_windows
    with pytest.raises(InputError, match=r"unknown prompt_name 'q'; this bundle's prompts: 'none', 'query'"):
        prompted.embed(TEXTS, prompt_name="q")


def test_a_document_with_no_caller_spans(fake: Embedder) -> None:
    """spans=[[]]: no chunk vectors, a document vector still (found by schemathesis as a 500 under mode blend)."""
    for mode in ("late", "blend", "window_mean", "truncate"):
        [doc] = fake.embed_documents(TEXTS[1:2], spans=[[]], mode=mode)
        assert doc.chunk_vectors.shape == (0, fake.dim) and doc.vector.shape == (fake.dim,), mode
        np.testing.assert_allclose(np.linalg.norm(doc.vector), 1.0, rtol=1e-5)
    with pytest.raises(InputError, match=r"spans\[0\] is empty: mode 'naive' pools the document from its chunks"):
        fake.embed_documents(TEXTS[1:2], spans=[[]], mode="naive")
