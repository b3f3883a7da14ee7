"""The cancellation wrapper: work in a scope whose token trips stops before the next encoder batch, with a typed
error; outside a scope the wrapper changes nothing."""

from __future__ import annotations

import time

import numpy as np
import pytest

from longvec.runtime import Embedder
from longvec.runtime.backends.cancel import CancellableBackend, CancelToken, cancel_scope
from longvec.runtime.core.pipeline import Batching
from longvec.runtime.errors import Cancelled, DeadlineExceeded

LONG = "the lamp turned through the night while the keeper wrote the log " * 200  # ~2.6k tokens, many windows


def wrapped(make_fake: object) -> tuple[Embedder, CancellableBackend]:
    plain: Embedder = make_fake()  # type: ignore[operator]
    backend = CancellableBackend(plain.backend)
    emb = Embedder(backend, plain.tokenizer, plain.manifest, plain.window, Batching(max_tokens=256))
    return emb, backend


def test_outside_a_scope_nothing_changes(make_fake: object) -> None:
    emb, _ = wrapped(make_fake)
    plain: Embedder = make_fake()  # type: ignore[operator]
    np.testing.assert_array_equal(emb.embed([LONG]), plain.embed([LONG]))


def test_a_tripped_token_stops_within_one_batch(make_fake: object) -> None:
    emb, backend = wrapped(make_fake)
    calls = backend.inner.calls  # type: ignore[attr-defined]
    gone_after = 3
    with pytest.raises(Cancelled), cancel_scope(CancelToken(gone=lambda: len(calls) >= gone_after)):
        emb.embed([LONG])
    assert len(calls) == gone_after  # the batch that was running finished; no other started
    fresh: Embedder = make_fake()  # type: ignore[operator]
    Embedder(fresh.backend, fresh.tokenizer, fresh.manifest, fresh.window, Batching(max_tokens=256)).embed([LONG])
    assert len(fresh.backend.calls) > 2 * gone_after  # type: ignore[attr-defined]  # the whole job is much longer


def test_a_passed_deadline_is_its_own_error(make_fake: object) -> None:
    emb, backend = wrapped(make_fake)
    with pytest.raises(DeadlineExceeded), cancel_scope(CancelToken(deadline=time.monotonic() - 1)):
        emb.embed_documents([LONG])
    assert backend.inner.calls == []  # type: ignore[attr-defined]
    assert issubclass(DeadlineExceeded, Cancelled)
