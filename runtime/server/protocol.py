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
- a response the client does not read (the transport's buffer over its high-water mark and not shrinking for
  `write_timeout`) is dropped with its connection (`transport.abort()`: `close()` would wait for the buffer to
  flush, forever), and a pipelined next request is not started while a response waits unread: one rendered
  response per connection at most;
- at `max_connections` open connections, a new one takes the place of the oldest idle one (no request being
  received or handled: a fresh socket that sent nothing, a partial header, a keep-alive wait), so sockets that
  send nothing, key or not, cannot lock anyone out. When every connection is busy with a request, up to
  PROBE_HEADROOM more are let in for /health, /ready and /metrics only (anything else gets 503), so probes
  always answer;
  past that the newest is answered 503 and closed at once.

Once a request is fully received the read deadlines are off: a long encoding is the request timeout's business.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from longvec.runtime.server.errors import ConnectionsFull, RequestTimeout, error_bytes

log = logging.getLogger("longvec.server")

PROBE_ONLY = "longvec.probe_only"  # scope key: this connection is over the cap and may only ask a probe
PROBE_HEADROOM = 16


def _raw(status: str, exc: BaseException) -> bytes:
    """A whole HTTP response with the server's JSON error body, for the layer below the app."""
    _, body, headers = error_bytes(exc)
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head = f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n{extra}"
    return (head + "connection: close\r\n\r\n").encode() + body


_TIMEOUT_408 = _raw(
    "408 Request Timeout", RequestTimeout("the request did not arrive in time; the connection is closed")
)
_FULL_503 = _raw(
    "503 Service Unavailable", ConnectionsFull("too many open connections (--max-connections); retry shortly")
)


class GuardedH11Protocol(H11Protocol):
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_connections: int = 256
    write_timeout: float = 30.0

    _deadline: asyncio.TimerHandle | None = None
    _phase: str | None = None  # "headers" or "body" while a deadline is armed
    _writer: asyncio.TimerHandle | None = None  # armed while writing is paused
    _unsent = 0  # bytes waiting in the transport when the write timer was (re)armed
    _deferred = False  # a finished response waits unread: the next request waits for it
    _probe_only = False
    _opened = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        no_delay(transport)
        self._opened = self.loop.time()
        if len(self.connections) > self.max_connections and not self._evict_idle():
            if len(self.connections) > self.max_connections + PROBE_HEADROOM:
                log.warning("refused a connection: %d open (--max-connections)", len(self.connections) - 1)
                transport.write(_FULL_503)
                transport.close()
                return
            self._probe_only = True  # every connection is busy with a request: /health and /ready only
        self._arm("headers", self.header_timeout)

    def _idle(self) -> bool:
        """No request being received or handled (a socket that sent nothing or part of a header counts)."""
        return (
            not self.transport.is_closing()
            and (self.cycle is None or self.cycle.response_complete)
            and self.conn.their_state is h11.IDLE
            and not self._deferred
        )

    def _evict_idle(self) -> bool:
        """Close the oldest idle connection to make room for this one; False when none is idle."""
        idle = [c for c in self.connections if c is not self and isinstance(c, GuardedH11Protocol) and c._idle()]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: c._opened)
        log.debug("closed an idle connection from %s to make room (--max-connections)", oldest.client)
        oldest._disarm()
        oldest.transport.close()
        return True

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._probe_only and self.cycle is not None:  # the app has not run yet: it reads the mark
            self.cycle.scope[PROBE_ONLY] = True  # type: ignore[literal-required]  # our own key, read by access.py
            self.cycle.keep_alive = False
        self._follow()

    def on_response_complete(self) -> None:
        if self.flow.write_paused and not self.transport.is_closing():
            self._deferred = True  # resume_writing finishes this once the client has read the response
            return
        self._response_done()

    def _response_done(self) -> None:
        self._deferred = False
        super().on_response_complete()
        self._disarm()  # uvicorn's keep-alive timer guards the idle time until the next request's first byte
        self._follow()  # a pipelined request may already be in

    def pause_writing(self) -> None:
        super().pause_writing()
        self._unsent = self.transport.get_write_buffer_size()
        self._arm_writer()

    def resume_writing(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            self._writer = None
        super().resume_writing()
        if self._deferred:
            self._response_done()

    def _arm_writer(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
        self._writer = self.loop.call_later(self.write_timeout, self._write_stalled)

    def _write_stalled(self) -> None:
        self._writer = None
        if self.transport.is_closing() and self.transport.get_write_buffer_size() == 0:
            return
        unsent = self.transport.get_write_buffer_size()
        if unsent < self._unsent:  # the client reads, slowly: give it another period
            self._unsent = unsent
            self._arm_writer()
            return
        log.warning(
            "dropped a connection from %s: %d response bytes unread for %g s (--write-timeout)",
            self.client,
            unsent,
            self.write_timeout,
        )
        self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._writer is not None:
            self._writer.cancel()
            self._writer = None
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
        if phase == "body" and self.cycle is not None:
            # the app sees a disconnect; the access log and /metrics count it as the client's 408, not a 5xx
            self.cycle.scope.setdefault("state", {})["closed_by"] = "body_timeout"
        if self.cycle is None or not self.cycle.response_started:
            self.transport.write(_TIMEOUT_408)
        self.transport.close()


def no_delay(transport: asyncio.BaseTransport) -> None:
    """Send small writes at once (TCP_NODELAY). h11 writes a response's headers and its body separately; with Nagle's
    algorithm on, the body waits for the ACK of the headers, which the client delays by up to 40 ms on a kept-alive
    connection: a 4 ms query answered in ~50 ms (bench/load.py --against infinity, c=1). asyncio sets TCP_NODELAY only
    on sockets created with proto=IPPROTO_TCP, and uvicorn's listening socket is created with proto 0, so its
    accepted sockets kept Nagle on."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def guarded_protocol(
    header_timeout: float, body_timeout: float, max_connections: int, write_timeout: float = 30.0
) -> type[GuardedH11Protocol]:
    """The protocol class to give uvicorn (`http=`), with these bounds."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {
            "header_timeout": header_timeout,
            "body_timeout": body_timeout,
            "max_connections": max_connections,
            "write_timeout": write_timeout,
        },
    )
