"""The FastAPI application: OpenAI-compatible /v1/embeddings, /v1/documents (document + chunk vectors),
/health and /metrics. Routes validate and admit requests; the Batcher's worker thread does all encoding."""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPBearer
from starlette.exceptions import HTTPException

from longvec.runtime.embedder import Embedder
from longvec.runtime.errors import InputError, LimitExceeded, LongvecError
from longvec.runtime.server import payloads
from longvec.runtime.server.batcher import Batcher, Work
from longvec.runtime.server.gate import MetricsMiddleware, RequestGate
from longvec.runtime.server.http_errors import (
    ClientGone,
    MethodNotAllowed,
    NotFound,
    NotReady,
    error_payload,
    validation_message,
    with_param,
)
from longvec.runtime.server.metrics import Metrics
from longvec.runtime.server.schema import (
    DocumentsRequest,
    DocumentsResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    ErrorResponse,
    Health,
)

log = logging.getLogger("longvec.server")
T = TypeVar("T")

ROUTES = ("/v1/embeddings", "/v1/documents", "/health", "/metrics")


def _sparse_missing() -> str | None:
    """Why sparse chunk vectors cannot be made here, or None when they can."""
    if "sparse" not in inspect.signature(Embedder.embed_documents).parameters:
        return "this longvec version has no sparse chunk vectors"
    try:
        from longvec.runtime.core.sparse import require_stemmer

        require_stemmer()
    except (ImportError, LongvecError) as e:
        return str(e)
    return None


@dataclass(frozen=True)
class ServeSettings:
    model_name: str
    api_key: str | None = None
    max_batch_tokens: int = 8192  # tokens per shared library call (and per encoder batch)
    max_queue: int = 256  # requests waiting; one more gets 429
    max_request_tokens: int = 1_000_000
    max_items: int = 2048  # texts or documents per request
    max_body_bytes: int = 32 * 2**20


@dataclass
class _State:
    embedder: Embedder | None = None
    batcher: Batcher | None = None
    error: BaseException | None = None
    loader: threading.Thread | None = field(default=None, repr=False)

    def require(self) -> tuple[Embedder, Batcher]:
        if self.embedder is None or self.batcher is None:
            raise NotReady("the model failed to load" if self.error else "the model is still loading; retry shortly")
        return self.embedder, self.batcher


def _error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ErrorResponse, "description": "OpenAI-style error"} for s in statuses}


