"""ASGI middleware in front of the routes: metrics around everything; API key, body size cap and UTF-8 check
for the /v1 routes before any body is parsed (an unauthenticated or oversized request never reaches JSON)."""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import Any

from longvec.runtime.errors import InputError, LimitExceeded
from longvec.runtime.server.http_errors import Unauthorized, error_bytes
from longvec.runtime.server.metrics import Metrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def send_error(send: Send, exc: BaseException) -> None:
    status, body, headers = error_bytes(exc)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Collection[str]) -> None:
        self.app, self.metrics, self.routes = app, metrics, frozenset(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in self.routes else "other"  # bounded label values
        status = 500
        started = time.perf_counter()

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        self.metrics.in_flight.add(1)
        try:
            await self.app(scope, receive, send_and_record)
        finally:
            self.metrics.in_flight.add(-1)
            self.metrics.requests.inc(route, str(status))
            self.metrics.latency.observe(time.perf_counter() - started, route)


class RequestGate:
    def __init__(self, app: ASGIApp, api_key: str | None, max_body_bytes: int, prefix: str = "/v1/") -> None:
        self.app, self.max_body_bytes, self.prefix = app, max_body_bytes, prefix
        self._key = f"Bearer {api_key}".encode() if api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if self._key is not None and not hmac.compare_digest(headers.get(b"authorization", b""), self._key):
            await send_error(send, Unauthorized("missing or wrong API key; send the header Authorization: Bearer KEY"))
            return
        too_big = LimitExceeded(
            f"the request body is larger than {self.max_body_bytes} bytes (--max-body-bytes / LONGVEC_MAX_BODY_BYTES)"
        )
        declared = headers.get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            await send_error(send, too_big)
            return
        body = bytearray()
        while True:  # a chunked body has no length up front: count as it arrives
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                await send_error(send, too_big)
                return
            if not message.get("more_body", False):
                break
        try:
            bytes(body).decode("utf-8")
        except UnicodeDecodeError as e:
            await send_error(send, InputError(f"the request body is not valid UTF-8 (byte {e.start}): {e.reason}"))
            return
        await self.app(scope, _replay(bytes(body), receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body we already read, once; after that the real channel (so a disconnect is still seen)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
