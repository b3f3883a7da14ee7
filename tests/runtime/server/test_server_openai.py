"""The official `openai` client, pointed at `longvec serve`, gets the library's vectors."""

from __future__ import annotations

from typing import Any

import numpy as np
import openai
import pytest

from longvec.kernels import matryoshka
from longvec.runtime import Embedder

TEXTS = ["How did keepers keep the lamp burning?", "Fog bells warned ships at night.", "word " * 900]


def client(server: Any, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key or server.api_key, max_retries=0, timeout=120)


def test_openai_client_gets_library_vectors(server: Any, embedder: Embedder) -> None:
    # the client asks for base64 by default and decodes it: this checks our little-endian float32 encoding
    response = client(server).embeddings.create(model=server.model, input=TEXTS)
    got = np.array([d.embedding for d in response.data], dtype=np.float32)
    want = embedder.embed(TEXTS)
    assert got.shape == want.shape
    assert (got * want).sum(-1).min() >= 0.99999
    assert response.usage.prompt_tokens == sum(embedder.count_tokens(TEXTS))


def test_openai_client_floats_and_dimensions(server: Any, embedder: Embedder) -> None:
    response = client(server).embeddings.create(
        model=server.model, input=TEXTS[0], encoding_format="float", dimensions=128
    )
    (item,) = response.data
    want = matryoshka(embedder.embed(TEXTS[:1]), 128)[0]
    assert len(item.embedding) == 128
    assert float(np.dot(item.embedding, want)) >= 0.99999


def test_openai_client_sees_typed_errors(server: Any) -> None:
    with pytest.raises(openai.AuthenticationError):
        client(server, key="wrong").embeddings.create(model=server.model, input="x")
    with pytest.raises(openai.UnprocessableEntityError, match=r"dimensions must be in 1\.\.384"):
        client(server).embeddings.create(model=server.model, input="x", dimensions=4096)
