"""`longvec serve BUNDLE`: the HTTP embedding server under uvicorn. Every option can also come from the
environment (LONGVEC_PORT, LONGVEC_API_KEY, ...), so a container can be configured without a command line.

Before the port opens, everything that can be checked without the model is: the bundle, its tokenizer, the
variant and window, the limits, the auth rules and the address (a port in use is one line and its own exit code).
Auth: a key, when set, guards /v1/*; an empty key is an error, and a non-loopback address needs a key or an
explicit --no-auth (an open embedding server on a network is a choice, never an accident).

FastAPI and uvicorn are imported only when the command runs (the `serve` extra)."""

from __future__ import annotations

import argparse
import errno
import ipaddress
import logging
import math
import os
import signal
import socket
from dataclasses import fields
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from longvec.runtime.cli.main import VARIANT_NAMES, command
from longvec.runtime.errors import AddressInUse, BackendUnavailable, InputError

if TYPE_CHECKING:
    from longvec.runtime.bundle.reader import Bundle

# flag -> (environment variable, type, default, help); limits default to ServeSettings' values
OPTIONS: dict[str, tuple[str, type, object, str]] = {
    "--host": ("LONGVEC_HOST", str, "127.0.0.1", "address to bind; loopback unless you say otherwise"),
    "--port": ("LONGVEC_PORT", int, 8080, "TCP port"),
    "--api-key": ("LONGVEC_API_KEY", str, None, "require Authorization: Bearer KEY on /v1 (prefer the env var)"),
    "--served-model-name": (
        "LONGVEC_SERVED_MODEL_NAME",
        str,
        None,
        "the model name clients send and see (default: the bundle's model name, else its folder name)",
    ),
    "--default-prompt-name": (
        "LONGVEC_DEFAULT_PROMPT_NAME",
        str,
        None,
        "the bundle's prompt a request gets when it names none (prompt_name / prompt); none means the bundle's default",
    ),
    "--max-batch-tokens": (
        "LONGVEC_MAX_BATCH_TOKENS",
        int,
        None,
        "padded tokens per encoder call (also bounds how long a cancelled request holds the encoder)",
    ),
    "--max-queue": ("LONGVEC_MAX_QUEUE", int, None, "requests waiting for the encoder before 429"),
    "--max-queue-tokens": ("LONGVEC_MAX_QUEUE_TOKENS", int, None, "content tokens waiting for the encoder before 429"),
    "--max-body-bytes": ("LONGVEC_MAX_BODY_BYTES", int, None, "request body size before 413"),
    "--max-items": ("LONGVEC_MAX_ITEMS", int, None, "texts or documents per request before 413"),
    "--max-request-tokens": ("LONGVEC_MAX_REQUEST_TOKENS", int, None, "content tokens per request before 413"),
    "--max-request-encoder-tokens": (
        "LONGVEC_MAX_REQUEST_ENCODER_TOKENS",
        int,
        None,
        "encoder positions per request (windows x window, every pass) before 413",
    ),
    "--max-chunks": ("LONGVEC_MAX_CHUNKS", int, None, "chunk vectors per request before 413"),
    "--min-chunk-tokens": ("LONGVEC_MIN_CHUNK_TOKENS", int, None, "smallest chunk_tokens a request may ask for"),
    "--min-stride": ("LONGVEC_MIN_STRIDE", int, None, "smallest window stride a request may ask for"),
    "--request-timeout": ("LONGVEC_REQUEST_TIMEOUT", float, None, "seconds from admission to answer before 504"),
    "--graceful-timeout": ("LONGVEC_GRACEFUL_TIMEOUT", float, None, "seconds SIGTERM waits for requests in flight"),
    "--header-timeout": ("LONGVEC_HEADER_TIMEOUT", float, None, "seconds a request's headers may take to arrive"),
    "--body-timeout": ("LONGVEC_BODY_TIMEOUT", float, None, "seconds a request's body may take to arrive"),
    "--keep-alive-timeout": ("LONGVEC_KEEP_ALIVE_TIMEOUT", float, None, "seconds an idle connection stays open"),
    "--write-timeout": (
        "LONGVEC_WRITE_TIMEOUT",
        float,
        None,
        "seconds a response may sit unsent while the client reads nothing; then the connection is dropped",
    ),
    "--max-connections": (
        "LONGVEC_MAX_CONNECTIONS",
        int,
        None,
        "open connections; at the cap a new one replaces the oldest idle one, and when all are busy only "
        "/health, /ready and /metrics answer (503 for the rest)",
    ),
    "--cors-allow-origin": (
        "LONGVEC_CORS_ALLOW_ORIGIN",
        str,
        None,
        "comma-separated origins allowed by CORS (e.g. https://app.example.com, or *); none means no CORS headers",
    ),
    "--variant": ("LONGVEC_VARIANT", str, "optimized", "graph variant from the bundle"),
    "--threads": ("LONGVEC_THREADS", int, None, "encoder threads; none means all cores"),
    "--window": ("LONGVEC_WINDOW", int, None, "encoder window in positions; none means the bundle's"),
    "--log-level": ("LONGVEC_LOG_LEVEL", str, "info", "log level: debug, info, warning, error"),
    "--log-format": ("LONGVEC_LOG_FORMAT", str, "text", "log lines as text or json"),
}
# flags whose values are a closed set: a typo fails before the bundle loads
CHOICES: dict[str, tuple[str, ...]] = {
    "--log-level": ("critical", "error", "warning", "info", "debug", "trace"),
    "--log-format": ("text", "json"),
    "--variant": VARIANT_NAMES,
}
LOOPBACK_NAMES = {"localhost"}
MAX_VALUE = 2**31  # a bound on every number option: timeouts become asyncio timers and ints (inf would crash)


