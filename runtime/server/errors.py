"""Every error the server answers with, in one table: exception class -> HTTP status, OpenAI error type, code.

Bodies are OpenAI-style: {"error": {"message", "type", "param", "code"}}. An exception not in the table is a bug:
it is logged with its traceback and the client gets a 500 with a generic message.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from longvec.runtime.errors import (
    BackendUnavailable,
    BundleError,
    Cancelled,
    DeadlineExceeded,
    InputError,
    LimitExceeded,
    LongvecError,
    OverloadedError,
)
from longvec.runtime.server.settings import flag

log = logging.getLogger("longvec.server")

RETRY_AFTER_SECONDS = 1


class Unauthorized(LongvecError):
    """Missing or wrong API key."""


class NotReady(LongvecError):
    """The model is still loading (or failed to load)."""


class NotFound(LongvecError):
    """No such route."""


class ModelNotFound(NotFound):
    """The request names a model this server does not serve."""


class MethodNotAllowed(LongvecError):
    def __init__(self, message: str, allow: str) -> None:
        self.allow = allow  # the methods the route does take, for the Allow header
        super().__init__(message)


class ClientGone(Cancelled):
    """The client disconnected before its result was ready; its work was dropped or stopped."""


class ConnectionsFull(LongvecError):
    """Every connection of --max-connections is busy with a request; probes still answer."""


class RequestTimeout(LongvecError):
    """The request did not arrive in time (--header-timeout / --body-timeout)."""


class NonFiniteOutput(LongvecError):
    """The model produced NaN or infinity: a broken graph or weights, never the client's fault."""


# first match wins, so subclasses come before their bases
ERROR_TABLE: tuple[tuple[type[BaseException], int, str, str], ...] = (
    (Unauthorized, 401, "authentication_error", "invalid_api_key"),
    (ModelNotFound, 404, "invalid_request_error", "model_not_found"),
    (NotFound, 404, "invalid_request_error", "not_found"),
    (MethodNotAllowed, 405, "invalid_request_error", "method_not_allowed"),
    (RequestTimeout, 408, "invalid_request_error", "request_timeout"),
    (LimitExceeded, 413, "invalid_request_error", "request_too_large"),
    (InputError, 422, "invalid_request_error", "invalid_input"),
    (TypeError, 422, "invalid_request_error", "invalid_type"),
    (OverloadedError, 429, "rate_limit_error", "overloaded"),
    (ClientGone, 499, "invalid_request_error", "client_closed_request"),  # nobody reads it; for /metrics
    (DeadlineExceeded, 504, "server_error", "timeout"),
    (Cancelled, 503, "server_error", "cancelled"),  # the server stopped the work (shutting down)
    (NotReady, 503, "server_error", "not_ready"),
    (ConnectionsFull, 503, "server_error", "too_many_connections"),
    (BundleError, 503, "server_error", "model_unavailable"),
    (BackendUnavailable, 503, "server_error", "model_unavailable"),
    (NonFiniteOutput, 500, "server_error", "model_output_not_finite"),
)
INTERNAL = (500, "server_error", "internal_error")


def classify(exc: BaseException) -> tuple[int, str, str]:
    return next(((s, t, c) for cls, s, t, c in ERROR_TABLE if isinstance(exc, cls)), INTERNAL)


def with_param(exc: LongvecError, param: str) -> LongvecError:
    """Name the offending request field in the error body (OpenAI's `param`)."""
    exc.param = param  # type: ignore[attr-defined]
    return exc


def error_payload(exc: BaseException, param: str | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, body, headers) for an exception."""
    status, kind, code = classify(exc)
    param = param or getattr(exc, "param", None)
    if (status, kind, code) == INTERNAL:
        log.error("unhandled error", exc_info=exc)
        message = "internal server error; the server log has the details"
    else:
        message = str(exc)
        if isinstance(exc, NonFiniteOutput):  # a broken bundle: the operator must hear of it, not only the client
            log.error("%s: %s", code, message)
    if isinstance(exc, LimitExceeded) and exc.limit and "(--" not in message:  # a library bound: say the flag
        message += f" (this server's {flag(exc.limit)})"
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status in (429, 503) else {}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, MethodNotAllowed):
        headers["Allow"] = exc.allow
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return status, body, headers


def error_bytes(exc: BaseException, param: str | None = None) -> tuple[int, bytes, dict[str, str]]:
    """The error as bytes, for the layers below the routes (the gate, the connection guard): the same
    rendering as the routes' JSONResponse, so every error body reads alike."""
    status, body, headers = error_payload(exc, param)
    return status, render(body), headers