def create_app(
    settings: ServeSettings,
    load: Callable[[], Embedder],
    on_load_error: Callable[[BaseException], None] | None = None,
) -> FastAPI:
    """`load` runs on a background thread after startup, so /health can answer 503 while the model loads."""
    state = _State()
    metrics = Metrics()

    def load_and_warm() -> None:
        try:
            emb = load()
            emb.embed(["warm up"])
            emb.embed([" ".join(["warm"] * (2 * emb.window))])  # the long-document path too
            batcher = Batcher(
                lambda key, texts, extras: _run(emb, key, texts, extras),
                settings.max_queue,
                settings.max_batch_tokens,
                metrics,
            )
            batcher.start()
            state.embedder, state.batcher = emb, batcher
            metrics.ready.set(1)
            log.info("model %s loaded and warmed up; ready", settings.model_name)
        except Exception as e:
            state.error = e
            log.error("loading the model failed: %s", e, exc_info=e)
            if on_load_error is not None:
                on_load_error(e)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.loader = threading.Thread(target=load_and_warm, name="longvec-load", daemon=True)
        state.loader.start()
        yield
        # uvicorn has already waited for in-flight requests; what is left in the queue is finished, then closed
        state.loader.join()
        if state.batcher is not None:
            state.batcher.stop()
        if state.embedder is not None:
            state.embedder.close()

    app = FastAPI(
        title="longvec",
        version="0.1.0",
        description="Embeddings for texts of any length: whole documents and their chunks, never truncated.",
        lifespan=lifespan,
    )
    secured = [Depends(HTTPBearer(auto_error=False))] if settings.api_key else []  # the gate enforces it
    errors = _error_responses(401, 413, 422, 429, 500, 503)

    def admit(texts: list[str], name: str, suffix: str = "", many: bool = True) -> int:
        """Per-request checks before queueing, so a bad request fails alone; returns its content tokens."""
        emb = state.require()[0]
        if len(texts) > settings.max_items:
            raise with_param(
                LimitExceeded(
                    f"{name} has {len(texts)} items; this server accepts at most {settings.max_items} per request "
                    "(--max-items)"
                ),
                name,
            )
        if not texts:
            raise with_param(InputError(f"{name} is an empty list; there is nothing to embed"), name)
        for i, text in enumerate(texts):
            item = f"{name}[{i}]{suffix}" if many else name
            if not text.strip():
                raise with_param(InputError(f"{item} is empty or whitespace only; there is nothing to embed"), item)
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as e:
                raise with_param(InputError(f"{item} is not valid Unicode (lone surrogate at {e.start})"), item) from e
        counts = emb.count_tokens(texts)
        total = sum(counts)
        if total > settings.max_request_tokens:
            raise with_param(
                LimitExceeded(
                    f"the request has {total} tokens; this server accepts at most {settings.max_request_tokens} "
                    "per request (--max-request-tokens)"
                ),
                name,
            )
        for i, n in enumerate(counts):
            if n == 0:
                item = f"{name}[{i}]{suffix}" if many else name
                raise with_param(InputError(f"{item} has no tokens for this model's tokenizer"), item)
        return total

    def check_dimensions(dimensions: int | None, dim: int) -> None:
        if dimensions is not None and not 1 <= dimensions <= dim:
            raise with_param(
                InputError(f"dimensions must be in 1..{dim} (this model's size), got {dimensions}"), "dimensions"
            )

    @app.post(
        "/v1/embeddings",
        response_model=EmbeddingResponse,
        responses=errors,
        dependencies=secured,
        summary="OpenAI-compatible embeddings; long inputs are embedded whole",
    )
    async def embeddings(body: EmbeddingRequest, request: Request) -> Response:
        emb, batcher = state.require()
        check_dimensions(body.dimensions, emb.dim)
        texts = [body.input] if isinstance(body.input, str) else body.input
        n_tokens = await _call(admit, _heavy(texts), texts, "input", "", not isinstance(body.input, str))
        vectors = await _unless_disconnected(
            request, batcher.submit(Work(("embed",), texts, [None] * len(texts), n_tokens))
        )
        metrics.tokens.inc("/v1/embeddings", by=n_tokens)
        content = await _call(
            payloads.embeddings,
            len(vectors) > SMALL_RESPONSE_VECTORS,
            vectors,
            body.dimensions,
            body.encoding_format,
            settings.model_name,
            n_tokens,
        )
        return Response(content, media_type="application/json")

    @app.post(
        "/v1/documents",
        response_model=DocumentsResponse,
        responses=errors,
        dependencies=secured,
        summary="Document vectors plus chunk vectors with character spans, for texts of any length",
    )
    async def documents(body: DocumentsRequest, request: Request) -> Response:
        emb, batcher = state.require()
        check_dimensions(body.dimensions, emb.dim)
        if body.sparse and (missing := _sparse_missing()):
            raise with_param(InputError(f"sparse not available: {missing}"), "sparse")
        for i, doc in enumerate(body.documents):
            if (body.chunking == "spans") != (doc.spans is not None):
                item = f"documents[{i}].spans"
                raise with_param(InputError(f"{item} must be given if and only if chunking is 'spans'"), item)
        try:
            emb.plan(body.window, body.stride)  # an impossible window or stride fails here, alone
        except InputError as e:
            raise with_param(e, "window" if "window" in str(e) else "stride") from None
        texts = [d.text for d in body.documents]
        n_tokens = await _call(admit, _heavy(texts), texts, "documents", ".text")
        key = ("documents", body.chunking, body.chunk_tokens, body.mode, body.window, body.stride, body.sparse)
        work = Work(key, texts, [d.spans for d in body.documents], n_tokens)
        results = await _unless_disconnected(request, batcher.submit(work))
        metrics.tokens.inc("/v1/documents", by=n_tokens)
        n_vectors = sum(1 + len(r.chunk_spans) for r in results)
        content = await _call(
            payloads.documents,
            n_vectors > SMALL_RESPONSE_VECTORS,
            results,
            [d.id for d in body.documents],
            body.dimensions,
            body.encoding_format,
            settings.model_name,
            n_tokens,
        )
        return Response(content, media_type="application/json")

    @app.get("/health", response_model=Health, responses={503: {"model": Health, "description": "not ready"}})
    async def health() -> JSONResponse:
        """200 once the model is loaded and warmed up; 503 before (or if loading failed)."""
        if state.embedder is not None and state.batcher is not None:
            return JSONResponse({"status": "ok", "model": settings.model_name, "dimensions": state.embedder.dim})
        status = "failed" if state.error else "loading"
        return JSONResponse({"status": status, "model": settings.model_name}, status_code=503)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> PlainTextResponse:
        """Prometheus text format: requests, latency, batch sizes, tokens, queue depth."""
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = validation_message(list(exc.errors()))
        return _json_error(InputError(message), param)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        mapped = {404: NotFound("no such route"), 405: MethodNotAllowed("method not allowed on this route")}
        if exc.status_code in mapped:
            return _json_error(mapped[exc.status_code])
        body = {"error": {"message": str(exc.detail), "type": "invalid_request_error", "param": None, "code": None}}
        return JSONResponse(body, status_code=exc.status_code)

    @app.exception_handler(LongvecError)
    @app.exception_handler(TypeError)
    async def known_error(request: Request, exc: Exception) -> JSONResponse:
        return _json_error(exc)

    @app.exception_handler(Exception)  # a bug: Starlette answers with this, then re-raises so uvicorn logs it
    async def unknown_error(request: Request, exc: Exception) -> JSONResponse:
        return _json_error(exc)

    app.add_middleware(RequestGate, api_key=settings.api_key, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=ROUTES)
    app.state.longvec = state
    return app


