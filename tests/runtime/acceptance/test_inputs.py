"""What callers pass in: empty batches work, unembeddable items fail up front with the item's index."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from longvec.runtime import Embedder, InputError


def _methods(emb: Embedder) -> list[Callable[[Any], Any]]:
    return [emb.embed, emb.embed_documents]


def test_empty_list_gives_an_empty_matrix(embedder: Embedder, encoder_calls: list[tuple[int, ...]]) -> None:
    out = embedder.embed([])
    assert out.shape == (0, embedder.dim) and out.dtype == np.float32
    assert embedder.embed(()).shape == (0, embedder.dim)
    assert embedder.embed_documents([]) == []
    assert encoder_calls == []


@pytest.mark.parametrize("blank", ["", " ", "\n\t  \r\n", "\u3000"])
def test_blank_text_is_an_input_error(embedder: Embedder, encoder_calls: list[tuple[int, ...]], blank: str) -> None:
    for method in _methods(embedder):
        with pytest.raises(InputError, match=r"texts\[1\] is empty or whitespace"):
            method(["fine", blank, "also fine"])
    assert encoder_calls == []  # refused before any encoding


def test_text_without_tokens_is_an_input_error(embedder: Embedder) -> None:
    assert embedder.count_tokens(["\u200b"]) == [0]  # not whitespace to Python, dropped by the tokenizer
    for method in _methods(embedder):
        with pytest.raises(InputError, match=r"texts\[0\] has no tokens"):
            method(["\u200b"])


@pytest.mark.parametrize("item", [3, None, b"bytes", ["nested"], 1.5])
def test_non_str_item_is_a_type_error_naming_its_index(
    embedder: Embedder, encoder_calls: list[tuple[int, ...]], item: object
) -> None:
    for method in _methods(embedder):
        with pytest.raises(TypeError, match=rf"texts\[2\] is {type(item).__name__}"):
            method(["a", "b", item])
    assert encoder_calls == []


@pytest.mark.parametrize("text", ["\ud800", "ok \udfff then", "tail \ud83d"])
def test_lone_surrogate_is_an_input_error(embedder: Embedder, text: str) -> None:
    for method in _methods(embedder):
        with pytest.raises(InputError, match=r"texts\[1\] is not valid Unicode"):
            method(["fine", text])


def test_a_single_str_is_one_text_for_embed_and_a_type_error_for_documents(
    embedder: Embedder, encoder_calls: list[tuple[int, ...]]
) -> None:
    with pytest.raises(TypeError, match="not a single str"):  # a document result list is not guessed from a str
        embedder.embed_documents("one text")  # type: ignore[arg-type]
    assert encoder_calls == []
    assert embedder.embed("one text").shape == (embedder.dim,)  # as sentence-transformers' encode("one text")


def test_input_errors_are_value_errors_and_leave_the_embedder_usable(embedder: Embedder) -> None:
    texts = ["good", ""]
    with pytest.raises(ValueError):
        embedder.embed(texts)
    assert texts == ["good", ""]  # the caller's list is untouched
    out = embedder.embed(["good", "valid surrogate pair 🚀"])
    assert out.shape == (2, embedder.dim) and np.isfinite(out).all()


def test_any_sequence_of_str_is_accepted(embedder: Embedder) -> None:
    as_list = embedder.embed(["one", "two"])
    np.testing.assert_array_equal(embedder.embed(("one", "two")), as_list)
