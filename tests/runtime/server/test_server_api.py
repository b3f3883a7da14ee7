"""The HTTP API against a real `longvec serve` process: results equal the library's, and every bad input gets
its own status and a message that says what was wrong, without disturbing the server."""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest

from longvec.kernels import matryoshka
from longvec.runtime import Embedder

SENTENCES = (
    "The lighthouse keeper trimmed the wick at dusk. Storms came in from the west. "
    "Ships passed the headland safely while the lamp turned through the night. "
)


def post(server: Any, path: str, body: Any, **kwargs: Any) -> httpx.Response:
    headers = {**server.headers, **kwargs.pop("headers", {})}
    return httpx.post(f"{server.url}{path}", json=body, headers=headers, timeout=120, **kwargs)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def test_embeddings_equal_library_for_short_and_long_inputs(server: Any, embedder: Embedder) -> None:
    texts = ["hello", SENTENCES, SENTENCES * 12]  # the last one is ~700 tokens: several windows, not truncated
    r = post(server, "/v1/embeddings", {"input": texts, "model": server.model})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["model"] == server.model
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    got = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
    assert got.shape == (3, embedder.dim)
    assert cosines(got, embedder.embed(texts)).min() >= 0.99999
    n_tokens = sum(embedder.count_tokens(texts))
    assert n_tokens > embedder.window
    assert body["usage"] == {"prompt_tokens": n_tokens, "total_tokens": n_tokens}


def test_single_string_base64_and_dimensions(server: Any, embedder: Embedder) -> None:
    r = post(server, "/v1/embeddings", {"input": "a single string", "encoding_format": "base64", "dimensions": 64})
    assert r.status_code == 200, r.text
    (item,) = r.json()["data"]
    got = np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")
    want = matryoshka(embedder.embed(["a single string"]), 64)[0]
    assert got.shape == (64,)
    assert cosines(got, want)[0] >= 0.99999
    assert abs(float(np.linalg.norm(got)) - 1.0) < 1e-5


def test_documents_equal_library(server: Any, embedder: Embedder) -> None:
    docs = [{"id": "short", "text": SENTENCES}, {"id": "long", "text": SENTENCES * 20}]  # ~600 tokens
    options = {"chunking": "sentences", "chunk_tokens": 48, "mode": "late"}
    r = post(server, "/v1/documents", {"documents": docs, **options})
    assert r.status_code == 200, r.text
    out = r.json()["data"]
    want = embedder.embed_documents([d["text"] for d in docs], **options)  # type: ignore[arg-type]
    assert [d["id"] for d in out] == ["short", "long"]
    for got, ref in zip(out, want):
        assert (got["n_tokens"], got["n_tokens_embedded"], got["n_windows"]) == (
            ref.n_tokens,
            ref.n_tokens_embedded,
            ref.n_windows,
        )
        assert cosines(np.array(got["embedding"]), ref.vector)[0] >= 0.99999
        assert [[c["start"], c["end"]] for c in got["chunks"]] == ref.chunk_spans.tolist()
        assert [[c["token_start"], c["token_end"]] for c in got["chunks"]] == ref.chunk_token_spans.tolist()
        chunk_vectors = np.array([c["embedding"] for c in got["chunks"]])
        assert cosines(chunk_vectors, ref.chunk_vectors).min() >= 0.99999
    assert out[1]["n_windows"] > 1


def test_documents_sparse_when_the_library_has_it(server: Any, embedder: Embedder) -> None:
    body = {"documents": [{"id": "d", "text": SENTENCES}], "chunk_tokens": 16, "sparse": True}
    r = post(server, "/v1/documents", body)
    try:
        want = embedder.embed_documents([SENTENCES], chunk_tokens=16, sparse=True)[0]  # type: ignore[call-arg]
    except TypeError:  # this longvec has no sparse vectors: the server must say so, not ignore the option
        assert r.status_code == 422 and "sparse not available" in r.json()["error"]["message"]
        return
    assert r.status_code == 200, r.text
    chunks = r.json()["data"][0]["chunks"]
    assert want.chunk_sparse is not None and len(chunks) == len(want.chunk_sparse)
    for c, sp in zip(chunks, want.chunk_sparse):
        assert c["sparse"]["indices"] == sp.indices.tolist()
        assert np.allclose(c["sparse"]["values"], sp.values)


