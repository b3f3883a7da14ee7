"""Issue 22 items 3-6 and its Low items, each bounded and on 127.0.0.1: a client that never reads cannot pin
memory (write timeout, one unread response per connection), idle sockets cannot fill the connection cap and
probes always answer, the text log cannot be forged, booleans and numbers at startup are parsed strictly, a model's
NaN is a typed 500, a body timeout is the client's 408; plus issue 21's operator view (error reasons in the access
log, stage histograms in /metrics) and request conventions (spans imply chunking, snap, float32 JSON)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from longvec.runtime import Embedder
from longvec.runtime.server import ServeSettings, create_app
from longvec.runtime.server.payloads import shortest_float32

WORDS = "the keeper lit the lamp at dusk and watched the ships pass the rocks while storms rolled in from the west "


def port_of(server: Any) -> int:
    return int(server.url.rsplit(":", 1)[1])


def request_bytes(server: Any, path: str, body: dict[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {server.api_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


def post(server: Any, path: str, body: Any) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, headers=server.headers, timeout=120)


# --- item 3: a client that never reads ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded(server_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    hold = tmp_path_factory.mktemp("hold") / "hold"
    with server_factory(
        "--write-timeout", "2", "--max-connections", "12", "--header-timeout", "5", "--body-timeout", "2",
        env={"LONGVEC_TEST_HOLD_FILE": str(hold)},
    ) as s:  # fmt: skip
        s.hold = hold
        yield s


def test_a_client_that_never_reads_is_dropped_and_its_next_request_never_runs(guarded: Any, server_tools: Any) -> None:
    """Finding N3: responses of clients that never read stayed in memory past the keep-alive timeout, and a
    pipelined second response was rendered and held too. Now the connection is dropped after --write-timeout
    without progress, and the pipelined request behind the unread response never starts."""
    route = {"route": "/v1/embeddings", "status": "200"}
    before = server_tools.metric(guarded, "longvec_requests_total", **route)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small receive window
    sock.connect(("127.0.0.1", port_of(guarded)))
    one = request_bytes(guarded, "/v1/embeddings", {"input": ["lamp light"] * 2048})  # a ~8 MB response
    sock.sendall(one + one)  # two pipelined requests, and nothing read
    try:
        server_tools.poll(lambda: "response bytes unread" in guarded.log_text(), "the write timeout", timeout=90)
        time.sleep(0.5)  # let a (wrongly) started second request reach the metrics
        assert server_tools.metric(guarded, "longvec_requests_total", **route) - before == 1
        received = 0
        sock.settimeout(10)
        try:
            while chunk := sock.recv(1 << 16):
                received += len(chunk)
        except (ConnectionResetError, TimeoutError):
            pass
        assert received < 4_000_000, received  # the rest of the response was dropped with the connection
    finally:
        sock.close()
    assert httpx.get(f"{guarded.url}/ready", timeout=10).status_code == 200


# --- item 4: the connection cap -----------------------------------------------------------------------------


def test_idle_sockets_cannot_lock_anyone_out(guarded: Any) -> None:
    """Finding N4: 256 sockets that sent nothing (no key needed) filled the cap; every legit request, /health
    included, got 503. Now a new connection takes the place of the oldest idle one."""
    idle = [socket.create_connection(("127.0.0.1", port_of(guarded)), timeout=10) for _ in range(24)]  # cap 12
    try:
        for _ in range(3):
            assert httpx.get(f"{guarded.url}/health", timeout=10).status_code == 200
            r = httpx.post(f"{guarded.url}/v1/embeddings", json={"input": "hi"}, headers=guarded.headers, timeout=60)
            assert r.status_code == 200, r.text
            idle.append(socket.create_connection(("127.0.0.1", port_of(guarded)), timeout=10))  # the attacker refills
    finally:
        for s in idle:
            s.close()


def test_probes_answer_when_every_connection_is_busy(guarded: Any, server_tools: Any) -> None:
    """Every connection of the cap holds a request in flight (the encoder is held): /health and /ready still
    answer, other routes get 503, and the held requests complete once the encoder runs again."""
    guarded.hold.touch()
    busy: list[socket.socket] = []
    try:
        for i in range(12):
            s = socket.create_connection(("127.0.0.1", port_of(guarded)), timeout=30)
            s.sendall(request_bytes(guarded, "/v1/embeddings", {"input": f"held {i}"}))
            busy.append(s)
        # 12 held plus the /metrics request itself (probes and scrapes pass over the cap)
        server_tools.poll(lambda: server_tools.metric(guarded, "longvec_requests_in_flight") >= 13, "12 in flight")
        assert httpx.get(f"{guarded.url}/health", timeout=10).status_code == 200
        assert httpx.get(f"{guarded.url}/ready", timeout=10).status_code == 200
        r = httpx.get(f"{guarded.url}/v1/models", headers=guarded.headers, timeout=10)
        assert r.status_code == 503 and "--max-connections" in r.json()["error"]["message"], r.text
    finally:
        guarded.hold.unlink()
    for s in busy:
        s.settimeout(60)
        assert s.recv(12) == b"HTTP/1.1 200"
        s.close()


# --- Low: a body timeout is the client's fault --------------------------------------------------------------


def test_a_body_timeout_is_a_408_not_a_500(guarded: Any, server_tools: Any) -> None:
    route = "/v1/embeddings"
    before = {s: server_tools.metric(guarded, "longvec_requests_total", route=route, status=s) for s in ("408", "500")}
    sock = socket.create_connection(("127.0.0.1", port_of(guarded)), timeout=10)
    head = f"POST {route} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {guarded.api_key}\r\n"
    sock.sendall(head.encode() + b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
    sock.settimeout(30)
    answer = b""
    try:
        while chunk := sock.recv(4096):
            answer += chunk
    except ConnectionResetError:
        pass
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "request_timeout"
    server_tools.poll(
        lambda: server_tools.metric(guarded, "longvec_requests_total", route=route, status="408") == before["408"] + 1,
        "the body timeout to be counted as 408",
    )
    assert server_tools.metric(guarded, "longvec_requests_total", route=route, status="500") == before["500"]


# --- item 5: log injection ----------------------------------------------------------------------------------


def test_the_text_log_cannot_be_forged(server: Any, server_tools: Any) -> None:
    """Finding N5: a percent-decoded path reached the text log raw, so %0A forged a whole line and ESC bytes
    reached the terminal."""
    forged = "2026-12-02T00:00:00.000Z INFO request request_id=FORGED"
    path = "/x%0A" + forged.replace(" ", "%09") + "%1B%5B31m%0D"
    sock = socket.create_connection(("127.0.0.1", port_of(server)), timeout=10)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert sock.recv(12) == b"HTTP/1.1 404"
    sock.close()
    server_tools.poll(lambda: "FORGED" in server.log_text(), "the access line")
    log = server.log_text()
    assert not any(line.startswith("2026-12-02T00:00:00.000Z") for line in log.splitlines())
    assert "\x1b" not in log and "\r" not in log and "\t" not in log
    assert "\\n2026-12-02T00:00:00.000Z\\tINFO" in log  # the path is there, escaped


# --- item 6 and Low: startup checks -------------------------------------------------------------------------


@pytest.fixture
def refused(tmp_path: Path, longvec_cli: list[str]) -> Callable[..., str]:
    """Run `longvec serve` on a missing bundle with this environment; return stderr after asserting exit 4
    (a startup refusal, before the bundle is read and before any port is bound)."""
    import os
    import subprocess

    def run(*args: str, env: dict[str, str] | None = None) -> str:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("LONGVEC_")}
        done = subprocess.run(
            [*longvec_cli, "serve", str(tmp_path / "missing"), "--port", "1", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={**clean, **(env or {})},
        )
        assert done.returncode == 4, (args, env, done.returncode, done.stderr)
        assert "Traceback" not in done.stderr
        return done.stderr

    return run


@pytest.mark.parametrize("value", ["false", "no", "off", "0", "", "False", "OFF"])
def test_no_auth_false_words_keep_auth_on(refused: Callable[..., str], value: str) -> None:
    """Finding N6: LONGVEC_NO_AUTH=false turned auth off (exit 3, the bundle, came next). Only 1/true/yes/on do."""
    err = refused("--host", "0.0.0.0", env={"LONGVEC_NO_AUTH": value})
    assert "reachable from other machines and no API key is set" in err


def test_no_auth_unknown_words_are_refused(refused: Callable[..., str]) -> None:
    err = refused("--host", "127.0.0.1", env={"LONGVEC_NO_AUTH": "maybe"})
    assert "LONGVEC_NO_AUTH='maybe' is not a yes or no" in err


def test_no_auth_true_words_turn_auth_off(tmp_path: Path, longvec_cli: list[str]) -> None:
    import os
    import subprocess

    clean = {k: v for k, v in os.environ.items() if not k.startswith("LONGVEC_")}
    for value in ("1", "true", "YES", "on"):
        done = subprocess.run(
            [*longvec_cli, "serve", str(tmp_path / "missing"), "--host", "0.0.0.0", "--port", "1"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**clean, "LONGVEC_NO_AUTH": value},
        )
        assert done.returncode == 3, (value, done.stderr)  # auth passed: the missing bundle is the next error


@pytest.mark.parametrize(
    "args",
    [
        ("--request-timeout", "nan"),
        ("--request-timeout", "inf"),
        ("--keep-alive-timeout", "inf"),
        ("--graceful-timeout", "inf"),
        ("--write-timeout", "nan"),
        ("--threads", "-1"),
    ],
)
def test_non_finite_or_negative_numbers_are_refused(refused: Callable[..., str], args: tuple[str, str]) -> None:
    """Finding N12: nan passed the `< 1e-9` check (every request then got 504) and inf crashed with a traceback."""
    err = refused(*args)
    assert args[0] in err


@pytest.mark.parametrize("key", ["K ", " K", "K\n"])
def test_a_key_with_surrounding_whitespace_is_refused(refused: Callable[..., str], key: str) -> None:
    """Finding N12: a key read from a secret file with its newline was accepted, and no header ever matched."""
    err = refused(env={"LONGVEC_API_KEY": key})
    assert "whitespace" in err


# --- Low: a NaN from the model ------------------------------------------------------------------------------


@pytest.fixture
def nan_client(make_fake: Callable[..., Embedder], server_tools: Any) -> Iterator[TestClient]:
    emb = make_fake()
    backend = emb.backend
    real_run = backend.run

    def run(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        out = np.array(real_run(input_ids, attention_mask))
        out[..., 0] = np.nan
        return out

    backend.run = run  # type: ignore[method-assign]
    with TestClient(create_app(ServeSettings(model_name="fake"), lambda: emb), raise_server_exceptions=False) as c:
        yield c


def test_a_nan_from_the_model_is_a_typed_500_not_bare_nan(nan_client: TestClient, server_tools: Any) -> None:
    """Finding N10: a NaN weight gave 200 with bare NaN tokens, which strict JSON parsers reject."""
    server_tools.poll(lambda: nan_client.get("/ready").status_code == 200, "ready")
    for path, body in (
        ("/v1/embeddings", {"input": "a lamp"}),
        ("/v1/embeddings", {"input": "a lamp", "encoding_format": "base64"}),
        ("/v1/documents", {"documents": [{"id": "d", "text": "a lamp at dusk"}]}),
    ):
        r = nan_client.post(path, json=body)
        assert r.status_code == 500, r.text
        assert "NaN" not in r.text.replace("NaN or infinite", "")
        error = json.loads(r.text, parse_constant=lambda c: pytest.fail(f"bare {c} in JSON"))["error"]
        assert error["code"] == "model_output_not_finite" and error["type"] == "server_error"


# --- Low and round one: small HTTP points -------------------------------------------------------------------


def test_a_stride_error_names_stride(server: Any) -> None:
    body = {"documents": [{"id": "a", "text": "alpha beta"}], "window": 128, "stride": 1000, "mode": "late"}
    r = post(server, "/v1/documents", body)
    assert r.status_code == 422 and r.json()["error"]["param"] == "stride", r.text


def test_a_lone_surrogate_id_is_refused_not_echoed(server: Any) -> None:
    raw = b'{"documents": [{"id": "\\ud800", "text": "alpha beta"}]}'
    headers = {**server.headers, "content-type": "application/json"}
    r = httpx.post(f"{server.url}/v1/documents", content=raw, headers=headers, timeout=30)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["param"] == "documents[0].id" and "lone surrogate" in r.json()["error"]["message"]
    assert "\\ud800" not in r.text


@pytest.mark.parametrize("content_type", [None, "text/plain"])
def test_a_body_that_is_not_declared_json_says_so(server: Any, content_type: str | None) -> None:
    headers = dict(server.headers)
    if content_type:
        headers["content-type"] = content_type
    r = httpx.post(f"{server.url}/v1/embeddings", content=b'{"input": "a"}', headers=headers, timeout=30)
    assert r.status_code == 422, r.text
    message = r.json()["error"]["message"]
    assert "send Content-Type: application/json" in message
    assert ("no Content-Type header" in message) == (content_type is None)


def test_error_bodies_are_one_style(server: Any) -> None:
    """Issue 21: the gate wrote `{"error": {` and the routes `{"error":{`."""
    bodies = [
        httpx.post(f"{server.url}/v1/embeddings", json={"input": "a"}, timeout=30).content,  # the gate: 401
        post(server, "/v1/embeddings", {"input": "a", "x": 1}).content,  # a route: 422
        httpx.get(f"{server.url}/nowhere", timeout=30).content,  # 404
    ]
    for body in bodies:
        assert body.startswith(b'{"error":{"message":'), body


# --- issue 21: the operator's view --------------------------------------------------------------------------


def test_error_answers_carry_their_reason_in_the_access_log(server: Any, server_tools: Any) -> None:
    r = post(server, "/v1/embeddings", {"input": "a", "dimensions": 100000})
    assert r.status_code == 422
    rid = r.headers["x-request-id"]
    server_tools.poll(lambda: f"request_id={rid}" in server.log_text(), "the access line")
    [line] = [ln for ln in server.log_text().splitlines() if f"request_id={rid}" in ln]
    assert "status=422" in line and "error=invalid_input" in line and 'message="dimensions must be in' in line
    assert server_tools.metric(server, "longvec_errors_total", route="/v1/embeddings", code="invalid_input") >= 1


def test_metrics_split_a_request_into_its_stages(server: Any, server_tools: Any) -> None:
    assert post(server, "/v1/embeddings", {"input": WORDS * 20}).status_code == 200
    for name, labels in (
        ("longvec_tokenization_duration_seconds_count", {"route": "/v1/embeddings"}),
        ("longvec_queue_duration_seconds_count", {}),
        ("longvec_inference_duration_seconds_count", {}),
        ("longvec_request_input_tokens_count", {"route": "/v1/embeddings"}),
    ):
        assert server_tools.metric(server, name, **labels) >= 1, name
    assert server_tools.metric(server, "longvec_request_input_tokens_bucket", route="/v1/embeddings", le="16.0") < (
        server_tools.metric(server, "longvec_request_input_tokens_bucket", route="/v1/embeddings", le="+Inf")
    )
    r = httpx.get(f"{server.url}/v1/models/{server.model}", headers=server.headers, timeout=10)
    assert r.status_code == 200
    assert server_tools.metric(server, "longvec_requests_total", route="/v1/models/{id}", status="200") >= 1


def test_info_prints_limits_as_ints(server: Any) -> None:
    info = httpx.get(f"{server.url}/info", timeout=10).json()
    assert info["limits"]["max_items"] == 64 and isinstance(info["limits"]["max_items"], int)
    assert all(isinstance(v, int) for v in info["limits"].values())  # request_timeout 300 s included
    assert info["variant"] == "optimized" and info["pooling"]["mode"] == "mean"
    assert info["max_batch_tokens"] == 1024 and info["prompts"] == {} and info["default_prompt_name"] is None


# --- issue 21 item 4: conventions ---------------------------------------------------------------------------


def test_spans_imply_chunking_and_snap_widens_them(server: Any, embedder: Embedder) -> None:
    text = "The keeper lit the lamp at dusk. Ships passed the rocks."
    spans = [[0, 31], [33, 56]]
    r = post(server, "/v1/documents", {"documents": [{"id": "a", "text": text, "spans": spans}]})
    assert r.status_code == 200, r.text  # no chunking given: the spans imply it, as in the library
    chunks = r.json()["data"][0]["chunks"]
    assert [[c["start"], c["end"]] for c in chunks] == spans
    inside = [[2, 12]]  # starts inside "The", ends inside "lit"
    r = post(server, "/v1/documents", {"documents": [{"id": "a", "text": text, "spans": inside}]})
    assert r.status_code == 422 and "inside the token" in r.json()["error"]["message"], r.text
    r = post(server, "/v1/documents", {"documents": [{"id": "a", "text": text, "spans": inside}], "snap": True})
    assert r.status_code == 200, r.text
    [want] = embedder.embed_documents([text], spans=[inside], snap=True)
    [got] = r.json()["data"][0]["chunks"]
    assert [[got["start"], got["end"]]] == want.chunk_spans.tolist() == [[0, 14]]
    vec = np.array(got["embedding"], dtype=np.float32)
    assert float(vec @ want.chunk_vectors[0]) >= 0.99999
    body = {"documents": [{"id": "a", "text": text, "spans": [[0, 31]]}], "chunking": "sentences"}
    r = post(server, "/v1/documents", body)  # an explicit contradiction is still an error
    assert r.status_code == 422 and r.json()["error"]["param"] == "documents[0].spans", r.text


def significant(number: str) -> str:
    """The significant digits of a decimal's text (mantissa, no sign, no leading or trailing zeros)."""
    return number.lower().split("e")[0].lstrip("-").replace(".", "").strip("0")