# Work this small runs on the event loop: a thread hop per request costs more than it saves, and dozens of
# threads contending for the GIL starve the loop under load. Bigger work goes to the thread pool.
SMALL_REQUEST_CHARS = 20_000
SMALL_RESPONSE_VECTORS = 64


def _heavy(texts: list[str]) -> bool:
    return sum(len(t) for t in texts) > SMALL_REQUEST_CHARS


async def _call(fn: Callable[..., T], heavy: bool, *args: Any) -> T:
    return await run_in_threadpool(fn, *args) if heavy else fn(*args)


async def _unless_disconnected(request: Request, work: Awaitable[list[Any]]) -> list[Any]:
    """Wait for the batcher, but drop the work if the client goes away first: an abandoned request must not
    keep the encoder busy (or hold up a graceful shutdown) for nobody."""
    job = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnect(request))
    try:
        done, _ = await asyncio.wait({job, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not job.done():
            job.cancel()  # its future is cancelled, so the worker skips it
    if job in done:
        return job.result()
    raise ClientGone("the client disconnected before its result was ready")


async def _disconnect(request: Request) -> None:
    # the body has been read, so the next ASGI message on this connection can only be the disconnect
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _json_error(exc: BaseException, param: str | None = None) -> JSONResponse:
    status, body, headers = error_payload(exc, param)
    return JSONResponse(body, status_code=status, headers=headers)


def _run(emb: Embedder, key: Hashable, texts: list[str], extras: list[Any]) -> list[Any]:
    """The one place the library is called: on the worker thread, for a whole group of requests."""
    if not isinstance(key, tuple):
        raise TypeError(f"bad batch key {key!r}")
    if key[0] == "embed":
        return list(emb.embed(texts))
    _, chunking, chunk_tokens, mode, window, stride, sparse = key
    options: dict[str, Any] = {"sparse": True} if sparse else {}
    return emb.embed_documents(
        texts,
        chunking=chunking,
        chunk_tokens=chunk_tokens,
        window=window,
        stride=stride,
        mode=mode,
        spans=extras if chunking == "spans" else None,
        **options,
    )
