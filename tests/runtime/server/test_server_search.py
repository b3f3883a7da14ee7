"""POST /v1/search in-process on the real model: the library's hits, admitted like /v1/documents."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from longvec.runtime import Embedder
from longvec.runtime.server import ServeSettings, create_app

DOCS = [
    "Lighthouses were lit with wood, then coal, then whale oil. The Fresnel lens of 1822 bent the light into a "
    "beam seen from twenty miles. Keepers trimmed the wicks every four hours through the night. " * 4,
    "The honey bee dances to tell its sisters where flowers are. A waggle run points along the sun's direction; "
    "its length says how far to fly. Drones do not forage. " * 4,
    "Tides rise and fall twice a day because the moon pulls the oceans. Spring tides come at new and full moon.",
]
QUERIES = ["Who tells the hive where the flowers are?", "How often were the wicks trimmed?", "spring tides"]
KEY = "search-key"


@pytest.fixture(scope="module")
def client(bundle_dir: Path, server_tools: Any) -> Iterator[TestClient]:
    settings = ServeSettings(model_name="minilm", api_key=KEY, max_request_tokens=2000)
    app = create_app(settings, lambda: Embedder.load(bundle_dir, threads=2, spin=False))
    with TestClient(app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {KEY}"}) as c:
        server_tools.poll(lambda: c.get("/ready").status_code == 200, "the model to be ready")
        yield c


@pytest.mark.parametrize("hybrid", [True, False])
def test_search_returns_the_library_hits(client: TestClient, embedder: Embedder, hybrid: bool) -> None:
    documents: list[Any] = [DOCS[0], {"id": "bees", "text": DOCS[1]}, {"id": "tides", "text": DOCS[2]}]
    body = {"query": QUERIES, "documents": documents, "top_k": 4, "hybrid": hybrid, "chunk_tokens": 32}
    r = client.post("/v1/search", json=body)
    assert r.status_code == 200, r.text
    got = r.json()
    want = embedder.search(QUERIES, DOCS, top_k=4, hybrid=hybrid, chunk_tokens=32)
    assert [d["query"] for d in got["data"]] == [0, 1, 2]
    for result, hits in zip(got["data"], want):
        assert [(h["document"], h["start"], h["end"], h["text"]) for h in result["hits"]] == [
            (h.document, h.start, h.end, h.text) for h in hits
        ]
        assert np.allclose([h["score"] for h in result["hits"]], [h.score for h in hits], atol=1e-5)
        assert [h["id"] for h in result["hits"]] == [[None, "bees", "tides"][h.document] for h in hits]
        assert all((h["lexical"] is None) != hybrid for h in result["hits"])
    n_tokens = sum(embedder.count_tokens(DOCS)) + sum(embedder.count_tokens(QUERIES))
    assert got["usage"] == {"prompt_tokens": n_tokens, "total_tokens": n_tokens}


def test_one_query_string(client: TestClient) -> None:
    r = client.post("/v1/search", json={"query": "bees", "documents": DOCS, "top_k": 2})
    assert r.status_code == 200, r.text
    [result] = r.json()["data"]
    assert len(result["hits"]) == 2 and result["hits"][0]["document"] == 1


def test_search_is_admitted_under_the_cost_model_and_limits(client: TestClient) -> None:
    big = {"query": "bees", "documents": [DOCS[0] * 20]}  # over max_request_tokens=2000
    r = client.post("/v1/search", json=big)
    assert r.status_code == 413, r.text
    assert "max-request-tokens" in r.json()["error"]["message"]
    r = client.post("/v1/search", json={"query": "bees", "documents": DOCS, "chunk_tokens": 4})
    assert r.status_code == 413 and r.json()["error"]["param"] == "chunk_tokens"
    r = client.post("/v1/search", json={"query": "", "documents": DOCS})
    assert r.status_code == 422 and r.json()["error"]["param"] == "query"
    r = client.post("/v1/search", json={"query": "bees", "documents": DOCS, "top_k": 0})
    assert r.status_code == 422
    r = client.post("/v1/search", json={"query": "bees", "documents": DOCS}, headers={"Authorization": "Bearer no"})
    assert r.status_code == 401


def test_search_is_logged_and_counted(client: TestClient) -> None:
    assert client.post("/v1/search", json={"query": "tides", "documents": DOCS[2:]}).status_code == 200
    metrics = client.get("/metrics").text
    assert any(
        line.startswith("longvec_requests_total{") and 'route="/v1/search"' in line and 'status="200"' in line
        for line in metrics.splitlines()
    ), metrics
    assert any(line.startswith("longvec_tokens_total{") and "/v1/search" in line for line in metrics.splitlines())
    schema = client.get("/openapi.json").json()
    assert "/v1/search" in schema["paths"]
    assert "SearchRequest" in schema["components"]["schemas"]
