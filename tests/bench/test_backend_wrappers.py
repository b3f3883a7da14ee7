"""One wrapper base (runtime.backends.base.BackendWrapper) forwards a backend's declared capabilities whole: the
cancellable backend and the bench's timed one alike, so a wrapper never changes batching."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from harness.wrappers import TimedBackend, with_backend

from longvec.runtime import Embedder
from longvec.runtime.backends import BackendWrapper, Capabilities
from longvec.runtime.backends.cancel import CancellableBackend, CancelToken, cancel_scope
from longvec.runtime.backends.fake import FakeBackend
from longvec.runtime.core.pipeline import GPU_BATCHING, Batching
from longvec.runtime.errors import Cancelled


class GpuPlan(FakeBackend):
    """A pooled fake that declares what a TensorRT plan would: on a GPU, at most 8 windows of 64 positions."""

    def __init__(self) -> None:
        super().__init__(hidden_size=8, pooled=True)
        self.capabilities = Capabilities("gpu plan", pools=True, on_gpu=True, max_batch=8, max_seq=64)


@pytest.mark.parametrize("wrap", [CancellableBackend, TimedBackend, BackendWrapper])
def test_wrappers_forward_every_capability(wrap: type[BackendWrapper]) -> None:
    inner = GpuPlan()
    assert wrap(inner).capabilities == inner.capabilities


def test_the_batching_policy_reads_capabilities_only() -> None:
    caps = GpuPlan().capabilities
    assert Batching.for_backend(caps) == replace(GPU_BATCHING, max_batch=8)
    assert Batching.for_backend(caps, 1024) == replace(GPU_BATCHING, max_tokens=1024, max_batch=8)
    assert Batching.for_backend(Capabilities("cpu")) == Batching()
    assert Batching.for_backend(Capabilities("gpu", on_gpu=True)) == GPU_BATCHING


def test_with_backend_keeps_the_engines_cap_through_a_wrapper(make_fake: object) -> None:
    plain: Embedder = make_fake()  # type: ignore[operator]
    on_plan = plain.with_backend(GpuPlan())
    assert on_plan.batching.max_batch == 8
    timed = with_backend(on_plan, TimedBackend(on_plan.backend))
    assert timed.batching == on_plan.batching and timed.name == on_plan.name and timed.provider == "gpu plan"


def test_cancellation_is_checked_before_pooled_runs_too() -> None:
    backend = CancellableBackend(FakeBackend(hidden_size=4, pooled=True))
    ids = np.ones((1, 3), np.int64)
    assert backend.run_pooled(ids, ids, np.ones((1, 1, 3), np.float32)).shape == (1, 1, 4)
    with pytest.raises(Cancelled), cancel_scope(CancelToken(gone=lambda: False)) as token:
        object.__setattr__(token, "gone", lambda: True)
        backend.run_pooled(ids, ids, np.ones((1, 1, 3), np.float32))
