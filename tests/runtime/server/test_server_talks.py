"""A server that talks: a startup line, an access line per request with its request id (echoed in
X-Request-Id), text or JSON logs; OpenAI's GET /v1/models; the `model` field checked; CORS; /info."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

import longvec
from longvec.runtime import Embedder

ORIGIN = "https://app.example"
SERVED = "local/minilm"


@pytest.fixture(scope="module")
def json_server(server_factory: Any) -> Iterator[Any]:
    with server_factory("--log-format", "json", "--cors-allow-origin", ORIGIN, "--served-model-name", SERVED) as s:
        yield s


def client(server: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=server.api_key, max_retries=0, timeout=60)


def test_startup_and_access_lines_in_text(server: Any, server_tools: Any) -> None:
    r = httpx.post(
        f"{server.url}/v1/embeddings",
        json={"input": ["one text", "two texts"]},
        headers={**server.headers, "X-Request-Id": "req-abc.123"},
        timeout=60,
    )
    assert r.status_code == 200 and r.headers["X-Request-Id"] == "req-abc.123"
    tokens = r.json()["usage"]["prompt_tokens"]
    log = server.log_text()
    ready = [line for line in log.splitlines() if " ready model=" in line]
    assert len(ready) == 1, log
    for field in (f"model={server.model}", "variant=optimized", "provider=", "window=256", "threads=2", "auth=on"):
        assert field in ready[0], (field, ready[0])
    assert '"max_request_encoder_tokens": 262144' in ready[0].replace('\\"', '"')
    line = f"request request_id=req-abc.123 method=POST route=/v1/embeddings status=200 texts=2 tokens={tokens} ms="
    server_tools.poll(lambda: line in server.log_text(), "the access line")


def test_a_request_id_is_made_when_the_client_sends_none_or_a_bad_one(server: Any) -> None:
    for headers in ({}, {"X-Request-Id": "bad id with spaces"}):
        r = httpx.get(f"{server.url}/health", headers=headers, timeout=10)
        assert re.fullmatch(r"[0-9a-f]{32}", r.headers["X-Request-Id"]), r.headers


def test_json_logs(json_server: Any, server_tools: Any) -> None:
    r = httpx.post(f"{json_server.url}/v1/embeddings", json={"input": "x"}, headers=json_server.headers, timeout=60)
    rid = r.headers["X-Request-Id"]

    def records() -> list[dict[str, Any]]:
        return [json.loads(line) for line in json_server.log_text().splitlines() if line.startswith("{")]

    server_tools.poll(lambda: any(rec.get("request_id") == rid for rec in records()), "the access record")
    ready = next(rec for rec in records() if rec["message"] == "ready")
    assert ready["window"] == 256 and ready["auth"] == "on" and ready["limits"]["max_chunks"] == 4096
    access = next(rec for rec in records() if rec.get("request_id") == rid)
    assert (access["route"], access["status"], access["texts"], access["tokens"]) == ("/v1/embeddings", 200, 1, 1)
    assert not [line for line in json_server.log_text().splitlines() if line and not line.startswith("{")]


def test_models_with_the_openai_client(server: Any) -> None:
    models = client(server).models.list()
    assert [m.id for m in models.data] == [server.model]
    assert client(server).models.retrieve(server.model).id == server.model


def test_served_model_name(json_server: Any) -> None:
    assert json_server.model == SERVED  # read from /info
    assert [m.id for m in client(json_server).models.list().data] == [SERVED]
    assert client(json_server).models.retrieve(SERVED).id == SERVED
    assert len(client(json_server).embeddings.create(model=SERVED, input="x").data) == 1


def test_the_model_field_is_checked(server: Any, embedder: Embedder) -> None:
    with pytest.raises(openai.NotFoundError, match="is not served here"):
        client(server).embeddings.create(model="text-embedding-3-small", input="x")
    # the served name works, and so does leaving the field out
    assert len(client(server).embeddings.create(model=server.model, input="x").data) == 1
    r = httpx.post(f"{server.url}/v1/embeddings", json={"input": "x"}, headers=server.headers, timeout=60)
    assert r.status_code == 200


def test_cors_preflight_when_enabled(json_server: Any, server: Any) -> None:
    preflight = {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    r = httpx.options(f"{json_server.url}/v1/embeddings", headers=preflight, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    assert "authorization" in r.headers["Access-Control-Allow-Headers"].lower()
    other = httpx.options(
        f"{json_server.url}/v1/embeddings", headers={**preflight, "Origin": "https://evil"}, timeout=10
    )
    assert "Access-Control-Allow-Origin" not in other.headers
    off = httpx.options(f"{server.url}/v1/embeddings", headers=preflight, timeout=10)  # no --cors-allow-origin
    assert "Access-Control-Allow-Origin" not in off.headers


def test_info(server: Any) -> None:
    info = httpx.get(f"{server.url}/info", timeout=10).json()
    assert info["model"] == server.model and info["version"] == longvec.__version__
    assert (info["dimensions"], info["window"], info["max_positions"], info["stride"]) == (384, 256, 512, 127)
    assert info["limits"]["max_items"] == 64 and info["limits"]["max_request_tokens"] == 30000  # the fixture's flags
    # which engine runs is never a guess: the same words as Embedder.provider, on /info and /health
    assert info["provider"] == "onnxruntime CPUExecutionProvider (pooled graph)"
    assert httpx.get(f"{server.url}/health", timeout=10).json()["provider"] == info["provider"]