def test_a_request_that_fails_in_the_library_does_not_fail_its_batch(server: Any) -> None:
    """Bad spans pass the route's checks and fail only inside the shared library call; the batcher must then
    retry each request alone so the good requests of the same batch still succeed."""
    text = "alpha beta gamma delta"
    good = {"documents": [{"id": "g", "text": text, "spans": [[0, 10], [11, 22]]}], "chunking": "spans"}
    bad = {"documents": [{"id": "b", "text": text, "spans": [[0, 3]]}], "chunking": "spans"}  # inside "alpha"
    bodies = [good, bad] * 8
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda b: post(server, "/v1/documents", b), bodies))
    for body, r in zip(bodies, responses):
        if body is good:
            assert r.status_code == 200, r.text
            assert [[c["start"], c["end"]] for c in r.json()["data"][0]["chunks"]] == [[0, 10], [11, 22]]
        else:
            assert r.status_code == 422, r.text
            assert "inside the token" in r.json()["error"]["message"]


LONG = "word " * 31000  # 31k tokens, under the 1 MB body cap, over the 30k-token cap


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"input": []}, 422, "input is an empty list"),
        ({"input": ""}, 422, "input is empty or whitespace only"),
        ({"input": ["fine", "   "]}, 422, "input[1] is empty or whitespace only"),
        ({"input": 5}, 422, "input: Input should be a valid string, or a valid list"),
        ({"input": ["ok", 7]}, 422, "input[1]: Input should be a valid string"),
        ({"input": [[1, 2, 3]]}, 422, "input: token ids are not accepted; send text"),
        ({"input": [101, 7592]}, 422, "input: token ids are not accepted; send text"),
        ({}, 422, "input is required"),
        ({"input": "x", "dimensions": 0}, 422, "dimensions: Input should be greater than or equal to 1"),
        ({"input": "x", "dimensions": 385}, 422, "dimensions must be in 1..384"),
        ({"input": "x", "dimensions": "8"}, 422, "dimensions: Input should be a valid integer"),
        ({"input": "x", "encoding_format": "int8"}, 422, "encoding_format: Input should be 'float' or 'base64'"),
        ({"input": "x", "truncate": True}, 422, "truncate: Extra inputs are not permitted"),
        ({"input": ["a"] * 65}, 413, "at most 64 per request (--max-items)"),
        ({"input": LONG}, 413, "at most 30000 per request (--max-request-tokens)"),
        ({"input": "x" * 1_000_001}, 413, "larger than 1000000 bytes"),
    ],
    ids=lambda v: str(v)[:40] if isinstance(v, str) else None,
)
def test_bad_embedding_requests(server: Any, body: Any, status: int, message: str) -> None:
    r = post(server, "/v1/embeddings", body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert message in error["message"]
    assert error["type"] == "invalid_request_error" and error["code"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"documents": []}, "documents: List should have at least 1 item"),
        ({"documents": [{"id": "a", "text": ""}]}, "documents[0].text: String should have at least 1 character"),
        ({"documents": [{"id": "a", "text": " \n"}]}, "documents[0].text is empty or whitespace only"),
        ({"documents": [{"text": "no id"}]}, "documents[0].id is required"),
        ({"documents": [{"id": "a", "text": "x"}], "window": 5000}, "window=5000 exceeds the model's 512 positions"),
        ({"documents": [{"id": "a", "text": "x"}], "stride": 900}, "stride must be in 1.."),
        ({"documents": [{"id": "a", "text": "x"}], "chunking": "spans"}, "documents[0].spans must be given"),
        ({"documents": [{"id": "a", "text": "x y"}], "chunking": "spans", "spans": [[0, 1]]}, "spans: Extra inputs"),
        ({"documents": [{"id": "a", "text": "x"}], "mode": "mean"}, "mode: Input should be 'auto'"),
        ({"documents": [{"id": "a", "text": "x"}], "chunk_tokens": 0}, "chunk_tokens: Input should be greater"),
    ],
)
def test_bad_document_requests(server: Any, body: Any, message: str) -> None:
    r = post(server, "/v1/documents", body)
    assert r.status_code == 422, r.text
    assert message in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"input": "caf\xe9"}', "not valid UTF-8 (byte 14)"),
        (b'{"input": "x",', "the body is not valid JSON"),
        (b'{"input": ["ok", "lone \\ud800"]}', "input[1] is not valid Unicode (lone surrogate at 5)"),
    ],
)
def test_undecodable_bodies(server: Any, content: bytes, message: str) -> None:
    headers = {**server.headers, "content-type": "application/json"}
    r = httpx.post(f"{server.url}/v1/embeddings", content=content, headers=headers, timeout=30)
    assert r.status_code == 422, r.text
    assert message in r.json()["error"]["message"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "test-key-0123"}])
