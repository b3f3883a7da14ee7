"""The HTTP routes. Each /v1 route admits its request (longvec.runtime.server.admission), queues it for the
encoder worker, and waits for the result, the client leaving, or the request's deadline, whichever comes first."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPBearer

from longvec.runtime.embedder import Embedder
from longvec.runtime.errors import DeadlineExceeded
from longvec.runtime.server import payloads
from longvec.runtime.server import search as search_route
from longvec.runtime.server.admission import Admitted
from longvec.runtime.server.batcher import Work
from longvec.runtime.server.errors import ClientGone, ModelNotFound, with_param
from longvec.runtime.server.lifecycle import Lifecycle, Served
from longvec.runtime.server.metrics import CONTENT_TYPE, Metrics
from longvec.runtime.server.schema import (
    DocumentsRequest,
    DocumentsResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    ErrorResponse,
    Health,
    Info,
    Model,
    ModelList,
    Pooling,
    SearchRequest,
    SearchResponse,
)
from longvec.runtime.server.settings import ServeSettings

T = TypeVar("T")
ROUTES = ("/v1/embeddings", "/v1/documents", "/v1/search", "/v1/models", "/health", "/ready", "/info", "/metrics")

# Work this small runs on the event loop: a thread hop per request costs more than it saves, and dozens of
# threads contending for the GIL starve the loop under load. Bigger work (tokenizing, JSON of many vectors) goes
# to the thread pool, so /health answers while a 4 MB body is tokenized.
SMALL_REQUEST_CHARS = 20_000
SMALL_RESPONSE_VECTORS = 64


def _error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ErrorResponse, "description": "OpenAI-style error"} for s in statuses}


def add_routes(app: FastAPI, life: Lifecycle, settings: ServeSettings, metrics: Metrics, version: str) -> None:
    secured = [Depends(HTTPBearer(auto_error=False))] if settings.api_key else []  # the gate enforces it
    errors = _error_responses(401, 404, 413, 422, 429, 500, 503, 504)

    v1: dict[str, Any] = {"responses": errors, "dependencies": secured}

    async def answer(
        request: Request,
        model: str | None,
        chars: int,
        admit: Callable[[Served], Admitted],
        render: Callable[[Admitted, list[Any]], bytes],
    ) -> Response:
        """The shared path of the /v1 routes: admit (off the event loop when large), queue, wait, render."""
        served = life.require()
        if model is not None and model != settings.model_name:
            message = f"model {model!r} is not served here; this server serves {settings.model_name!r} (GET /v1/models)"
            raise with_param(ModelNotFound(message), "model")
        deadline = time.monotonic() + settings.request_timeout
        route = request.url.path
        admitted = await _call(lambda: admit(served), chars > SMALL_REQUEST_CHARS)
        metrics.tokenization.labels(route).observe(time.monotonic() - deadline + settings.request_timeout)
        metrics.input_tokens.labels(route).observe(admitted.cost.tokens)
        request.state.texts, request.state.tokens = len(admitted.texts), admitted.cost.tokens
        try:
            work = Work(admitted.options, admitted.texts, admitted.extras, admitted.queue_tokens, deadline)
            results = await _until_done(request, served.batcher.submit(work), deadline, settings.request_timeout)
        finally:
            served.admission.release(admitted)
        metrics.tokens.labels(route).inc(admitted.cost.tokens)
        vectors = admitted.cost.texts + admitted.cost.chunks
        content = await _call(lambda: render(admitted, results), vectors > SMALL_RESPONSE_VECTORS)
        return Response(content, media_type="application/json")

    @app.post("/v1/embeddings", response_model=EmbeddingResponse, summary="OpenAI-compatible embeddings", **v1)
    async def embeddings(body: EmbeddingRequest, request: Request) -> Response:
        """Long inputs are embedded whole (windows, stitched, pooled), never truncated."""
        texts = [body.input] if isinstance(body.input, str) else body.input
        return await answer(
            request,
            body.model,
            sum(len(t) for t in texts),
            lambda served: served.admission.embeddings(body),
            lambda admitted, vectors: payloads.embeddings(
                vectors, body.dimensions, body.encoding_format, settings.model_name, admitted.cost.tokens
            ),
        )

    @app.post("/v1/documents", response_model=DocumentsResponse, summary="Document and chunk vectors", **v1)
    async def documents(body: DocumentsRequest, request: Request) -> Response:
        """Document vectors plus chunk vectors with character spans, for texts of any length."""
        ids = [d.id for d in body.documents]
        return await answer(
            request,
            body.model,
            sum(len(d.text) for d in body.documents),
            lambda served: served.admission.documents(body),
            lambda admitted, results: payloads.documents(
                results, ids, body.dimensions, body.encoding_format, settings.model_name, admitted.cost.tokens
            ),
        )

    @app.post("/v1/search", response_model=SearchResponse, summary="The passages that answer queries", **v1)
    async def search(body: SearchRequest, request: Request) -> Response:
        """Every chunk of the documents ranked per query (dense fused with BM25 by default), the best top_k
        returned with character spans: the library's `Embedder.search`."""
        chars = sum(len(t) for t in search_route.texts_of(body)) + sum(len(q) for q in search_route.queries_of(body))
        return await answer(
            request,
            body.model,
            chars,
            lambda served: search_route.admit(served.admission, body),
            lambda admitted, results: search_route.render(results, body, settings.model_name, admitted.cost.tokens),
        )

    @app.get("/v1/models", response_model=ModelList, **v1)
    async def models() -> ModelList:
        """The one model this server serves (OpenAI's model list; clients probe it)."""
        return ModelList(data=[_model(settings, life.require())])

    @app.get("/v1/models/{model_id:path}", response_model=Model, **v1)
    async def model(model_id: str) -> Model:
        if model_id != settings.model_name:
            raise with_param(ModelNotFound(f"model {model_id!r} is not served here"), "model")
        return _model(settings, life.require())

    @app.get("/health", response_model=Health, responses={503: {"model": Health, "description": "loading failed"}})
    async def health() -> JSONResponse:
        """Liveness: 200 while the process serves (also while the model loads); 503 once loading has failed."""
        return _status(life, settings, ok=life.status != "failed")

    @app.get("/ready", response_model=Health, responses={503: {"model": Health, "description": "not ready"}})
    async def ready() -> JSONResponse:
        """Readiness: 200 once the model is loaded and warmed up; 503 before (or if loading failed)."""
        return _status(life, settings, ok=life.status == "ok")

    @app.get("/info", response_model=Info, responses=_error_responses(503))
    async def info() -> Info:
        """The served model, its dimensions and window, the request limits, and the longvec version."""
        emb = life.require().embedder
        plan = emb.plan()
        pooling = emb.manifest.pooling
        return Info(
            model=settings.model_name,
            version=version,
            dimensions=emb.dim,
            window=plan.window,
            max_positions=emb.manifest.max_positions,
            stride=plan.stride,
            limits=settings.summary(),
            provider=emb.provider,
            variant=settings.started_by.get("variant", "?"),
            mode=emb.defaults.mode,
            prompts=dict(emb.manifest.prompts),
            default_prompt_name=default_prompt_name(settings, emb),
            pooling=Pooling(mode=pooling.mode, normalize=pooling.normalize, include_prompt=pooling.include_prompt),
            max_batch_tokens=settings.max_batch_tokens,
        )

    @app.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    async def prometheus() -> Response:
        """Prometheus text format: requests, latency, batch sizes, tokens, queue depth."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)


def _model(settings: ServeSettings, served: Served) -> Model:
    prompts = dict(served.embedder.manifest.prompts)
    default = default_prompt_name(settings, served.embedder)
    return Model(
        id=settings.model_name, created=served.created, owned_by="longvec", prompts=prompts, default_prompt_name=default
    )


def default_prompt_name(settings: ServeSettings, emb: Embedder) -> str | None:
    """The prompt a request naming none gets: the server's --default-prompt-name, else the bundle's default."""
    return settings.default_prompt_name or emb.manifest.default_prompt


def _status(life: Lifecycle, settings: ServeSettings, ok: bool) -> JSONResponse:
    body: dict[str, Any] = {"status": life.status, "model": settings.model_name}
    if life.served is not None:
        body["dimensions"] = life.served.embedder.dim
        body["provider"] = life.served.embedder.provider
    return JSONResponse(body, status_code=200 if ok else 503)


async def _call(fn: Callable[[], T], heavy: bool) -> T:
    return await run_in_threadpool(fn) if heavy else fn()


async def _until_done(request: Request, work: Awaitable[list[Any]], deadline: float, timeout: float) -> list[Any]:
    """Wait for the batcher; give up when the client goes away or the deadline passes. Giving up cancels the
    work's future, which the encoder worker sees before its next batch: abandoned work stops."""
    job = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnect(request))
    try:
        done, _ = await asyncio.wait(
            {job, gone}, timeout=max(0.0, deadline - time.monotonic()), return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        gone.cancel()
        if not job.done():
            job.cancel()  # cancels the future the worker checks
    if job in done:
        return job.result()
    if gone in done:
        raise ClientGone("the client disconnected before its result was ready")
    raise DeadlineExceeded(f"the request took longer than {timeout:g} s (--request-timeout); its encoding was stopped")


async def _disconnect(request: Request) -> None:
    # the body has been read, so the next ASGI message on this connection can only be the disconnect
    while (await request.receive())["type"] != "http.disconnect":
        pass
