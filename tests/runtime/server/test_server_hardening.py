"""Issue 15's findings against a real `longvec serve` on 127.0.0.1, each bounded in count and time: requests that
would amplify the work or the output get 413 naming the limit before any encoding; abandoned and overdue work
stops within one encoder batch; slow clients are closed by the read timeouts; SIGTERM is bounded by
--graceful-timeout; small HTTP conformance points."""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

WORDS = "the keeper lit the lamp at dusk and watched the ships pass the rocks while storms rolled in from the west "
BOOK_29K = WORDS * 1_450  # ~29k tokens, the abandoned request of the finding


@pytest.fixture(scope="module")
def hardened(server_factory: Any) -> Iterator[Any]:
    """Default limits; short read timeouts and a connection cap small enough to test."""
    with server_factory("--header-timeout", "1", "--body-timeout", "2", "--max-connections", "140") as s:
        yield s


def post(server: Any, path: str, body: Any, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, headers=server.headers, timeout=120, **kwargs)


def error_of(r: httpx.Response) -> dict[str, Any]:
    return dict(r.json()["error"])


def raw_request(server: Any, path: str, body: dict[str, Any]) -> socket.socket:
    """Send a whole request on a plain socket, so the test can walk away from it."""
    data = json.dumps(body).encode()
    port = int(server.url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {server.api_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    sock.sendall(head.encode() + data)
    return sock


# --- findings 1, 2, 4, 6: amplification is refused before any work -----------------------------------------


@pytest.mark.parametrize(
    ("body", "limit"),
    [
        # finding 1 at the smallest chunk size allowed, on a longer text: more chunk vectors than --max-chunks
        ({"documents": [{"id": "a", "text": WORDS * 3_400}], "chunk_tokens": 16}, "--max-chunks"),
        # the smallest stride allowed on a longer text: 16 encoder tokens per text token
        (
            {"documents": [{"id": "a", "text": WORDS * 900}], "window": 512, "stride": 32},
            "--max-request-encoder-tokens",
        ),
        # naive mode encodes every caller span alone: 20 spans over the whole of a 20k-token text
        (
            {
                "documents": [{"id": "a", "text": WORDS * 1_000, "spans": [[0, len(WORDS) * 1_000 - 1]] * 20}],
                "chunking": "spans",
                "mode": "naive",
            },
            "--max-request-encoder-tokens",
        ),
    ],
    ids=["many-chunks", "stride-32-long", "overlapping-naive-spans"],
)
def test_amplification_gets_413_naming_the_limit(
    hardened: Any, server_tools: Any, body: dict[str, Any], limit: str
) -> None:
    calls_before = server_tools.metric(hardened, "longvec_batch_requests_count")
    started = time.monotonic()
    r = post(hardened, "/v1/documents", body)
    elapsed = time.monotonic() - started
    assert r.status_code == 413, r.text
    assert limit in error_of(r)["message"] and error_of(r)["code"] == "request_too_large"
    assert server_tools.metric(hardened, "longvec_batch_requests_count") == calls_before  # nothing was encoded
    assert elapsed < 30, elapsed  # refused after tokenizing, not after encoding (generous: a loaded machine)


@pytest.mark.parametrize(
    ("body", "param", "flag"),
    [
        # finding 1: one chunk per token of 142 KB
        ({"documents": [{"id": "a", "text": WORDS * 1_300}], "chunk_tokens": 1}, "chunk_tokens", "--min-chunk-tokens"),
        ({"documents": [{"id": "a", "text": WORDS * 1_300}], "chunk_tokens": 4}, "chunk_tokens", "--min-chunk-tokens"),
        # finding 2: window 512 with stride 1
        ({"documents": [{"id": "a", "text": WORDS * 50}], "window": 512, "stride": 1}, "stride", "--min-stride"),
    ],
    ids=["chunk_tokens-1", "chunk_tokens-4", "stride-1"],
)
def test_values_below_a_server_minimum_are_422_naming_the_flag(
    hardened: Any, server_tools: Any, body: dict[str, Any], param: str, flag: str
) -> None:
    """Issue 21: a too-small value was answered 413 "too large"; it is a bad value (422), refused before work."""
    calls_before = server_tools.metric(hardened, "longvec_batch_requests_count")
    r = post(hardened, "/v1/documents", body)
    assert r.status_code == 422, r.text
    error = error_of(r)
    assert flag in error["message"] and "below this server's minimum" in error["message"]
    assert error["param"] == param and error["code"] == "invalid_input"
    assert server_tools.metric(hardened, "longvec_batch_requests_count") == calls_before


def test_span_bound_beyond_int64_is_422(hardened: Any) -> None:
    """Finding 4: a span bound >= 2**63 was a 500 (OverflowError)."""
    body = {"documents": [{"id": "a", "text": "alpha beta", "spans": [[0, 2**63]]}], "chunking": "spans"}
    r = post(hardened, "/v1/documents", body)
    assert r.status_code == 422, r.text
    assert "out of range" in error_of(r)["message"] and error_of(r)["param"] == "documents[0].spans"


def test_many_tiny_documents_are_refused_by_count_and_the_loop_stays_responsive(hardened: Any) -> None:
    """Finding 6: 1.4M tiny documents blocked the event loop for 10 s. Under the default 4 MiB body cap a body
    holds at most ~180k of them, refused by --max-items without tokenizing."""
    docs = [{"id": str(i), "text": "a"} for i in range(130_000)]
    payload = json.dumps({"documents": docs}).encode()
    assert len(payload) < 4 * 2**20
    started = time.monotonic()
    r = httpx.post(
        f"{hardened.url}/v1/documents",
        content=payload,
        headers={**hardened.headers, "content-type": "application/json"},
        timeout=120,
    )
    elapsed = time.monotonic() - started
    assert r.status_code == 413 and "--max-items" in error_of(r)["message"], r.text
    print(f"130k tiny documents refused in {elapsed:.2f}s")
    assert elapsed < 20


def test_a_body_over_the_cap_is_refused_before_it_is_read(hardened: Any) -> None:
    r = httpx.post(
        f"{hardened.url}/v1/embeddings",
        content=b"x" * (4 * 2**20 + 1),
        headers={**hardened.headers, "content-type": "application/json"},
        timeout=60,
    )
    assert r.status_code == 413 and "--max-body-bytes" in error_of(r)["message"]


# --- finding 3: abandoned and overdue work stops within one encoder batch --------------------------------------


def test_an_abandoned_request_frees_the_encoder_within_one_batch(hardened: Any, server_tools: Any) -> None:
    """A client sends a 29k-token request (~20 s of encoding here) and leaves while it is being encoded: a
    1-token request behind it answers in under a second (one encoder call, 4 x 256, is ~0.35 s on 2 cores)."""
    gone = {"route": "/v1/embeddings", "status": "499"}
    dropped_before = server_tools.metric(hardened, "longvec_requests_total", **gone)
    sock = raw_request(hardened, "/v1/embeddings", {"input": BOOK_29K})
    server_tools.poll(lambda: server_tools.metric(hardened, "longvec_encoder_busy") == 1, "the request to run")
    sock.close()
    started = time.monotonic()
    r = post(hardened, "/v1/embeddings", {"input": "hi"})
    elapsed = time.monotonic() - started
    assert r.status_code == 200, r.text
    print(f"1-token request behind an abandoned 29k-token one: {elapsed:.3f}s")
    assert elapsed < 1.0, elapsed
    server_tools.poll(
        lambda: server_tools.metric(hardened, "longvec_requests_total", **gone) == dropped_before + 1,
        "the abandoned request to be counted (499)",
    )


def test_request_timeout_is_504_and_stops_the_work(server_factory: Any, server_tools: Any) -> None:
    with server_factory("--request-timeout", "2") as s:
        started = time.monotonic()
        r = post(s, "/v1/documents", {"documents": [{"id": "book", "text": BOOK_29K}]})
        elapsed = time.monotonic() - started
        assert r.status_code == 504, r.text
        assert "--request-timeout" in error_of(r)["message"] and error_of(r)["code"] == "timeout"
        assert elapsed < 2 + 10, elapsed  # the deadline, plus admission (tokenizing) on a loaded machine
        started = time.monotonic()
        assert post(s, "/v1/embeddings", {"input": "hi"}).status_code == 200
        assert time.monotonic() - started < 1.0  # the encoder was freed within one batch of the deadline


# --- finding 5: read timeouts and a connection cap -----------------------------------------------------------


def _closed_within(sock: socket.socket, seconds: float) -> bytes | None:
    """What the server sent before closing the connection, or None if it was still open after `seconds`."""
    sock.settimeout(seconds)
    got = b""
    try:
        while chunk := sock.recv(4096):
            got += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return got


def test_128_slow_clients_are_closed_by_the_read_timeouts(hardened: Any) -> None:
    """64 clients stop in the middle of their headers (they need no key), 64 in the middle of their body; with
    --header-timeout 1 and --body-timeout 2 every one is closed within a few seconds, and the server serves."""
    port = int(hardened.url.rsplit(":", 1)[1])
    slow: list[socket.socket] = []
    for i in range(128):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if i % 2:
            sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
        else:
            head = f"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {hardened.api_key}\r\n"
            sock.sendall(head.encode() + b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"input"')
        slow.append(sock)
    started = time.monotonic()
    answers = [_closed_within(sock, max(0.1, started + 20 - time.monotonic())) for sock in slow]
    elapsed = time.monotonic() - started
    for sock in slow:
        sock.close()
    still_open = sum(a is None for a in answers)
    assert still_open == 0, f"{still_open} of 128 slow clients still open after {elapsed:.1f}s"
    assert all(a is not None and a.startswith(b"HTTP/1.1 408") for a in answers[1::2])  # headers: told why
    print(f"128 slow clients closed in {elapsed:.1f}s")
    assert httpx.get(f"{hardened.url}/ready", timeout=10).status_code == 200


def test_idle_connections_over_the_cap_make_room_instead_of_locking_out(hardened: Any) -> None:
    """150 sockets that send nothing against a cap of 140: each one over the cap takes the place of the oldest
    idle one (closed without an answer; issue 22 finding N4: they used to fill the cap and lock everyone out),
    the others get 408 from the header timeout, and none is refused."""
    port = int(hardened.url.rsplit(":", 1)[1])
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(150)]
    try:
        answers = [_closed_within(sock, 15) for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    evicted = sum(1 for a in answers if a == b"")
    timed_out = sum(1 for a in answers if a is not None and a.startswith(b"HTTP/1.1 408"))
    assert evicted >= 10 and evicted + timed_out == 150, (evicted, timed_out)
    assert not any(a is not None and a.startswith(b"HTTP/1.1 503") for a in answers)
    assert httpx.get(f"{hardened.url}/ready", timeout=10).status_code == 200


# --- SIGTERM is bounded by --graceful-timeout ---------------------------------------------------------------


def test_sigterm_exits_within_the_graceful_timeout(server_factory: Any, server_tools: Any) -> None:
    """A 29k-token request in the encoder and a stalled upload: SIGTERM ends the process within the graceful
    timeout (2 s here) plus one encoder batch, with status 0."""
    with server_factory("--graceful-timeout", "2") as s:
        working = raw_request(s, "/v1/embeddings", {"input": BOOK_29K})
        port = int(s.url.rsplit(":", 1)[1])
        stalled = socket.create_connection(("127.0.0.1", port), timeout=10)
        head = f"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {s.api_key}\r\n"
        head += "Content-Length: 99\r\n\r\n"
        stalled.sendall(head.encode() + b"{")
        server_tools.poll(lambda: server_tools.metric(s, "longvec_encoder_busy") == 1, "the long request to run")
        started = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        code = s.proc.wait(60)
        elapsed = time.monotonic() - started
        working.close()
        stalled.close()
        print(f"exit {code} {elapsed:.2f}s after SIGTERM (graceful timeout 2 s)")
        assert code == 0, s.log_text()
        assert elapsed < 2 + 3, elapsed  # + one batch, uvicorn's 0.1 s polls and the interpreter's exit


# --- finding 10: small HTTP conformance -----------------------------------------------------------------------


def test_deeply_nested_json_is_422(hardened: Any) -> None:
    content = b'{"input": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    r = httpx.post(
        f"{hardened.url}/v1/embeddings",
        content=content,
        headers={**hardened.headers, "content-type": "application/json"},
        timeout=60,
    )
    assert r.status_code == 422, r.text
    assert "nested too deeply" in error_of(r)["message"]


def test_405_names_the_allowed_methods(hardened: Any) -> None:
    r = httpx.get(f"{hardened.url}/v1/embeddings", headers=hardened.headers, timeout=10)
    assert r.status_code == 405 and r.headers["Allow"] == "POST"
    assert error_of(r)["code"] == "method_not_allowed"


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer"])
def test_bearer_scheme_is_case_insensitive(hardened: Any, scheme: str) -> None:
    r = httpx.post(
        f"{hardened.url}/v1/embeddings",
        json={"input": "x"},
        headers={"Authorization": f"{scheme} {hardened.api_key}"},
        timeout=60,
    )
    assert r.status_code == 200, r.text


def test_docs_are_off_and_the_openapi_document_is_served(hardened: Any) -> None:
    """Swagger UI loads its scripts from a CDN and no installed package ships them: /docs is disabled rather
    than a blank page offline; /openapi.json stays."""
    assert httpx.get(f"{hardened.url}/docs", timeout=10).status_code == 404
    assert httpx.get(f"{hardened.url}/openapi.json", timeout=10).json()["info"]["title"] == "longvec"
