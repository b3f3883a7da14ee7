"""ASGI middleware in front of the /v1 routes: API key, body size cap and UTF-8 check before any body is
parsed (an unauthenticated or oversized request never reaches JSON). How long a body may take to arrive is the
connection guard's business (longvec.runtime.server.protocol)."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from longvec.runtime.errors import InputError, LimitExceeded
from longvec.runtime.server.errors import Unauthorized, error_bytes

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def send_error(send: Send, exc: BaseException, extra_headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    status, body, headers = error_bytes(exc)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw + list(extra_headers)})
    await send({"type": "http.response.body", "body": body})


def bearer_token(authorization: bytes) -> bytes | None:
    """The credentials of an `Authorization: Bearer ...` header; the scheme is case-insensitive (RFC 7235)."""
    scheme, _, token = authorization.strip().partition(b" ")
    return token.strip() if scheme.lower() == b"bearer" and token.strip() else None


class RequestGate:
    def __init__(self, app: ASGIApp, api_key: str | None, max_body_bytes: int, prefix: str = "/v1/") -> None:
        self.app, self.max_body_bytes, self.prefix = app, max_body_bytes, prefix
        self._key = api_key.encode() if api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix) or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)  # CORS preflights carry no credentials, by design
            return
        headers = dict(scope["headers"])
        if self._key is not None:
            token = bearer_token(headers.get(b"authorization", b""))
            if token is None or not hmac.compare_digest(token, self._key):
                await send_error(
                    send, Unauthorized("missing or wrong API key; send the header Authorization: Bearer KEY")
                )
                return
        too_big = LimitExceeded(
            f"the request body is larger than {self.max_body_bytes} bytes (--max-body-bytes / LONGVEC_MAX_BODY_BYTES)",
            "max_body_bytes",
        )
        declared = headers.get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            await send_error(send, too_big, [(b"connection", b"close")])  # do not read what is left of it
            return
        body = bytearray()
        while True:  # a chunked body has no length up front: count as it arrives
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                await send_error(send, too_big, [(b"connection", b"close")])
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
