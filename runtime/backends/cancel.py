"""Stopping started work between encoder batches: a cancellation token, and a backend wrapper that checks it.

The pipeline calls its backend once per encoder batch, so a check in front of every backend call stops a
long document within one batch of the moment its caller gave up, without any change to the pipeline:

    backend = CancellableBackend(backend)
    with cancel_scope(CancelToken(gone=lambda: client_left(), deadline=time.monotonic() + 30)):
        embedder.embed([book])  # raises Cancelled / DeadlineExceeded at the next batch once either trips

Outside a scope the wrapper only forwards. The scope is a context variable, so it belongs to the thread (or
task) that runs the library call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np

from longvec.runtime.backends.base import BackendWrapper
from longvec.runtime.errors import Cancelled, DeadlineExceeded


def _never() -> bool:
    return False


@dataclass(frozen=True)
class CancelToken:
    gone: Callable[[], bool] = _never  # True once nobody wants the result
    deadline: float | None = None  # time.monotonic() after which the work is abandoned

    def check(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise DeadlineExceeded("the work ran past its deadline and was stopped between encoder batches")
        if self.gone():
            raise Cancelled("the caller gave up; the work was stopped between encoder batches")


_current: ContextVar[CancelToken | None] = ContextVar("longvec_cancel_token", default=None)


@contextmanager
def cancel_scope(token: CancelToken) -> Iterator[CancelToken]:
    reset = _current.set(token)
    try:
        token.check()
        yield token
    finally:
        _current.reset(reset)


def check_current() -> None:
    token = _current.get()
    if token is not None:
        token.check()


class CancellableBackend(BackendWrapper):
    """Checks the current scope's token before every call into the engine (`run` and `run_pooled` alike), then
    forwards it unchanged; its capabilities are the inner backend's."""

    def call(self, method: Callable[..., np.ndarray], *args: np.ndarray) -> np.ndarray:
        check_current()
        return method(*args)