def test_floats_are_written_at_float32_precision(server: Any, embedder: Embedder) -> None:
    """Each JSON number is the shortest decimal that reads back as the same float32, as NumPy prints a float32
    (issue 21: a 10k-token /v1/documents response was 1.75x the size it needs)."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(20_000) * 10.0 ** rng.integers(-8, 8, 20_000)).astype(np.float32)
    x[:4] = [0.1, 0.5, -0.0, 1e-3]
    wide = shortest_float32(x)
    assert np.array_equal(wide.astype(np.float32), x)
    assert [repr(v) for v in wide[:4].tolist()] == ["0.1", "0.5", "-0.0", "0.001"]
    for v, f in zip(wide[4:3000].tolist(), x[4:3000]):
        assert significant(repr(v)) == significant(np.format_float_scientific(f, unique=True)), (v, f)

    text = (WORDS * 500)[:40_000]
    r = post(server, "/v1/documents", {"documents": [{"id": "a", "text": text}]})
    assert r.status_code == 200
    got = r.json()["data"][0]
    [want] = embedder.embed_documents([text], chunking="tokens")
    assert np.array(got["embedding"], dtype=np.float32) @ want.vector >= 0.99999
    numbers = r.text.split('"embedding":[')[1].split("]")[0].split(",")
    assert max(len(significant(n)) for n in numbers) <= 9
