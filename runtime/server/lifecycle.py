"""A server's life: the port opens at once, the model loads and warms up on a background thread (/ready says
503 meanwhile), the encoder worker starts, and on shutdown what is still awaited is finished or stopped.

The served Embedder is the loaded one with two thin wrappers: a backend that checks the current cancellation
token before each encoder batch (so abandoned work stops; longvec.runtime.backends.cancel), and a tokenizer that
reuses the tokens admission already made (so a text is tokenized once).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI

from longvec.runtime.backends.cancel import CancellableBackend
from longvec.runtime.embedder import Embedder
from longvec.runtime.errors import LongvecError
from longvec.runtime.server.admission import Admission, TokenMemo
from longvec.runtime.server.batcher import Batcher
from longvec.runtime.server.errors import NotReady
from longvec.runtime.server.metrics import Metrics
from longvec.runtime.server.options import Options
from longvec.runtime.server.settings import ServeSettings

log = logging.getLogger("longvec.server")
STOP_SECONDS = 2.0  # after the graceful period the worker has nobody to serve: it stops within one batch


@dataclass
class Served:
    """What exists once the model is ready."""

    embedder: Embedder
    batcher: Batcher
    admission: Admission
    created: int  # unix time the model became ready (OpenAI's `created`)


@dataclass
class Lifecycle:
    settings: ServeSettings
    load: Callable[[], Embedder]
    metrics: Metrics
    on_load_error: Callable[[BaseException], None] | None = None
    served: Served | None = None
    error: BaseException | None = None
    _loader: threading.Thread | None = field(default=None, repr=False)

    def require(self) -> Served:
        if self.served is None:
            raise NotReady("the model failed to load" if self.error else "the model is still loading; retry shortly")
        return self.served

    @property
    def status(self) -> str:
        return "ok" if self.served else ("failed" if self.error else "loading")

    def load_and_warm(self) -> None:
        try:
            loaded = self.load()
            # the loaded embedder seen through a cancellable backend and a tokenizer that keeps admission's
            # tokens (nothing is loaded twice), batched by the library's policy with the server's token budget
            # (a TensorRT plan's batch cap holds here too)
            memo = TokenMemo(loaded.tokenizer)
            emb = loaded.with_backend(CancellableBackend(loaded.backend), memo, self.settings.max_batch_tokens)
            emb.embed(["warm up"])
            emb.embed([" ".join(["warm"] * (2 * emb.window))])  # the long-document path too

            def run(options: Options, texts: list[str], extras: list[Any], n_requests: int) -> Any:
                return options.run(emb, texts, extras, n_requests)

            s = self.settings
            batcher = Batcher(run, s.max_queue, s.max_batch_tokens, self.metrics, test_hold(), s.max_queue_tokens)
            batcher.start()
            self.served = Served(emb, batcher, Admission(self.settings, emb, memo), int(time.time()))
            fields = startup_fields(self.settings, emb)
            self.metrics.model.labels(fields["model"], fields["variant"], fields["provider"]).set(1)
            self.metrics.ready.set(1)
            log.info("ready", extra={"fields": fields})
        except Exception as e:
            self.error = e
            if isinstance(e, LongvecError):  # a bad bundle or engine: the message says it all
                log.error("loading the model failed: %s", e)
            else:
                log.error("loading the model failed", exc_info=e)
            if self.on_load_error is not None:
                self.on_load_error(e)

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        self._loader = threading.Thread(target=self.load_and_warm, name="longvec-load", daemon=True)
        self._loader.start()
        yield
        # uvicorn has waited for in-flight requests (at most --graceful-timeout, then cancelled them, which
        # stops their encoding within one batch); what is left has nobody waiting
        self._loader.join()
        if self.served is not None:
            self.served.batcher.stop(timeout=STOP_SECONDS)
            self.served.embedder.close()


def test_hold() -> Callable[[], None] | None:
    """A test hook, off unless LONGVEC_TEST_HOLD_FILE names a file: while that file exists the encoder worker
    waits before each library call. Tests hold work "in the encoder" with it instead of racing its duration."""
    path = os.environ.get("LONGVEC_TEST_HOLD_FILE")
    if not path:
        return None

    def hold() -> None:
        while os.path.exists(path):
            time.sleep(0.01)

    return hold


def startup_fields(settings: ServeSettings, emb: Embedder) -> dict[str, Any]:
    started = settings.started_by
    return {
        "model": settings.model_name,
        "variant": started.get("variant", "?"),
        "provider": emb.provider,
        "dimensions": emb.dim,
        "window": emb.window,
        "threads": started.get("threads", "all cores"),
        "listen": started.get("listen", "?"),
        "auth": "on" if settings.api_key else "off",
        "prompts": ",".join(sorted(emb.manifest.prompts)) or "none",
        "default_prompt": settings.default_prompt_name or emb.manifest.default_prompt or "none",
        "limits": settings.summary(),
    }
