"""The connection guard: uvicorn's h11 protocol with read deadlines and a cap on open connections.

uvicorn bounds a request's header size (h11's 16 KB) and the idle time between requests (`timeout_keep_alive`),
but not how long a request may take to arrive: its keep-alive timer is cancelled by every byte received and
never armed for a fresh connection, so a client that sends headers (or a body) one byte at a time, or nothing
at all, holds its connection forever (uvicorn issue #157 lists the request-start and request-complete timeouts
as never implemented). ASGI middleware cannot help with headers: the app is called only once they are complete.
So the guard works one level down, on the protocol:

- a request's headers must be complete within `header_timeout` of its first byte (or of the connection being
  opened): else 408 and the connection is closed;
- its body must be complete within `body_timeout` of the end of its headers: else the connection is closed,
  which the app sees as a disconnect;
- more than `max_connections` open connections: the newest is answered 503 and closed at once.

Once a request is fully received the deadlines are off: a long encoding is the request timeout's business.
"""

from __future__ import annotations

import asyncio
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("longvec.server")

_TIMEOUT_408 = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
_FULL_503 = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nretry-after: 1\r\nconnection: close\r\n\r\n"


class GuardedH11Protocol(H11Protocol):
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_connections: int = 256

    _deadline: asyncio.TimerHandle | None = None
    _phase: str | None = None  # "headers" or "body" while a deadline is armed

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            log.warning("refused a connection: %d open (--max-connections)", len(self.connections) - 1)
            transport.write(_FULL_503)
            transport.close()
            return
        self._arm("headers", self.header_timeout)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm()  # uvicorn's keep-alive timer guards the idle time until the next request's first byte
        self._follow()  # a pipelined request may already be in

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _follow(self) -> None:
        """Arm or clear the deadline from where the client is in its request."""
        if self.transport.is_closing():
            return
        state = self.conn.their_state
        if state is h11.IDLE:
            if self._phase is None and self.conn.trailing_data[0]:
                self._arm("headers", self.header_timeout)  # the first bytes of the next request
        elif state is h11.SEND_BODY:
            if self._phase != "body":
                self._arm("body", self.body_timeout)
        else:  # DONE, MUST_CLOSE, CLOSED, ERROR: nothing more to read for this request
            self._disarm()

    def _arm(self, phase: str, seconds: float) -> None:
        self._disarm()
        self._phase = phase
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline, self._phase = None, None

    def _expired(self) -> None:
        phase = self._phase
        self._deadline, self._phase = None, None
        if self.transport.is_closing():
            return
        limit = "--header-timeout" if phase == "headers" else "--body-timeout"
        log.warning("closed a connection from %s: request %s not received in time (%s)", self.client, phase, limit)
        if phase == "headers":
            self.transport.write(_TIMEOUT_408)
        self.transport.close()


def guarded_protocol(header_timeout: float, body_timeout: float, max_connections: int) -> type[GuardedH11Protocol]:
    """The protocol class to give uvicorn (`http=`), with these bounds."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {"header_timeout": header_timeout, "body_timeout": body_timeout, "max_connections": max_connections},
    )
