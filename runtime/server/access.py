"""The outermost middleware: a request id for every request (the client's `X-Request-Id`, or a new one, echoed
in the response), the access log line, and the request metrics. Routes add what only they know (texts, tokens)
to the request's state."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Collection
from typing import Any

from longvec.runtime.server.errors import ConnectionsFull
from longvec.runtime.server.gate import ASGIApp, Message, Receive, Scope, Send, send_error
from longvec.runtime.server.metrics import Metrics
from longvec.runtime.server.protocol import PROBE_ONLY

access_log = logging.getLogger("longvec.server.access")
_CLIENT_ID = re.compile(rb"[A-Za-z0-9._:/+=-]{1,128}")  # what a log line and a header can carry safely
PROBES = frozenset({"/health", "/ready", "/metrics"})  # logged at DEBUG: scraped every few seconds
ALWAYS_ANSWERED = PROBES  # also on a connection over the cap (protocol.py): probes and scrapes
TEMPLATES = (("/v1/models/", "/v1/models/{id}"),)  # path prefix -> its route's label
MAX_ERROR_BODY = 64 * 1024  # error bodies are read back for the log line; a larger body is not an error body


def route_label(path: str, routes: frozenset[str]) -> str:
    """The route a path belongs to, as a bounded metrics label: the route itself, its template, or "other"."""
    if path in routes:
        return path
    return next((label for prefix, label in TEMPLATES if path.startswith(prefix) and len(path) > len(prefix)), "other")


def error_reason(body: bytes) -> tuple[str, str] | None:
    """(code, message) of an OpenAI-style error body, or None."""
    try:
        error = json.loads(body)["error"]
        return str(error.get("code")), str(error.get("message"))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def request_id(headers: list[tuple[bytes, bytes]]) -> str:
    given = next((v for k, v in headers if k == b"x-request-id"), b"")
    return given.decode("ascii") if _CLIENT_ID.fullmatch(given) else uuid.uuid4().hex


class AccessMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Collection[str]) -> None:
        self.app, self.metrics, self.routes = app, metrics, frozenset(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = route_label(scope["path"], self.routes)
        rid = request_id(scope["headers"])
        state: dict[str, Any] = scope.setdefault("state", {})
        state.update(request_id=rid, texts=0, tokens=0)
        status: int | None = None
        error_body = bytearray()
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            elif status is not None and status >= 400 and len(error_body) <= MAX_ERROR_BODY:
                error_body.extend(message.get("body", b""))
            await send(message)

        self.metrics.in_flight.inc()
        try:
            if scope.get(PROBE_ONLY) and scope["path"] not in ALWAYS_ANSWERED:
                busy = ConnectionsFull("every connection is busy (--max-connections); retry shortly")
                await send_error(send_with_id, busy, [(b"connection", b"close")])
                return
            await self.app(scope, receive, send_with_id)
        except BaseException:
            status = status or 500
            raise
        finally:
            seconds = time.perf_counter() - started
            if status is None:  # no answer: the connection went away, or the guard closed it mid-body
                status = 408 if state.get("closed_by") == "body_timeout" else 499
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(seconds)
            fields: dict[str, Any] = {
                "request_id": rid,
                "method": scope["method"],
                "route": scope["path"],
                "status": status,
                "texts": state.get("texts", 0),
                "tokens": state.get("tokens", 0),
                "ms": round(seconds * 1000, 1),
            }
            reason = error_reason(bytes(error_body)) if status >= 400 else None
            if reason is not None:
                fields["error"], fields["message"] = reason
            elif status in (408, 499):
                fields["error"] = "body_timeout" if status == 408 else "client_closed_request"
            if "error" in fields:
                self.metrics.errors.labels(route, fields["error"]).inc()
            access_log.log(
                logging.DEBUG if scope["path"] in PROBES else logging.INFO, "request", extra={"fields": fields}
            )
