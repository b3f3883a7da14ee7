"""Dynamic batching: texts from concurrent requests share library calls under a token budget.

Requests wait in one queue. A single worker thread owns the Embedder (the encoder never runs on the event
loop, and one engine call at a time is what onnxruntime's intra-op threads are tuned for). The worker takes
the oldest request, then every other waiting request with equal options while the token budget lasts,
runs the library once on all their texts, and hands each request exactly its own slice of the results.
If that shared call fails, each request of the group is retried alone, so one bad request cannot fail its
neighbours; only the request that really fails gets the error.

Started work stops when nobody waits for it any more: the call runs in a cancellation scope whose token trips
once every request of the group has been answered otherwise (client gone, deadline passed, server stopping),
and the cancellable backend checks it before each encoder batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from longvec.runtime.backends.cancel import CancelToken, cancel_scope
from longvec.runtime.errors import Cancelled, OverloadedError
from longvec.runtime.server.metrics import Metrics
from longvec.runtime.server.options import Options

log = logging.getLogger("longvec.server")

# options, texts, per-text extras (e.g. spans), number of requests sharing the call -> one result per text
Runner = Callable[[Options, list[str], list[Any], int], Sequence[Any]]


@dataclass(eq=False)
class Work:
    options: Options  # requests with equal options may share one library call
    texts: list[str]
    extras: list[Any]  # one per text, passed through to the runner
    n_tokens: int  # content tokens over all texts, for the budget
    deadline: float | None = None  # time.monotonic() after which nobody wants the result
    future: asyncio.Future[list[Any]] = field(init=False, repr=False)
    queued_at: float = field(init=False, repr=False, default=0.0)


class Batcher:
    def __init__(
        self,
        run: Runner,
        max_queue: int,
        max_batch_tokens: int,
        metrics: Metrics,
        hold: Callable[[], None] | None = None,
        max_queue_tokens: int | None = None,
    ) -> None:
        if max_queue < 1 or max_batch_tokens < 1:
            raise ValueError("max_queue and max_batch_tokens must be >= 1")
        self.max_queue_tokens = max_queue_tokens  # content tokens waiting: bounds the queue's memory and wait
        self._run = run
        self._hold = hold  # a test hook: called before each library call, may block (see lifecycle.test_hold)
        self.max_queue = max_queue
        self.max_batch_tokens = max_batch_tokens
        self._metrics = metrics
        self._pending: deque[Work] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._worker, name="longvec-encoder", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Finish what is queued and still awaited, then end the worker (waiting at most `timeout`)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def depth(self) -> int:
        return len(self._pending)

    async def submit(self, work: Work) -> list[Any]:
        """Queue `work` and wait for its results; OverloadedError when the queue is full."""
        work.future = asyncio.get_running_loop().create_future()
        with self._cond:
            if self._stopping:
                raise OverloadedError("the server is shutting down")
            if len(self._pending) >= self.max_queue:
                raise OverloadedError(f"the queue is full ({self.max_queue} requests waiting); retry later")
            waiting = sum(w.n_tokens for w in self._pending)
            if self.max_queue_tokens is not None and self._pending and waiting + work.n_tokens > self.max_queue_tokens:
                limit = f"--max-queue-tokens {self.max_queue_tokens}"
                raise OverloadedError(f"the queue is full ({waiting} tokens waiting, {limit}); retry later")
            work.queued_at = time.monotonic()
            self._pending.append(work)
            self._metrics.queue_depth.set(len(self._pending))
            self._cond.notify()
        return await work.future

    def _worker(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if not self._pending:
                    return
                group = self._take_group()
                self._metrics.queue_depth.set(len(self._pending))
            taken = time.monotonic()
            for w in group:
                self._metrics.queue_time.observe(taken - w.queued_at)
            if group:
                self._metrics.encoder_busy.set(1)
                try:
                    if self._hold is not None:
                        self._hold()
                    self._run_group(group)
                finally:
                    self._metrics.encoder_busy.set(0)

    def _take_group(self) -> list[Work]:
        """The oldest live request plus later ones with the same options that fit the token budget."""
        while self._pending and self._pending[0].future.done():  # the client went away
            self._pending.popleft()
        if not self._pending:
            return []
        first = self._pending.popleft()
        group, budget = [first], self.max_batch_tokens - first.n_tokens
        keep: deque[Work] = deque()
        while self._pending:
            w = self._pending.popleft()
            if w.future.done():
                continue
            if w.options == first.options and w.n_tokens <= budget:
                group.append(w)
                budget -= w.n_tokens
            else:
                keep.append(w)
        self._pending = keep
        return group

    def _run_group(self, group: list[Work]) -> None:
        texts = [t for w in group for t in w.texts]
        extras = [x for w in group for x in w.extras]
        self._metrics.observe_batch(len(group), len(texts), sum(w.n_tokens for w in group))
        started = time.monotonic()
        deadlines = [w.deadline for w in group]
        token = CancelToken(
            gone=lambda: all(w.future.done() for w in group),
            deadline=None if None in deadlines else max(d for d in deadlines if d is not None),
        )
        try:
            with cancel_scope(token):
                results = list(self._run(group[0].options, texts, extras, len(group)))
            seconds = time.monotonic() - started
            for _ in group:
                self._metrics.inference.observe(seconds)
        except Cancelled as e:  # nobody waits for these results any more: stop, do not retry
            log.info("stopped a library call for %d request(s): %s", len(group), e)
            for w in group:
                self._resolve(w, error=e)
            return
        except Exception as e:
            if len(group) == 1:
                self._resolve(group[0], error=e)
                return
            log.info("a batch of %d requests failed (%s); retrying each alone", len(group), e)
            for w in group:
                self._run_group([w])
            return
        start = 0
        for w in group:
            self._resolve(w, results[start : start + len(w.texts)])
            start += len(w.texts)

    @staticmethod
    def _resolve(work: Work, results: list[Any] | None = None, error: BaseException | None = None) -> None:
        def settle() -> None:
            if work.future.done():
                return
            if error is not None:
                work.future.set_exception(error)
            else:
                work.future.set_result(results or [])

        with contextlib.suppress(RuntimeError):  # the event loop is closed: nobody is waiting any more
            work.future.get_loop().call_soon_threadsafe(settle)
