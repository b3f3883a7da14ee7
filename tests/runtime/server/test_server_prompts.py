"""Prompts through the server (issue 21 item 1): `prompt_name` and a literal `prompt` per request, the bundle's
default prompt (or `--default-prompt-name`) otherwise, exactly as the library resolves them; requests with
different prompts never share an encoder call."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from longvec.runtime import Embedder
from longvec.runtime.server import ServeSettings, create_app

PROMPTS = {"query": "query: ", "passage": "passage: ", "plain": ""}
TEXTS = ["How do keepers keep the lamp burning?", "the keeper lit the lamp at dusk " * 60]


@pytest.fixture(scope="module")
def prompt_bundle(bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The MiniLM bundle with prompts and a default prompt ("passage"), as an E5-style export would have them.
    Graph files are hard links (a symlink out of the bundle is refused), the manifest a rewritten copy."""
    out = tmp_path_factory.mktemp("prompted") / "bundle"
    out.mkdir()
    for f in Path(bundle_dir).iterdir():
        if f.name == "manifest.json":
            raw = json.loads(f.read_text(encoding="utf-8"))
            raw.update(prompts=PROMPTS, default_prompt="passage")
            (out / f.name).write_text(json.dumps(raw), encoding="utf-8")
        else:
            try:
                os.link(f.resolve(), out / f.name)
            except OSError:
                shutil.copy(f, out / f.name)
    return out


@pytest.fixture(scope="module")
def prompted(prompt_bundle: Path) -> Iterator[Embedder]:
    with Embedder.load(prompt_bundle, threads=2) as emb:
        yield emb


@pytest.fixture(scope="module")
def prompt_server(prompt_bundle: Path, server_factory: Any) -> Iterator[Any]:
    with server_factory(bundle=prompt_bundle) as s:
        yield s


def vectors(r: httpx.Response) -> np.ndarray:
    assert r.status_code == 200, r.text
    return np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)


def min_cos(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(axis=1).min())


def post(server: Any, path: str, body: Any) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, headers=server.headers, timeout=120)


def test_prompts_through_the_server_equal_the_library(prompt_server: Any, prompted: Embedder) -> None:
    default = vectors(post(prompt_server, "/v1/embeddings", {"input": TEXTS}))
    assert min_cos(default, prompted.embed(TEXTS)) >= 0.99999  # the bundle's default: "passage: "
    query = vectors(post(prompt_server, "/v1/embeddings", {"input": TEXTS, "prompt_name": "query"}))
    assert min_cos(query, prompted.embed(TEXTS, prompt_name="query")) >= 0.99999
    assert min_cos(query, default) < 0.999  # the prompt changed the vectors: the test can tell them apart
    literal = vectors(post(prompt_server, "/v1/embeddings", {"input": TEXTS, "prompt": "query: "}))
    assert min_cos(literal, query) >= 0.99999
    off = vectors(post(prompt_server, "/v1/embeddings", {"input": TEXTS, "prompt": ""}))
    assert min_cos(off, prompted.embed(TEXTS, prompt="")) >= 0.99999

    r = post(prompt_server, "/v1/documents", {"documents": [{"id": "d", "text": TEXTS[1]}], "prompt_name": "query"})
    assert r.status_code == 200, r.text
    [doc] = prompted.embed_documents(TEXTS[1:], prompt_name="query", chunking="tokens")
    got = r.json()["data"][0]
    assert min_cos(np.array([got["embedding"]]), doc.vector[None]) >= 0.99999
    assert min_cos(np.array([c["embedding"] for c in got["chunks"]]), doc.chunk_vectors) >= 0.99999
    assert got["n_windows"] == doc.n_windows


def test_an_unknown_prompt_name_is_422_listing_the_known_ones(prompt_server: Any) -> None:
    for path, body in (
        ("/v1/embeddings", {"input": "x", "prompt_name": "qurey"}),
        ("/v1/documents", {"documents": [{"id": "d", "text": "x"}], "prompt_name": "qurey"}),
    ):
        r = post(prompt_server, path, body)
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["param"] == "prompt_name"
        assert "unknown prompt_name 'qurey'; this bundle's prompts: 'passage', 'plain', 'query'" in error["message"]
    r = post(prompt_server, "/v1/embeddings", {"input": "x", "prompt_name": "query", "prompt": "q: "})
    assert r.status_code == 422 and "not both" in r.json()["error"]["message"], r.text


def test_info_and_models_list_the_prompts(prompt_server: Any) -> None:
    info = httpx.get(f"{prompt_server.url}/info", timeout=10).json()
    assert info["prompts"] == PROMPTS and info["default_prompt_name"] == "passage"
    [model] = httpx.get(f"{prompt_server.url}/v1/models", headers=prompt_server.headers, timeout=10).json()["data"]
    assert model["prompts"] == PROMPTS and model["default_prompt_name"] == "passage"


