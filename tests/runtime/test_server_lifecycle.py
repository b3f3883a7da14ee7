"""A server's life: 503 until the model is warm, 429 with Retry-After under a burst (never 5xx), and on SIGTERM
it stops accepting, finishes the request in flight and exits 0."""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest

from longvec.runtime import Embedder


@pytest.fixture(scope="module")
def small_server(server_factory: Any) -> Iterator[Any]:
    """A tiny queue and a small token budget, so a burst overflows; started without waiting for readiness."""
    with server_factory("--max-queue", "2", "--max-batch-tokens", "600", wait=False) as s:
        yield s


def test_health_is_503_until_the_model_is_warm(small_server: Any, wait_ready: Any) -> None:
    """The port opens before the model is loaded: /health and the API say 503 (with Retry-After) meanwhile."""
    early: list[httpx.Response] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not early:
        try:
            health = httpx.get(f"{small_server.url}/health", timeout=5)
        except httpx.TransportError:
            time.sleep(0.02)
            continue
        assert health.status_code == 503 and health.json()["status"] == "loading", health.text
        early.append(httpx.post(f"{small_server.url}/v1/embeddings", json={"input": "x"}, headers=small_server.headers))
    assert early, "the server never answered"
    if early[0].status_code != 200:  # unless loading finished between the two calls
        assert early[0].status_code == 503 and early[0].headers["Retry-After"] == "1"
        assert early[0].json()["error"]["code"] == "not_ready"
    assert wait_ready(small_server)[-1] == 200


def test_burst_gets_429_with_retry_after_and_no_5xx(small_server: Any) -> None:
    body = {"input": "the lamp turned through the night " * 80}  # ~500 tokens: one request per encoder call
    url = f"{small_server.url}/v1/embeddings"

    def call(_: int) -> httpx.Response:
        return httpx.post(url, json=body, headers=small_server.headers, timeout=120)

    with ThreadPoolExecutor(24) as pool:
        responses = list(pool.map(call, range(24)))
    statuses = [r.status_code for r in responses]
    assert all(s in (200, 429) for s in statuses), statuses
    assert statuses.count(429) > 0 and statuses.count(200) > 0, statuses
    for r in responses:
        if r.status_code == 429:
            assert r.headers["Retry-After"] == "1"
            assert r.json()["error"]["type"] == "rate_limit_error"
            assert "queue is full (2 requests waiting)" in r.json()["error"]["message"]
    health = httpx.get(f"{small_server.url}/health", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert (
        httpx.post(url, json={"input": "after the burst"}, headers=small_server.headers, timeout=60).status_code == 200
    )


def in_flight(server: Any) -> int:
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    found = re.search(r"^longvec_requests_in_flight (\d+)", metrics, re.M)
    return int(found.group(1)) - 1 if found else 0  # less this /metrics request


def test_a_client_that_leaves_is_dropped_from_the_queue(small_server: Any) -> None:
    url, headers = f"{small_server.url}/v1/embeddings", small_server.headers
    busy = threading.Thread(
        target=lambda: httpx.post(url, json={"input": "the bell rang " * 700}, headers=headers, timeout=120)
    )
    busy.start()
    while in_flight(small_server) < 1:
        time.sleep(0.02)
    with pytest.raises(httpx.ReadTimeout):  # queued behind the busy request, and the client gives up
        httpx.post(url, json={"input": "impatient"}, headers=headers, timeout=httpx.Timeout(60, read=0.3))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        metrics = httpx.get(f"{small_server.url}/metrics", timeout=10).text
        if 'longvec_requests_total{route="/v1/embeddings",status="499"} 1' in metrics:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the abandoned request was not dropped")
    busy.join(120)
    assert in_flight(small_server) == 0


def test_sigterm_finishes_the_request_in_flight_and_exits_0(small_server: Any, embedder: Embedder) -> None:
    text = "the keeper climbed the stairs to the lamp room " * 300  # ~2.7k tokens, a few seconds of work
    result: dict[str, httpx.Response] = {}

    def long_request() -> None:
        result["r"] = httpx.post(
            f"{small_server.url}/v1/embeddings", json={"input": text}, headers=small_server.headers, timeout=120
        )

    worker = threading.Thread(target=long_request)
    worker.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until the server is working on it
        if in_flight(small_server) >= 1:
            break
        time.sleep(0.02)
    else:
        pytest.fail("the long request never reached the server")
    small_server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    with pytest.raises(httpx.TransportError):  # no longer accepting connections
        httpx.get(f"{small_server.url}/health", timeout=5)
    worker.join(120)
    r = result["r"]
    assert r.status_code == 200, r.text
    got = np.array(r.json()["data"][0]["embedding"], dtype=np.float32)
    assert float(got @ embedder.embed([text])[0]) >= 0.99999
    assert small_server.proc.wait(60) == 0, small_server.log_text()
