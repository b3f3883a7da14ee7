"""A server's life: /ready is 503 until the model is warm (/health, liveness, is 200 meanwhile), a burst gets 429
with Retry-After (never 5xx), a client that leaves is dropped from the queue, and on SIGTERM the server stops
accepting, finishes the request in flight and exits 0.

Nothing here waits a guessed duration: the server runs with the test hook LONGVEC_TEST_HOLD_FILE (while that
file exists the encoder worker waits before each library call), so "a request is in the encoder" is a state the
test creates and observes (`longvec_encoder_busy`), not a race against how long encoding takes."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from longvec.runtime import Embedder


@pytest.fixture(scope="module")
def hold_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hold") / "hold"


@pytest.fixture(scope="module")
def small_server(server_factory: Any, hold_file: Path) -> Iterator[Any]:
    """A tiny queue and a small token budget, so a burst overflows; started without waiting for readiness."""
    env = {"LONGVEC_TEST_HOLD_FILE": str(hold_file)}
    with server_factory("--max-queue", "2", "--max-batch-tokens", "600", wait=False, env=env) as s:
        yield s


def test_ready_is_503_until_the_model_is_warm(small_server: Any, wait_ready: Any, server_tools: Any) -> None:
    """The port opens before the model is loaded: /ready and the API say 503 (with Retry-After) meanwhile, while
    /health (liveness) says 200."""
    early: list[httpx.Response] = []

    def answered() -> bool:
        try:
            ready = httpx.get(f"{small_server.url}/ready", timeout=5)
            health = httpx.get(f"{small_server.url}/health", timeout=5)
        except httpx.TransportError:
            return False
        assert health.status_code == 200 and health.json()["status"] in ("loading", "ok"), health.text
        if ready.status_code == 503:
            assert ready.json()["status"] == "loading", ready.text
        early.append(httpx.post(f"{small_server.url}/v1/embeddings", json={"input": "x"}, headers=small_server.headers))
        return True

    server_tools.poll(answered, "the server to answer", timeout=120)
    if early[0].status_code != 200:  # unless loading finished between the calls
        assert early[0].status_code == 503 and early[0].headers["Retry-After"] == "1"
        assert early[0].json()["error"]["code"] == "not_ready"
    assert wait_ready(small_server)[-1] == 200


def test_burst_gets_429_with_retry_after_and_no_5xx(small_server: Any, hold_file: Path, server_tools: Any) -> None:
    """With the encoder held, one request sits in the encoder and two in the queue: every other request of the
    burst must get 429 at once. Released, the admitted ones finish."""
    body = {"input": "the lamp turned through the night " * 80}  # ~500 tokens: one request per encoder call
    url = f"{small_server.url}/v1/embeddings"
    metric, n = server_tools.metric, 24
    refused_before = metric(small_server, "longvec_requests_total", route="/v1/embeddings", status="429")

    def call(_: int) -> httpx.Response:
        return httpx.post(url, json=body, headers=small_server.headers, timeout=120)

    hold_file.touch()
    try:
        with ThreadPoolExecutor(n) as pool:
            futures = [pool.submit(call, i) for i in range(n)]

            def all_placed() -> bool:  # each request is refused, queued or in the (held) encoder
                refused = metric(small_server, "longvec_requests_total", route="/v1/embeddings", status="429")
                placed = metric(small_server, "longvec_queue_depth") + metric(small_server, "longvec_encoder_busy")
                return refused - refused_before + placed == n

            server_tools.poll(all_placed, "every request of the burst to be refused, queued or running")
            hold_file.unlink()
            responses = [f.result() for f in futures]
    finally:
        hold_file.unlink(missing_ok=True)
    statuses = [r.status_code for r in responses]
    assert all(s in (200, 429) for s in statuses), statuses
    assert 1 <= statuses.count(200) <= 3 and statuses.count(429) >= n - 3, statuses
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


def test_a_client_that_leaves_is_dropped_from_the_queue(small_server: Any, hold_file: Path, server_tools: Any) -> None:
    """Was racy: the busy request could finish before the queued client's 0.3 s read timeout ("DID NOT RAISE
    ReadTimeout" on an idle machine). Now the busy request is held in the encoder until the test lets it go."""
    url, headers, metric = f"{small_server.url}/v1/embeddings", small_server.headers, server_tools.metric
    gone = {"route": "/v1/embeddings", "status": "499"}
    dropped_before = metric(small_server, "longvec_requests_total", **gone)
    result: dict[str, httpx.Response] = {}
    hold_file.touch()
    try:
        busy = threading.Thread(
            target=lambda: result.update(
                r=httpx.post(url, json={"input": "the bell rang"}, headers=headers, timeout=120)
            )
        )
        busy.start()
        server_tools.poll(lambda: metric(small_server, "longvec_encoder_busy") == 1, "the busy request to be running")
        with pytest.raises(httpx.ReadTimeout):  # queued behind the held request, and the client gives up
            httpx.post(url, json={"input": "impatient"}, headers=headers, timeout=httpx.Timeout(60, read=0.3))
        server_tools.poll(
            lambda: metric(small_server, "longvec_requests_total", **gone) == dropped_before + 1,
            "the abandoned request to be dropped (499)",
        )
        assert metric(small_server, "longvec_queue_depth") in (0, 1)  # dropped now, or skipped when its turn comes
    finally:
        hold_file.unlink(missing_ok=True)
    busy.join(120)
    assert result["r"].status_code == 200
    server_tools.poll(lambda: metric(small_server, "longvec_requests_in_flight") == 1, "no request left in flight")


def test_sigterm_finishes_the_request_in_flight_and_exits_0(
    small_server: Any, embedder: Embedder, hold_file: Path, server_tools: Any
) -> None:
    """Was racy twice: the request could finish before SIGTERM arrived, and a fixed 0.5 s sleep stood in for
    "the listener is closed". Now the request is held in the encoder across the signal, and the test polls until
    new connections are refused."""
    text = "the keeper climbed the stairs to the lamp room " * 300  # ~2.7k tokens: several windows
    result: dict[str, httpx.Response] = {}

    def long_request() -> None:
        result["r"] = httpx.post(
            f"{small_server.url}/v1/embeddings", json={"input": text}, headers=small_server.headers, timeout=120
        )

    hold_file.touch()
    try:
        worker = threading.Thread(target=long_request)
        worker.start()
        server_tools.poll(lambda: server_tools.metric(small_server, "longvec_encoder_busy") == 1, "the request to run")
        small_server.proc.send_signal(signal.SIGTERM)

        def refused() -> bool:
            try:
                httpx.get(f"{small_server.url}/health", timeout=5)
            except httpx.TransportError:
                return True
            return False

        server_tools.poll(refused, "the server to stop accepting connections", timeout=30)
    finally:
        hold_file.unlink(missing_ok=True)
    worker.join(120)
    r = result["r"]
    assert r.status_code == 200, r.text
    got = np.array(r.json()["data"][0]["embedding"], dtype=np.float32)
    assert float(got @ embedder.embed([text])[0]) >= 0.99999
    assert small_server.proc.wait(60) == 0, small_server.log_text()
