"""A lean HTTP/1.1 client for the load tests: keep-alive connections over asyncio streams, bodies sent as ready bytes.

Why not httpx: on this 2-core machine the load generator shares the CPU with the server it measures. httpx's
AsyncClient spends ~6 ms of CPU per small request (measured: 32 clients against `longvec serve`, 117 requests/s, the
client process at 0.7 of a core), so the benchmark measured the client, and the server got half a machine. This
client spends ~0.3 ms per request (the same run: 231 requests/s). Both servers of a comparison get the same client.

It speaks only what the benchmark needs: POST and GET with a body of bytes, responses with Content-Length or
chunked bodies, `Connection: close` honoured. A connection that fails is dropped, never reused; one the
server closed while it sat idle is replaced, and a request that met such a close is sent again on a fresh one.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any


class Http1Error(Exception):
    """The server closed the connection or sent something that is not an HTTP/1.1 response."""


# what a request can raise when the server fails it: a connection error, a cut response (IncompleteReadError is an
# EOFError), a header block over the stream's limit, or a response that is not HTTP/1.1
FAILURES = (OSError, EOFError, asyncio.LimitOverrunError, Http1Error)


class _ClosedBeforeAnswer(Exception):
    """The connection ended before any byte of a response: on a kept-alive connection, the server closed it."""


class Response:
    def __init__(self, status: int, body: bytes) -> None:
        self.status_code, self.content = status, body

    def json(self) -> Any:
        return json.loads(self.content)

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise Http1Error(f"HTTP {self.status_code}: {self.content[:200]!r}")


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def exchange(self, request: bytes) -> tuple[Response, bool]:
        """(response, whether the connection may be reused)."""
        self.writer.write(request)
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as e:
            if e.partial:
                raise
            raise _ClosedBeforeAnswer() from e
        except ConnectionResetError as e:
            raise _ClosedBeforeAnswer() from e
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise Http1Error(f"not an HTTP/1.1 status line: {lines[0]!r}")
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = bytearray()
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")  # no trailers are sent to us; the final CRLF
                    break
                body += await self.reader.readexactly(size)
                await self.reader.readexactly(2)
            content = bytes(body)
        else:
            content = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return Response(int(parts[1]), content), headers.get("connection", "").lower() != "close"

    def close(self) -> None:
        self.writer.close()


class Http1Pool:
    """Keep-alive connections to one host: a request takes an idle connection or opens one."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._idle: list[_Connection] = []

    def _request(self, method: str, path: str, body: bytes, content_type: str) -> bytes:
        head = f"{method} {path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\n"
        if method != "GET":
            head += f"content-type: {content_type}\r\ncontent-length: {len(body)}\r\n"
        return head.encode("latin-1") + b"\r\n" + body

    async def request(
        self, method: str, path: str, body: bytes = b"", content_type: str = "application/json"
    ) -> Response:
        request = self._request(method, path, body, content_type)
        while self._idle:
            conn = self._idle.pop()
            if conn.reader.at_eof():  # closed by the server while idle (its keep-alive timeout): never reused
                conn.close()
                continue
            try:
                return await self._exchange(conn, request)
            except _ClosedBeforeAnswer:
                # it closed the connection as the request went out (the race of every keep-alive client): as
                # httpx and urllib3 do, send it again on another connection; the server never answered it
                continue
        conn = _Connection(*await asyncio.open_connection(self.host, self.port))
        try:
            return await self._exchange(conn, request)
        except _ClosedBeforeAnswer as e:  # a fresh connection closed unanswered: the server's doing
            raise Http1Error("the server closed a new connection without answering") from e

    async def _exchange(self, conn: _Connection, request: bytes) -> Response:
        try:
            response, reusable = await conn.exchange(request)
        except BaseException:
            conn.close()
            raise
        if reusable:
            self._idle.append(conn)
        else:
            conn.close()
        return response

    async def post(self, path: str, body: bytes) -> Response:
        return await self.request("POST", path, body)

    async def post_json(self, path: str, payload: Any) -> Response:
        return await self.post(path, json.dumps(payload).encode())

    async def get(self, path: str) -> Response:
        return await self.request("GET", path)

    async def aclose(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()

    async def __aenter__(self) -> Http1Pool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