def test_api_key_required(server: Any, headers: dict[str, str]) -> None:
    for path in ("/v1/embeddings", "/v1/documents"):
        r = httpx.post(f"{server.url}{path}", json={"input": "x"}, headers=headers, timeout=30)
        assert r.status_code == 401, r.text
        assert r.json()["error"]["type"] == "authentication_error"
        assert "Authorization: Bearer" in r.json()["error"]["message"]


def test_server_keeps_serving_after_bad_input(server: Any, embedder: Embedder) -> None:
    assert httpx.get(f"{server.url}/health", timeout=10).json()["status"] == "ok"
    r = post(server, "/v1/embeddings", {"input": ["still here"]})
    assert r.status_code == 200
    assert cosines(np.array(r.json()["data"][0]["embedding"]), embedder.embed(["still here"]))[0] >= 0.99999


def test_unknown_route_and_method(server: Any) -> None:
    assert httpx.get(f"{server.url}/v2/nothing", timeout=10).json()["error"]["code"] == "not_found"
    r = httpx.get(f"{server.url}/v1/embeddings", headers=server.headers, timeout=10)
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_health_and_metrics(server: Any, embedder: Embedder) -> None:
    for path in ("/health", "/ready"):
        r = httpx.get(f"{server.url}{path}", timeout=10)
        assert r.status_code == 200 and r.json() == {
            "status": "ok",
            "model": server.model,
            "dimensions": 384,
            "provider": "onnxruntime CPUExecutionProvider (pooled graph)",
        }
    before = samples(server)
    post(server, "/v1/embeddings", {"input": "count me"})
    after = samples(server)
    route = (("route", "/v1/embeddings"),)
    assert (
        after[("longvec_requests_total", (*route, ("status", "200")))]
        == before.get(("longvec_requests_total", (*route, ("status", "200"))), 0) + 1
    )
    assert after[("longvec_tokens_total", route)] - before.get(("longvec_tokens_total", route), 0) == sum(
        embedder.count_tokens(["count me"])
    )
    assert after[("longvec_request_duration_seconds_bucket", (("le", "+Inf"), *route))] >= 1
    assert after[("longvec_batch_requests_count", ())] > before.get(("longvec_batch_requests_count", ()), 0)
    assert after[("longvec_queue_depth", ())] == 0
    assert after[("longvec_ready", ())] == 1
    served = [dict(labels) for (name, labels), value in after.items() if name == "longvec_model_info" and value == 1]
    assert len(served) == 1 and served[0]["model"] == server.model, served
    assert served[0]["provider"] == "onnxruntime CPUExecutionProvider (pooled graph)"  # as /health says
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert "# TYPE longvec_request_duration_seconds histogram" in text


def samples(server: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics parsed: (sample name, sorted labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
