"""`embed()` of a long document with the real model is the whole document, not a truncation."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from longvec.runtime import Embedder


def edited(text: str, where: str) -> str:
    replacement = "Then the volcano erupted and covered the whole town in grey ash."
    if where == "end":
        return text[: text.rindex(". ") + 2] + replacement
    return replacement + text[text.index(". ") + 1 :]


def check_whole_document(text: str, embedder: Embedder, n_tokens: int, stride: int | None, edit_start: bool) -> None:
    assert embedder.count_tokens([text])[0] > 0.95 * n_tokens
    texts = [text, edited(text, "end")] + ([edited(text, "start")] if edit_start else [])
    vectors = embedder.embed(texts, stride=stride)
    assert np.all(np.isfinite(vectors)) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # onnxruntime on CPU is deterministic, so any difference is the edit; a truncating embedder would give 0
    end_change = float(np.abs(vectors[1] - vectors[0]).max())
    assert end_change > 1e-5, "editing the last sentence did not change the vector: the end was not embedded"
    if edit_start:
        start_change = float(np.abs(vectors[2] - vectors[0]).max())
        assert 0.2 < end_change / start_change < 5.0, "the end of the document weighs like its start"


def test_embed_20k_tokens_sees_the_last_sentence(embedder: Embedder, long_text: Callable[[Embedder, int], str]) -> None:
    # windows side by side (stride = content) keep this under ~30 s on 2 shared cores
    check_whole_document(long_text(embedder, 20_000), embedder, 20_000, embedder.plan().content, edit_start=False)


@pytest.mark.slow
def test_embed_50k_tokens_sees_the_last_sentence_as_much_as_the_first(
    embedder: Embedder, long_text: Callable[[Embedder, int], str]
) -> None:
    check_whole_document(long_text(embedder, 50_000), embedder, 50_000, None, edit_start=True)