def _serve_args(p: argparse.ArgumentParser) -> None:
    from longvec.runtime.server.settings import ServeSettings

    defaults = {f.name: f.default for f in fields(ServeSettings)}
    p.description = (
        "Serve embeddings over HTTP: POST /v1/embeddings (OpenAI-compatible), POST /v1/documents, GET /v1/models, "
        "/health, /ready, /info, /metrics. Every option can also be set by the environment variable shown with "
        "it; a flag on the command line wins."
    )
    bundle = os.environ.get("LONGVEC_BUNDLE")
    p.add_argument(
        "bundle_dir",
        type=Path,
        nargs="?" if bundle else None,
        default=bundle,
        help="the model bundle (env LONGVEC_BUNDLE)",
    )
    for flag, (env, kind, default, text) in OPTIONS.items():
        name = flag[2:].replace("-", "_")
        if default is None and name in defaults and name != "api_key":
            default = defaults[name]
        # a string default goes through `type` like a typed flag, so a bad env value is a usage error
        value = os.environ.get(env)
        p.add_argument(
            flag,
            type=kind,
            default=value if value is not None else default,
            choices=CHOICES.get(flag),
            help=f"{text} (env {env}; default {default})",
        )
    p.add_argument(
        "--no-auth",
        action="store_true",
        default=None,  # then LONGVEC_NO_AUTH, read by `env_flag` when the command runs (a bad value is an error)
        help="serve a non-loopback address without an API key, on purpose (env LONGVEC_NO_AUTH=1, true, yes or on; "
        "0, false, no, off or empty leave auth on; default off)",
    )


TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def env_flag(name: str) -> bool:
    """A boolean environment variable: only an explicit yes turns it on, and a word it does not know is an error
    (LONGVEC_NO_AUTH=false must never turn auth off)."""
    value = os.environ.get(name, "").strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    yes, no = "/".join(TRUE_WORDS), "/".join(w for w in FALSE_WORDS if w)
    raise InputError(f"{name}={os.environ[name]!r} is not a yes or no: use {yes} (on) or {no} (off)")


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_auth(api_key: str | None, host: str, no_auth: bool) -> str | None:
    """The key to require, or None; refuses an empty key and an open non-loopback server nobody asked for."""
    if api_key is not None and not api_key.strip():
        raise InputError("the API key is empty (LONGVEC_API_KEY= or --api-key ''); set a key, or unset it")
    if api_key is not None and api_key != api_key.strip():
        raise InputError(
            "the API key starts or ends with whitespace (a secret file's newline?), which no Authorization header "
            "can carry: strip it"
        )
    if api_key is None and not no_auth and not is_loopback(host):
        raise InputError(
            f"--host {host} is reachable from other machines and no API key is set: set LONGVEC_API_KEY, "
            "or pass --no-auth to serve without one on purpose"
        )
    return api_key


