"""The outermost middleware: a request id for every request (the client's `X-Request-Id`, or a new one, echoed
in the response), the access log line, and the request metrics. Routes add what only they know (texts, tokens)
to the request's state."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Collection
from typing import Any

from longvec.runtime.server.gate import ASGIApp, Message, Receive, Scope, Send
from longvec.runtime.server.metrics import Metrics

access_log = logging.getLogger("longvec.server.access")
_CLIENT_ID = re.compile(rb"[A-Za-z0-9._:/+=-]{1,128}")  # what a log line and a header can carry safely
PROBES = frozenset({"/health", "/ready", "/metrics"})  # logged at DEBUG: scraped every few seconds


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
        route = scope["path"] if scope["path"] in self.routes else "other"  # bounded label values
        rid = request_id(scope["headers"])
        state: dict[str, Any] = scope.setdefault("state", {})
        state.update(request_id=rid, texts=0, tokens=0)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(seconds)
            fields = {
                "request_id": rid,
                "method": scope["method"],
                "route": scope["path"],
                "status": status,
                "texts": state.get("texts", 0),
                "tokens": state.get("tokens", 0),
                "ms": round(seconds * 1000, 1),
            }
            access_log.log(
                logging.DEBUG if scope["path"] in PROBES else logging.INFO, "request", extra={"fields": fields}
            )