def test_default_prompt_name_at_startup(prompt_bundle: Path, prompted: Embedder, server_tools: Any) -> None:
    settings = ServeSettings(model_name="m", default_prompt_name="query")
    with TestClient(create_app(settings, lambda: Embedder.load(prompt_bundle, threads=2))) as c:  # closed on exit
        server_tools.poll(lambda: c.get("/ready").status_code == 200, "the model to be ready")
        got = vectors(c.post("/v1/embeddings", json={"input": TEXTS}))  # type: ignore[arg-type]
        assert min_cos(got, prompted.embed(TEXTS, prompt_name="query")) >= 0.99999
        named = vectors(c.post("/v1/embeddings", json={"input": TEXTS, "prompt_name": "passage"}))  # type: ignore[arg-type]
        assert min_cos(named, prompted.embed(TEXTS)) >= 0.99999
        assert c.get("/info").json()["default_prompt_name"] == "query"


def test_an_unknown_default_prompt_name_fails_before_serving(prompt_bundle: Path, run_longvec: Any) -> None:
    r = run_longvec("serve", prompt_bundle, "--port", "1", "--default-prompt-name", "qurey", timeout=60)
    assert r.returncode == 4, r.stderr
    assert "--default-prompt-name 'qurey' is not a prompt of this bundle: 'passage', 'plain', 'query'" in r.stderr


@pytest.fixture
def fake_prompted(make_fake: Callable[..., Embedder]) -> Embedder:
    fake = make_fake()
    manifest = dataclasses.replace(fake.manifest, prompts=PROMPTS, default_prompt="passage")
    return Embedder(fake.backend, fake.tokenizer, manifest, fake.window, fake.batching)


def test_requests_with_different_prompts_are_batched_apart(
    fake_prompted: Embedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server_tools: Any
) -> None:
    """Eight requests queued together behind a held encoder, half with prompt_name "query": each gets its own
    prompt's vectors, and the two prompts take separate encoder calls."""
    hold = tmp_path / "hold"
    monkeypatch.setenv("LONGVEC_TEST_HOLD_FILE", str(hold))
    with TestClient(create_app(ServeSettings(model_name="fake"), lambda: fake_prompted)) as c:
        server_tools.poll(lambda: c.get("/ready").status_code == 200, "the model to be ready")

        def sample(name: str) -> float:
            found = [line for line in c.get("/metrics").text.splitlines() if line.startswith(name + " ")]
            return float(found[0].split()[1]) if found else 0.0

        calls_before = sample("longvec_batch_requests_count")
        hold.touch()
        bodies: list[dict[str, Any]] = [
            {"input": f"lamp {i}", **({"prompt_name": "query"} if i % 2 else {})} for i in range(8)
        ]
        with ThreadPoolExecutor(len(bodies) + 1) as pool:
            blocker = pool.submit(c.post, "/v1/embeddings", json={"input": "blocker"})
            server_tools.poll(lambda: sample("longvec_encoder_busy") == 1, "the encoder to hold the blocker")
            futures = [pool.submit(c.post, "/v1/embeddings", json=b) for b in bodies]
            server_tools.poll(lambda: sample("longvec_queue_depth") == len(bodies), "8 requests queued")
            hold.unlink()
            responses = [f.result() for f in futures]
            assert blocker.result().status_code == 200
        for body, r in zip(bodies, responses):
            want = fake_prompted.embed([body["input"]], prompt_name=body.get("prompt_name"))
            assert min_cos(vectors(r), want) >= 0.99999, body
        # the blocker alone, then one call per prompt (one call for all eight if the prompt were not in the key)
        assert sample("longvec_batch_requests_count") - calls_before == 3


def test_a_prompted_request_is_tokenized_once(fake_prompted: Embedder, server_tools: Any) -> None:
    seen: list[str] = []
    real_encode = fake_prompted.tokenizer.encode

    def encode(texts: Any) -> Any:
        seen.extend(texts)
        return real_encode(texts)

    fake_prompted.tokenizer.encode = encode  # type: ignore[method-assign]
    text = "a lighthouse keeper's log, tokenized once " * 50
    with TestClient(create_app(ServeSettings(model_name="fake"), lambda: fake_prompted)) as c:
        server_tools.poll(lambda: c.get("/ready").status_code == 200, "the model to be ready")
        for path, body in (
            ("/v1/embeddings", {"input": [text], "prompt_name": "query"}),
            ("/v1/documents", {"documents": [{"id": "d", "text": text}], "prompt_name": "query"}),
        ):
            assert c.post(path, json=body).status_code == 200
    assert seen.count("query: " + text) == 2 and seen.count(text) == 0  # once per request
