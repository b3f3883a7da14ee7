"""Small writes leave at once: h11 writes a response's headers and body separately, and with Nagle's algorithm on
the body waited for the client's delayed ACK of the headers on a kept-alive connection (a 4 ms query answered in
~50 ms). asyncio turns Nagle off only for sockets created with proto=IPPROTO_TCP; uvicorn's are created with 0."""

from __future__ import annotations

import asyncio
import socket

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from longvec.runtime.server.protocol import guarded_protocol


async def _nodelay_of_accepted(factory: object) -> int:
    sock = Config(app=_app, host="127.0.0.1", port=0).bind_socket()  # the listening socket uvicorn makes
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            inner = factory()  # type: ignore[operator]
            inner.connection_made(transport)
            value = transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            accepted.set_result(value)
            transport.close()

    server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
    try:
        _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        value = await asyncio.wait_for(accepted, 10)
        writer.close()
        return value
    finally:
        server.close()


async def _app(scope: object, receive: object, send: object) -> None:  # never called: no request is sent
    raise AssertionError


def test_asyncio_leaves_nagle_on_for_uvicorns_sockets() -> None:
    # the cause: without our protocol's setting, an accepted connection keeps Nagle's algorithm on
    assert asyncio.run(_nodelay_of_accepted(asyncio.Protocol)) == 0


@pytest.mark.parametrize("connections", [2, 256])
def test_the_guarded_protocol_sends_small_writes_at_once(connections: int) -> None:
    protocol = guarded_protocol(header_timeout=5, body_timeout=5, max_connections=connections)
    config = Config(app=_app, http=protocol)
    config.load()
    state = ServerState()
    assert asyncio.run(_nodelay_of_accepted(lambda: protocol(config=config, server_state=state, app_state={}))) != 0
