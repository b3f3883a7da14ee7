"""Many concurrent clients, mixed lengths: every response is exactly the library's result for its own inputs,
none is lost, and requests really share encoder batches."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import httpx
import numpy as np
import pytest

from longvec.runtime import Embedder

WORDS = (
    "the keeper lit lamp at dusk and watched ships pass rocks while storms rolled in from west sea wind light "
    "tower night harbor coast wave stone bell fog boat sail island north river town bridge"
)


def text_of(rng: random.Random, n_words: int) -> str:
    words = WORDS.split()
    return " ".join(rng.choice(words) for _ in range(n_words))


def workload(n_clients: int, per_client: int, long_lengths: list[int], seed: int = 7) -> list[list[str | list[str]]]:
    """Per client, a list of request inputs: mostly short, a few medium, and the given long ones."""
    rng = random.Random(seed)
    short = [text_of(rng, min(200, max(1, int(rng.expovariate(1 / 12))))) for _ in range(150)]
    medium = [text_of(rng, rng.randint(200, 600)) for _ in range(4)]
    long = {n: text_of(rng, n) for n in sorted(set(long_lengths))}
    slots: list[str | list[str]] = []
    for _ in range(n_clients * per_client - len(long_lengths)):
        roll = rng.random()
        if roll < 0.01:
            slots.append(rng.choice(medium))
        elif roll < 0.2:
            slots.append([rng.choice(short) for _ in range(rng.randint(2, 4))])
        else:
            slots.append(rng.choice(short))
    for n in long_lengths:
        slots.insert(rng.randrange(len(slots) + 1), long[n])
    return [slots[c * per_client : (c + 1) * per_client] for c in range(n_clients)]


async def run_clients(server: Any, clients: list[list[str | list[str]]], timeout: float) -> list[tuple[Any, Any]]:
    results: list[tuple[Any, Any]] = []
    limits = httpx.Limits(max_connections=len(clients), max_keepalive_connections=len(clients))
    async with httpx.AsyncClient(base_url=server.url, headers=server.headers, timeout=timeout, limits=limits) as http:

        async def client(inputs: list[str | list[str]]) -> None:
            for item in inputs:
                r = await http.post("/v1/embeddings", json={"input": item})
                results.append((item, r))

        await asyncio.wait_for(asyncio.gather(*(client(c) for c in clients)), timeout)
    return results


def batch_histogram(server: Any, metric: Any) -> tuple[float, float]:
    """(encoder calls with one request, all encoder calls) from /metrics."""
    return metric(server, "longvec_batch_requests_bucket", le="1.0"), metric(server, "longvec_batch_requests_count")


@pytest.mark.parametrize(
    "long_lengths",
    [
        pytest.param([5_000, 5_000, 20_000], id="few-long"),
        pytest.param([5_000, 8_000, 12_000, 20_000] * 6, id="2pct-long", marks=pytest.mark.slow),
    ],
)
def test_concurrent_clients_get_exactly_their_own_vectors(
    server: Any, embedder: Embedder, long_lengths: list[int], server_tools: Any
) -> None:
    clients = workload(64, 20, long_lengths)
    distinct = sorted({t for c in clients for item in c for t in ([item] if isinstance(item, str) else item)})
    counts = dict(zip(distinct, embedder.count_tokens(distinct)))
    assert min(counts.values()) == 1 and max(counts.values()) >= 20_000  # 1 token to 20k tokens
    started = time.monotonic()
    expected = {t: v for t, v in zip(distinct, embedder.embed(distinct))}
    library_seconds = time.monotonic() - started
    one_before, total_before = batch_histogram(server, server_tools.metric)

    # Bounded, but not a timing assertion: ~30 s on an idle machine. On a shared, busy machine the library's own
    # time for the distinct texts is the yardstick (the server's work is about twice that); a run under load
    # average ~15 needed more than 4x, so the bound leaves 8x.
    bound = max(180.0, 8 * library_seconds) * (1 if len(long_lengths) < 5 else 4)
    started = time.monotonic()
    results = asyncio.run(run_clients(server, clients, timeout=bound))
    elapsed = time.monotonic() - started

    assert len(results) == 64 * 20  # no response lost
    worst = 1.0
    for item, r in results:
        assert r.status_code == 200, r.text
        texts = [item] if isinstance(item, str) else item
        data = r.json()["data"]
        assert [d["index"] for d in data] == list(range(len(texts)))
        got = np.array([d["embedding"] for d in data], dtype=np.float32)
        want = np.stack([expected[t] for t in texts])
        worst = min(worst, float((got * want).sum(-1).min()))  # both unit length
        assert r.json()["usage"]["prompt_tokens"] == sum(counts[t] for t in texts)
    assert worst >= 0.99999
    one_after, total_after = batch_histogram(server, server_tools.metric)
    shared = (total_after - total_before) - (one_after - one_before)
    assert shared > 0, "no encoder call served more than one request"
    print(
        f"{len(results)} requests in {elapsed:.1f}s (library alone on the distinct texts: {library_seconds:.1f}s); "
        f"{total_after - total_before:.0f} encoder calls, "
        f"{shared:.0f} shared by several requests; min cosine {worst:.7f}"
    )