def listen(host: str, port: int) -> socket.socket:
    """Bind the address before anything starts, so a port in use is one clear error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise AddressInUse(f"{host}:{port} is already in use by another process; choose another --port") from None
        raise AddressInUse(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.set_inheritable(True)
    return sock


@command("serve", _serve_args)
def _serve(args: argparse.Namespace) -> int:
    """Serve embeddings over HTTP (OpenAI-compatible /v1/embeddings, /v1/documents)."""
    try:
        import uvicorn

        from longvec.runtime.server import ServeSettings, create_app
        from longvec.runtime.server.logs import configure
        from longvec.runtime.server.protocol import guarded_protocol
    except ImportError as e:
        raise BackendUnavailable(
            f"`longvec serve` needs FastAPI, uvicorn and prometheus_client: pip install 'longvec[serve]' ({e})"
        ) from e
    from longvec.runtime import Embedder
    from longvec.runtime.bundle.reader import Bundle
    from longvec.runtime.core.text import TextTokenizer
    from longvec.runtime.core.windows import WindowPlan

    positive = (
        "max_batch_tokens",
        "max_queue",
        "max_queue_tokens",
        "max_request_tokens",
        "max_request_encoder_tokens",
        "max_items",
        "max_body_bytes",
        "max_chunks",
        "min_chunk_tokens",
        "min_stride",
        "request_timeout",
        "graceful_timeout",
        "header_timeout",
        "body_timeout",
        "keep_alive_timeout",
        "write_timeout",
        "max_connections",
    )
    for name in ("port", *positive):
        value = getattr(args, name)
        if not math.isfinite(value) or value < (0 if name == "port" else 1e-9) or value > MAX_VALUE:
            raise InputError(f"--{name.replace('_', '-')} must be positive and finite (at most 2**31), got {value}")
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads must be at least 1, got {args.threads}")
    no_auth = bool(args.no_auth) or env_flag("LONGVEC_NO_AUTH")
    api_key = check_auth(args.api_key, args.host, no_auth)
    # fail fast, with the CLI's exit codes, on a bad bundle, tokenizer, variant or window; loading the graph
    # happens after the port is open so /ready can say 503 meanwhile
    bundle = Bundle.open(args.bundle_dir, verify=False)
    chosen = bundle.variant(args.variant)
    bundle.verify((bundle.manifest.tokenizer_file, chosen.file))  # the files the server reads, not every variant
    TextTokenizer.from_file(bundle.path(bundle.manifest.tokenizer_file))
    m = bundle.manifest
    if args.window is not None:
        WindowPlan.make(args.window, None, len(m.framing.prefix_ids) + len(m.framing.suffix_ids), m.max_positions)
    if args.default_prompt_name is not None and args.default_prompt_name not in m.prompts:
        known = ", ".join(repr(k) for k in sorted(m.prompts)) or "none"
        raise InputError(f"--default-prompt-name {args.default_prompt_name!r} is not a prompt of this bundle: {known}")

    def load() -> Embedder:
        return Embedder.load(
            args.bundle_dir, args.variant, args.threads, args.window, args.max_batch_tokens, verify=False, spin=False
        )

    origins = tuple(o.strip() for o in (args.cors_allow_origin or "").split(",") if o.strip())
    settings = ServeSettings(
        model_name=args.served_model_name or served_name(bundle),
        api_key=api_key,
        default_prompt_name=args.default_prompt_name,
        cors_allow_origins=origins,
        log_format=args.log_format,
        started_by={
            "variant": args.variant,
            "threads": str(args.threads or "all cores"),
            "listen": f"http://{args.host}:{args.port}",
        },
        **{name: getattr(args, name) for name in positive},
    )
    configure(args.log_format, args.log_level)
    sock = listen(args.host, args.port)
    failures: list[BaseException] = []

    def on_load_error(e: BaseException) -> None:
        failures.append(e)
        server.should_exit = True

    app = create_app(settings, load, on_load_error)
    config = uvicorn.Config(
        app,
        log_config=None,  # our handler, our format (longvec.runtime.server.logs)
        log_level=args.log_level,
        access_log=False,  # our access line has the request id, texts and tokens
        lifespan="on",
        http=guarded_protocol(
            settings.header_timeout, settings.body_timeout, settings.max_connections, settings.write_timeout
        ),
        # clients reuse connections between bursts; with uvicorn's 5 s default, a busy machine makes the race
        # between the server closing an idle connection and the client's next request on it likelier
        timeout_keep_alive=int(settings.keep_alive_timeout),
        timeout_graceful_shutdown=int(max(1, settings.graceful_timeout)),
    )
    server = uvicorn.Server(config)
    logging.getLogger("longvec.server").info("listening", extra={"fields": {"url": f"http://{args.host}:{args.port}"}})
    # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal so the default action would kill
    # the process with status 143. A finished graceful shutdown is a success: exit 0.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    server.run(sockets=[sock])
    if failures:
        raise failures[0]
    return 0


def served_name(bundle: Bundle) -> str:
    """The model's own name where the bundle records one (`Bundle.model_name`, newer bundles), else its folder."""
    name = getattr(bundle, "model_name", None)
    return name if isinstance(name, str) and name else bundle.root.resolve().name


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
