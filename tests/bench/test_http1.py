"""bench/harness/http1.py, the load tests' HTTP/1.1 client, against a scripted server on 127.0.0.1: bodies framed
by Content-Length and by chunks arrive whole, connections are reused unless the server says close, and a server
that hangs up mid-response is an error, never a short body."""

from __future__ import annotations

import asyncio

import pytest
from harness.http1 import Http1Error, Http1Pool

ANSWERS = {
    b"/length": b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nhello world",
    b"/chunked": b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n6;x=1\r\n world\r\n0\r\n\r\n",
    b"/close": b"HTTP/1.1 503 Busy\r\nconnection: close\r\ncontent-length: 4\r\n\r\nbusy",
    b"/cut": b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part",
    b"/then-idle-close": b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",  # then closes, saying nothing
    b"/then-drop-next": b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",  # the next request: closed unread
}


async def _scripted(seen: list[tuple[int, bytes, bytes]]) -> tuple[asyncio.base_events.Server, int]:
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        me = connections
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ")[1]
                length = next(
                    (int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")), 0
                )
                seen.append((me, path, await reader.readexactly(length)))
                if path == b"/never":  # a server that closes every new connection unanswered
                    break
                writer.write(ANSWERS[path])
                await writer.drain()
                if path in (b"/close", b"/cut", b"/then-idle-close"):
                    break
                if path == b"/then-drop-next":
                    await reader.readuntil(b"\r\n\r\n")  # a keep-alive timeout racing the client's next request
                    break
        except asyncio.IncompleteReadError:
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_bodies_arrive_whole_and_connections_are_reused_unless_closed() -> None:
    async def scenario() -> None:
        seen: list[tuple[int, bytes, bytes]] = []
        server, port = await _scripted(seen)
        async with server, Http1Pool("127.0.0.1", port) as pool:
            r = await pool.post("/length", b'{"a":1}')
            assert (r.status_code, r.content) == (200, b"hello world")
            r = await pool.get("/chunked")
            assert (r.status_code, r.content) == (201, b"hello world")
            r = await pool.post_json("/close", {"b": 2})
            assert (r.status_code, r.content) == (503, b"busy")
            r = await pool.post("/length", b"x")  # a new connection: the last one was closed by the server
            assert r.content == b"hello world"
            with pytest.raises(asyncio.IncompleteReadError):  # a cut body is an error, not a short answer
                await pool.get("/cut")
            assert await pool.get("/length")
        assert [(c, p, b) for c, p, b in seen] == [
            (1, b"/length", b'{"a":1}'),
            (1, b"/chunked", b""),
            (1, b"/close", b'{"b": 2}'),
            (2, b"/length", b"x"),
            (2, b"/cut", b""),
            (3, b"/length", b""),
        ]

    asyncio.run(scenario())


def test_concurrent_requests_each_get_their_own_connection() -> None:
    async def scenario() -> None:
        seen: list[tuple[int, bytes, bytes]] = []
        server, port = await _scripted(seen)
        async with server, Http1Pool("127.0.0.1", port) as pool:
            got = await asyncio.gather(*[pool.post("/length", str(i).encode()) for i in range(8)])
            assert all(r.content == b"hello world" for r in got)
        assert sorted(b for _, _, b in seen) == sorted(str(i).encode() for i in range(8))
        assert len({c for c, _, _ in seen}) == 8

    asyncio.run(scenario())


def test_connections_the_server_closed_while_idle_are_replaced_and_the_request_sent_once() -> None:
    async def scenario() -> None:
        seen: list[tuple[int, bytes, bytes]] = []
        server, port = await _scripted(seen)
        async with server, Http1Pool("127.0.0.1", port) as pool:
            assert (await pool.get("/then-idle-close")).content == b"ok"
            await asyncio.sleep(0.05)  # the close arrives while the connection sits idle
            assert (await pool.get("/length")).content == b"hello world"
            assert (await pool.get("/then-drop-next")).content == b"ok"
            assert (await pool.post("/length", b"again")).content == b"hello world"  # met the close: sent again
            with pytest.raises(Http1Error):  # closed unanswered on a kept-alive connection, then on a new one
                await pool.get("/never")
        assert [(c, p) for c, p, _ in seen] == [
            (1, b"/then-idle-close"),
            (2, b"/length"),
            (2, b"/then-drop-next"),
            (3, b"/length"),
            (3, b"/never"),  # looks like the keep-alive race: sent again once
            (4, b"/never"),
        ]

    asyncio.run(scenario())
