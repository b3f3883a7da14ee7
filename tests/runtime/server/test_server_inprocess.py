"""The app in-process on the fake encoder (fast, no model): a bug in one request is a generic, logged 500 that
does not fail the requests batched with it, and concurrent requests share encoder calls."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from longvec.runtime import Embedder
from longvec.runtime.server import ServeSettings, create_app


@pytest.fixture
def exploding(make_fake: Callable[..., Embedder]) -> Embedder:
    """A fake embedder whose encoder crashes (a bug, not bad input) on any batch holding the word 'explosion'."""
    emb = make_fake()
    boom = emb.tokenizer.ids("explosion")[0]
    backend = emb.backend
    real_run = backend.run

    def run(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        if (input_ids == boom).any():
            raise RuntimeError("simulated encoder crash")
        return real_run(input_ids, attention_mask)

    backend.run = run  # type: ignore[method-assign]
    return emb


@pytest.fixture
def client(exploding: Embedder, server_tools: Any) -> Iterator[TestClient]:
    app = create_app(ServeSettings(model_name="fake"), lambda: exploding)
    with TestClient(app, raise_server_exceptions=False) as c:  # runs the lifespan: load, warm up, batcher
        server_tools.poll(lambda: c.get("/ready").status_code == 200, "the model to be ready")
        yield c


def test_unknown_error_is_a_generic_logged_500(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="longvec.server"):
        r = client.post("/v1/embeddings", json={"input": "an explosion"})
    assert r.status_code == 500
    assert r.json()["error"] == {
        "message": "internal server error; the server log has the details",
        "type": "server_error",
        "param": None,
        "code": "internal_error",
    }
    assert "simulated encoder crash" not in r.text  # internals stay in the log
    assert any(rec.exc_info and "simulated encoder crash" in str(rec.exc_info[1]) for rec in caplog.records)


def test_crash_in_a_shared_batch_fails_only_its_request(client: TestClient, exploding: Embedder) -> None:
    texts = [f"lamp number {i}" for i in range(24)] + ["an explosion"] * 4

    def call(text: str) -> Any:
        return client.post("/v1/embeddings", json={"input": text})

    with ThreadPoolExecutor(len(texts)) as pool:
        responses = list(pool.map(call, texts))
    for text, r in zip(texts, responses):
        if "explosion" in text:
            assert r.status_code == 500
        else:
            assert r.status_code == 200, r.text
            got = np.array(r.json()["data"][0]["embedding"], dtype=np.float32)
            assert float(got @ exploding.embed([text])[0]) >= 0.99999


def test_concurrent_requests_share_encoder_calls(client: TestClient, exploding: Embedder) -> None:
    calls = exploding.backend.calls  # type: ignore[attr-defined]
    before = len(calls)
    texts = [f"harbor light {i}" for i in range(32)]
    with ThreadPoolExecutor(32) as pool:
        responses = list(pool.map(lambda t: client.post("/v1/embeddings", json={"input": t}), texts))
    assert all(r.status_code == 200 for r in responses)
    assert len(calls) - before < len(texts)  # fewer encoder calls than requests
    metrics = client.get("/metrics").text
    assert "longvec_batch_requests_bucket" in metrics


def test_the_queue_is_bounded_in_tokens_too() -> None:
    """--max-queue-tokens: the queue holds bodies and tokens in memory; past the bound a request gets 429 (a
    request alone in the queue is always let in, or a large one could never run)."""
    import asyncio
    import threading

    from longvec.runtime.errors import OverloadedError
    from longvec.runtime.server.batcher import Batcher, Work
    from longvec.runtime.server.metrics import Metrics
    from longvec.runtime.server.options import EmbedOptions

    taken, release = threading.Event(), threading.Event()

    def hold() -> None:  # the worker has taken a group: say so, then wait for the test
        taken.set()
        release.wait(30)

    batcher = Batcher(lambda o, t, x, n: [0] * len(t), 10, 10, Metrics(), hold, max_queue_tokens=100)
    batcher.start()

    async def scenario() -> list[object]:
        running = asyncio.ensure_future(batcher.submit(Work(EmbedOptions(), ["a"], [None], 500)))
        while not taken.is_set():  # the worker holds the first request: the queue is empty again
            await asyncio.sleep(0.01)
        first = asyncio.ensure_future(batcher.submit(Work(EmbedOptions(), ["b"], [None], 150)))  # alone: let in
        await asyncio.sleep(0)
        with pytest.raises(OverloadedError, match="150 tokens waiting, --max-queue-tokens 100"):
            await batcher.submit(Work(EmbedOptions(), ["c"], [None], 1))
        release.set()
        return list(await asyncio.gather(running, first))

    assert asyncio.run(scenario()) == [[0], [0]]
    batcher.stop(5)


def test_a_request_is_tokenized_once(make_fake: Callable[..., Embedder], server_tools: Any) -> None:
    """Finding 6: a large body was tokenized twice (admission, then the library call on the encoder thread)."""
    emb = make_fake()
    seen: list[str] = []
    real_encode = emb.tokenizer.encode

    def encode(texts: Any) -> Any:
        seen.extend(texts)
        return real_encode(texts)

    emb.tokenizer.encode = encode  # type: ignore[method-assign]
    text = "a lighthouse keeper's log, tokenized once " * 50
    with TestClient(create_app(ServeSettings(model_name="fake"), lambda: emb)) as c:
        server_tools.poll(lambda: c.get("/ready").status_code == 200, "the model to be ready")
        for path, body in (
            ("/v1/embeddings", {"input": [text]}),
            ("/v1/documents", {"documents": [{"id": "d", "text": text}]}),
        ):
            assert c.post(path, json=body).status_code == 200
    assert seen.count(text) == 2  # once per request
