"""The FastAPI application, assembled: lifecycle (loading, readiness, shutdown), routes, error handlers and the
middleware stack, outermost first: access log and metrics -> CORS -> gate (API key, body cap) -> routes."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

import longvec
from longvec.runtime.embedder import Embedder
from longvec.runtime.server.access import AccessMiddleware
from longvec.runtime.server.errors import add_handlers
from longvec.runtime.server.gate import RequestGate
from longvec.runtime.server.lifecycle import Lifecycle
from longvec.runtime.server.metrics import Metrics
from longvec.runtime.server.routes import ROUTES, add_routes
from longvec.runtime.server.settings import ServeSettings


def create_app(
    settings: ServeSettings,
    load: Callable[[], Embedder],
    on_load_error: Callable[[BaseException], None] | None = None,
) -> FastAPI:
    """`load` runs on a background thread after startup, so /ready can answer 503 while the model loads."""
    metrics = Metrics()
    life = Lifecycle(settings, load, metrics, on_load_error)
    app = FastAPI(
        title="longvec",
        version=longvec.__version__,
        description="Embeddings for texts of any length: whole documents and their chunks, never truncated.",
        lifespan=life.lifespan,
        # the Swagger / ReDoc pages load their scripts from a CDN, which an offline deployment cannot reach, and
        # no installed package ships them: the OpenAPI document itself stays at /openapi.json
        docs_url=None,
        redoc_url=None,
    )
    add_routes(app, life, settings, metrics, longvec.__version__)
    add_handlers(app)
    app.add_middleware(RequestGate, api_key=settings.api_key, max_body_bytes=settings.max_body_bytes)
    if settings.cors_allow_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_allow_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Request-Id"],
            expose_headers=["X-Request-Id"],
        )
    app.add_middleware(AccessMiddleware, metrics=metrics, routes=ROUTES)
    app.state.longvec = life
    return app
