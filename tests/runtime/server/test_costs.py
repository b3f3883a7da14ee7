"""Issue 22, items 1-2 and Info: the cost model counts everything a request can make before any work (chunk tokens
to pool, sparse pairs), a text is refused from its characters before it is tokenized, admissions in flight are
bounded together, and the queue weighs requests in encoder positions. Servers on 127.0.0.1 with default limits."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from longvec.runtime import Embedder, LimitExceeded, OverloadedError
from longvec.runtime.core.budget import Limits
from longvec.runtime.server.admission import InFlight

WORDS = " ".join("".join(random.Random(i).choice("abcdefghijklmnopqrstuvwxyz") for _ in range(6)) for i in range(1000))
BOUND_MB = 250  # issue 22: no request under the body cap takes the server above +250 MB


@pytest.fixture(scope="module")
def default_server(server_factory: Callable[..., Any]) -> Iterator[Any]:
    with server_factory() as s:
        yield s


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


@contextmanager
def peak_growth(pid: int) -> Iterator[list[int]]:
    """[peak RSS growth in bytes] of process `pid` while the block runs, sampled every 20 ms."""
    base, out, done = _rss(pid), [0], threading.Event()

    def watch() -> None:
        while not done.is_set():
            out[0] = max(out[0], _rss(pid) - base)
            time.sleep(0.02)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        yield out
    finally:
        done.set()
        t.join()


def post(server: Any, path: str, body: Any) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, headers=server.headers, timeout=300)


def test_overlapping_spans_with_sparse_are_refused_before_the_work(default_server: Any) -> None:
    """The probe's N1: 4,096 copies of one full span with sparse made a 164 MB response and +0.86 GB."""
    spans = [[0, len(WORDS)]] * 4096
    for sparse in (True, False):
        body = {"documents": [{"id": "a", "text": WORDS, "spans": spans}], "chunking": "spans", "mode": "late"}
        with peak_growth(default_server.proc.pid) as growth:
            started = time.monotonic()
            r = post(default_server, "/v1/documents", body | {"sparse": sparse})
            elapsed = time.monotonic() - started
        print(f"sparse={sparse}: {r.status_code} in {elapsed:.2f} s, +{growth[0] >> 20} MB")
        assert r.status_code == 413, r.text[:300]
        error = r.json()["error"]
        assert "chunk tokens to pool" in error["message"] and "--max-request-encoder-tokens" in error["message"]
        assert error["param"] == "documents" and growth[0] < BOUND_MB << 20
    few = {"documents": [{"id": "a", "text": WORDS, "spans": [[0, len(WORDS)]] * 2}], "chunking": "spans"}
    assert post(default_server, "/v1/documents", few | {"mode": "late", "sparse": True}).status_code == 200


@pytest.mark.parametrize(("text", "what"), [("!" * 4_194_240, "punctuation"), ("東" * 1_398_080, "CJK")])
def test_text_that_surely_passes_the_token_bound_is_refused_before_tokenizing(
    default_server: Any, text: str, what: str
) -> None:
    """The probe's N2: 4 MiB of "!" got its 413 after 14.7 s and +2.34 GB (29.6 s and +2.1 GB at load 10)."""
    with peak_growth(default_server.proc.pid) as growth:
        started = time.monotonic()
        r = post(default_server, "/v1/embeddings", {"input": text})
        elapsed = time.monotonic() - started
    print(f"{what}: {r.status_code} in {elapsed:.2f} s, +{growth[0] >> 20} MB")
    assert r.status_code == 413 and "counted from its characters" in r.json()["error"]["message"], r.text
    assert growth[0] < BOUND_MB << 20 and elapsed < 10.0  # counting characters, not tokenizing: seconds, no GBs


def test_sparse_pairs_and_pooling_are_in_the_cost(fake: Embedder) -> None:
    text = "one two three four five six seven eight nine ten"
    call = fake.document_call(sparse=True, spans=True)
    prepared = fake.prepare_documents(call, [text], [[[0, len(text)]] * 50])
    n = prepared.cost.tokens
    assert prepared.cost.pooled_tokens == 50 * n and prepared.cost.chunks == 50
    assert 50 * 10 <= prepared.cost.sparse_terms <= 50 * 11  # ten words per span, plus one cut each
    with pytest.raises(LimitExceeded, match="sparse"):
        Limits(max_sparse_terms=499).check(prepared.cost)
    with pytest.raises(LimitExceeded, match="pool"):
        Limits(max_pooled_tokens=50 * n - 1).check(prepared.cost)
    packed = fake.prepare_documents(fake.document_call(chunk_tokens=16, sparse=True), [text])
    assert packed.cost.pooled_tokens == packed.cost.tokens and packed.cost.sparse_terms <= 10 + packed.cost.chunks
    assert fake.prepare_documents(fake.document_call(), [text]).cost.sparse_terms == 0  # not asked for


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.sampled_from(list("ab1!.,;- \t\n\r東é\u0301\x1c\u00a0_'\"$€")), max_size=80))
def test_the_character_floor_never_passes_the_real_count(fake: Embedder, text: str) -> None:
    # the fixture is only read (its tokenizer), so sharing it between examples is fine
    [tokens] = fake.tokenizer.encode([text])
    assert fake.tokenizer.min_tokens(text) <= len(tokens)


def test_the_floor_is_tight_on_prose(fake: Embedder) -> None:
    with open("examples/lighthouses.txt", encoding="utf-8") as f:
        prose = f.read()
    floor, real = fake.tokenizer.min_tokens(prose), fake.count_tokens([prose])[0]
    assert 0.9 * real <= floor <= real


def test_admissions_in_flight_are_bounded_together() -> None:
    gate = InFlight(limit=100)
    with gate.hold(80):
        with pytest.raises(OverloadedError, match="being admitted"), gate.hold(30):
            pass
        with gate.hold(20):  # fits beside it
            pass
    with gate.hold(500):  # a request alone always enters
        pass


def test_the_queue_weighs_requests_in_encoder_positions(fake: Embedder, server_tools: Any) -> None:
    """Info item: --max-queue-tokens counted content tokens (a window-512/stride-32 request is 16x its tokens)."""
    from fastapi.testclient import TestClient

    from longvec.runtime.server import ServeSettings, create_app
    from longvec.runtime.server.batcher import Batcher

    seen: list[int] = []
    submit = Batcher.submit

    async def spy(self: Batcher, work: Any) -> Any:
        seen.append(work.n_tokens)
        return await submit(self, work)

    app = create_app(ServeSettings(model_name="fake", min_stride=1), lambda: fake)
    Batcher.submit = spy  # type: ignore[method-assign]
    try:
        with TestClient(app) as c:
            server_tools.poll(lambda: c.get("/ready").status_code == 200, "the model to be ready")
            body = {"documents": [{"id": "a", "text": WORDS[:3000]}], "mode": "late", "window": 64, "stride": 4}
            r = c.post("/v1/documents", json=body)
    finally:
        Batcher.submit = submit  # type: ignore[method-assign]
    assert r.status_code == 200, r.text
    n_tokens = r.json()["data"][0]["n_tokens"]
    plan = fake.plan(window=64, stride=4)
    assert seen == [plan.n_windows(n_tokens) * plan.window] and seen[0] > 10 * n_tokens