def render(body: dict[str, Any]) -> bytes:
    return bytes(JSONResponse(body).body)


def validation_message(errors: list[dict[str, Any]]) -> tuple[str, str | None]:
    """A pydantic error list as one readable sentence, plus the first offending parameter."""
    parts: list[str] = []
    first = None
    for err in errors[:3]:
        loc = [str(x) for x in err.get("loc", ()) if x != "body"]
        where = _dotted(loc) or "body"
        if err.get("type") == "json_invalid":
            parts.append(f"the body is not valid JSON ({err.get('ctx', {}).get('error', 'decode error')})")
            continue
        first = first or where
        if _is_token_ids(err.get("input")) and where.startswith("input"):
            parts.append(
                f"{where}: token ids are not accepted; send text (the server tokenizes with the model's own "
                "tokenizer, and long texts are windowed, not truncated)"
            )
            break
        if err.get("type") == "missing":
            parts.append(f"{where} is required")
        elif parts and parts[-1].startswith(f"{where}: "):  # the other member of a union
            parts[-1] += f", or {err.get('msg', 'invalid').replace('Input should be ', '')}"
        else:
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return "; ".join(parts) + more, first


_UNION_TAGS = {"str", "int", "float", "bool", "none"}


def _is_token_ids(value: object) -> bool:
    """An OpenAI-style token array: a list of ints, or a list of such lists."""

    def ints(v: object) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(x, int) and not isinstance(x, bool) for x in v)

    return ints(value) or (isinstance(value, list) and bool(value) and all(ints(v) for v in value))


def _dotted(loc: list[str]) -> str:
    out = ""
    for part in loc:
        # pydantic names the union member it tried ("str", "list[str]", "constrained-str"): not a field
        if part in _UNION_TAGS or "[" in part or part.startswith("constrained-"):
            continue
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out


def add_handlers(app: FastAPI) -> None:
    """Every error answer goes through the table above."""

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        if not _is_json(request.headers.get("content-type")) and any(e.get("loc") == ("body",) for e in exc.errors()):
            given = request.headers.get("content-type")
            what = f"Content-Type is {given!r}" if given else "there is no Content-Type header"
            return json_error(InputError(f"the body was not read as JSON: {what}; send Content-Type: application/json"))
        message, param = validation_message(list(exc.errors()))
        return json_error(InputError(message), param)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return json_error(NotFound("no such route"))
        if exc.status_code == 405:
            allow = (exc.headers or {}).get("Allow", "")
            return json_error(MethodNotAllowed(f"method not allowed on this route; it takes {allow}", allow))
        if exc.status_code == 400:  # FastAPI's answer to a body that json.loads could not take (e.g. nesting)
            cause = exc.__cause__
            why = "it is nested too deeply" if isinstance(cause, RecursionError) else "it could not be parsed"
            return json_error(InputError(f"the body is not valid JSON for this server: {why}"))
        body = {"error": {"message": str(exc.detail), "type": "invalid_request_error", "param": None, "code": None}}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(LongvecError)
    @app.exception_handler(TypeError)
    async def known_error(request: Request, exc: Exception) -> JSONResponse:
        return json_error(exc)

    @app.exception_handler(Exception)  # a bug: Starlette answers with this, then re-raises so uvicorn logs it
    async def unknown_error(request: Request, exc: Exception) -> JSONResponse:
        return json_error(exc)


def _is_json(content_type: str | None) -> bool:
    """What FastAPI parses as a JSON body: application/json or application/*+json."""
    kind = (content_type or "").split(";")[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


def json_error(exc: BaseException, param: str | None = None) -> JSONResponse:
    status, body, headers = error_payload(exc, param)
    return JSONResponse(body, status_code=status, headers=headers)
