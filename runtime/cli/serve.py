"""`longvec serve BUNDLE`: the HTTP embedding server under uvicorn. Every option can also come from the
environment (LONGVEC_PORT, LONGVEC_API_KEY, ...), so a container can be configured without a command line.

FastAPI and uvicorn are imported only when the command runs (the `serve` extra)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
from pathlib import Path
from types import FrameType

from longvec.runtime.cli.main import command
from longvec.runtime.errors import BackendUnavailable, InputError

# flag -> (environment variable, type, default, help)
OPTIONS: dict[str, tuple[str, type, object, str]] = {
    "--host": ("LONGVEC_HOST", str, "127.0.0.1", "address to bind; loopback unless you say otherwise"),
    "--port": ("LONGVEC_PORT", int, 8080, "TCP port"),
    "--api-key": ("LONGVEC_API_KEY", str, None, "require Authorization: Bearer KEY on /v1 (prefer the env var)"),
    "--max-batch-tokens": ("LONGVEC_MAX_BATCH_TOKENS", int, 8192, "tokens per shared encoder batch"),
    "--max-queue": ("LONGVEC_MAX_QUEUE", int, 256, "requests waiting for the encoder before 429"),
    "--max-request-tokens": ("LONGVEC_MAX_REQUEST_TOKENS", int, 1_000_000, "tokens per request before 413"),
    "--max-items": ("LONGVEC_MAX_ITEMS", int, 2048, "texts or documents per request before 413"),
    "--max-body-bytes": ("LONGVEC_MAX_BODY_BYTES", int, 32 * 2**20, "request body size before 413"),
    "--variant": ("LONGVEC_VARIANT", str, "optimized", "graph variant from the bundle"),
    "--threads": ("LONGVEC_THREADS", int, None, "encoder threads; none means all cores"),
    "--window": ("LONGVEC_WINDOW", int, None, "encoder window in positions; none means the bundle's"),
    "--log-level": ("LONGVEC_LOG_LEVEL", str, "info", "uvicorn log level"),
}


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Serve embeddings over HTTP: POST /v1/embeddings (OpenAI-compatible), POST /v1/documents, GET /health, "
        "GET /metrics, GET /docs. Every option can also be set by the environment variable shown with it; "
        "a flag on the command line wins."
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
        # a string default goes through `type` like a typed flag, so a bad env value is a usage error
        value = os.environ.get(env)
        p.add_argument(
            flag,
            type=kind,
            default=value if value is not None else default,
            help=f"{text} (env {env}; default {default})",
        )


@command("serve", _serve_args)
def _serve(args: argparse.Namespace) -> int:
    """Serve embeddings over HTTP (OpenAI-compatible /v1/embeddings, /v1/documents)."""
    try:
        import uvicorn

        from longvec.runtime.server import ServeSettings, create_app
    except ImportError as e:
        raise BackendUnavailable(
            f"`longvec serve` needs FastAPI and uvicorn: pip install 'longvec[serve]' ({e})"
        ) from e
    from longvec.runtime import Embedder
    from longvec.runtime.bundle.reader import Bundle
    from longvec.runtime.core.windows import WindowPlan

    for name in ("port", "max_batch_tokens", "max_queue", "max_request_tokens", "max_items", "max_body_bytes"):
        if getattr(args, name) < (0 if name == "port" else 1):
            raise InputError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    # fail fast, with the CLI's exit codes, on a bad bundle, variant or window; loading itself happens after
    # the port is open so /health can say 503 meanwhile
    bundle = Bundle.open(args.bundle_dir, verify=False)
    chosen = bundle.variant(args.variant)
    bundle.verify((bundle.manifest.tokenizer_file, chosen.file))  # the files the server reads, not every variant
    m = bundle.manifest
    if args.window is not None:
        WindowPlan.make(args.window, None, len(m.framing.prefix_ids) + len(m.framing.suffix_ids), m.max_positions)

    def load() -> Embedder:
        return Embedder.load(
            args.bundle_dir, args.variant, args.threads, args.window, args.max_batch_tokens, verify=False, spin=False
        )

    settings = ServeSettings(
        model_name=Path(args.bundle_dir).resolve().name,
        api_key=args.api_key or None,
        max_batch_tokens=args.max_batch_tokens,
        max_queue=args.max_queue,
        max_request_tokens=args.max_request_tokens,
        max_items=args.max_items,
        max_body_bytes=args.max_body_bytes,
    )
    failures: list[BaseException] = []

    def on_load_error(e: BaseException) -> None:
        failures.append(e)
        server.should_exit = True

    app = create_app(settings, load, on_load_error)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
        lifespan="on",
        # clients reuse connections between bursts; with uvicorn's 5 s default, a busy machine makes the race
        # between the server closing an idle connection and the client's next request on it likelier
        timeout_keep_alive=30,
    )
    server = uvicorn.Server(config)
    logging.getLogger("longvec.server").setLevel(args.log_level.upper())
    # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal so the default action would kill
    # the process with status 143. A finished graceful shutdown is a success: exit 0.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    server.run()
    if failures:
        raise failures[0]
    return 0


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
