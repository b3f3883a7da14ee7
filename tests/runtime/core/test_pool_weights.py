"""Pooling by weight rows reproduces stitched pooling: every window's states stitched into one sequence with the
kernels (center-most or weighted), then pooled, vs the pipeline's per-window weight rows folded into running sums;
and the pipeline gives the same results with a backend that pools itself and one that returns token states."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longvec.kernels.pool_weights import center_stitch_weights, overlap_stitch_weights
from longvec.runtime.backends.fake import FakeBackend
from longvec.runtime.bundle.manifest import Framing, PoolingConfig
from longvec.runtime.core.pipeline import Batching, Pipeline, PipelineConfig, TokenSequence
from longvec.runtime.core.windows import WindowPlan

HIDDEN = 8


def _reference(
    oracles: ModuleType,
    backend: FakeBackend,
    ids: np.ndarray,
    spans: np.ndarray,
    plan: WindowPlan,
    prefix: np.ndarray,
    suffix: np.ndarray,
    stitch: str,
    pooling: str,
    include_prefix: bool,
) -> dict[str, np.ndarray]:
    """Today's pooling, written out: stitch every window's states into one sequence, then pool it."""
    n, p = len(ids), len(prefix)
    starts = plan.starts(n)
    c = min(plan.content, n)
    windows = []
    for s in starts.tolist():
        framed = np.concatenate((prefix, ids[s : s + c], suffix))[None, :]
        windows.append(backend.run(framed, np.ones_like(framed))[0])
    states = np.stack(windows)
    body = states[:, p : p + c]
    content = oracles.stitch_center(body, starts, n) if stitch == "center" else oracles.stitch_weighted(body, starts, n)
    stitched = np.concatenate((states[0, :p], content, states[-1, p + c :]))
    begin = 0 if include_prefix else p
    own = {"mean": states[:, begin:].mean(axis=1), "cls": states[:, 0], "last": states[:, -1]}[pooling]
    doc = {"mean": stitched[begin:].mean(axis=0), "cls": own.mean(axis=0), "last": own[-1]}[pooling]
    return {"pooled": doc, "spans": oracles.span_mean(stitched, spans + p), "windows": own}


@st.composite
def documents(draw: st.DrawFn) -> tuple[list[tuple[np.ndarray, np.ndarray]], int, int]:
    content = draw(st.integers(2, 40))
    stride = draw(st.integers(1, content))
    docs = []
    for _ in range(draw(st.integers(1, 4))):
        n = draw(st.integers(1, 160))
        ids = np.asarray(draw(st.lists(st.integers(5, 999), min_size=n, max_size=n)), dtype=np.int64)
        bounds = draw(st.lists(st.tuples(st.integers(0, n), st.integers(0, n)), max_size=6))
        spans = np.asarray([sorted(b) for b in bounds], dtype=np.int64).reshape(-1, 2)
        docs.append((ids, spans))
    return docs, content, stride


@settings(max_examples=60, deadline=None)
@given(
    documents(),
    st.sampled_from(["center", "weighted"]),
    st.sampled_from(["mean", "cls", "last"]),
    st.lists(st.integers(5, 999), max_size=3),  # prompt tokens
    st.booleans(),  # include_prompt
    st.integers(1, 6),  # max windows per batch
    st.booleans(),  # pooled backend
)
def test_weight_rows_reproduce_stitched_pooling(
    oracles: ModuleType,
    docs: tuple[list[tuple[np.ndarray, np.ndarray]], int, int],
    stitch: str,
    pooling: str,
    prompt: list[int],
    include_prompt: bool,
    per_batch: int,
    pooled: bool,
) -> None:
    items, content, stride = docs
    framing = Framing((1,), (2,), 0)
    overhead = 2 + len(prompt)
    plan = WindowPlan.make(content + overhead, stride, overhead, 10_000)
    backend = FakeBackend(vocab_size=1000, hidden_size=HIDDEN, pooled=pooled)
    config = PipelineConfig(
        framing,
        PoolingConfig(pooling, False, include_prompt),  # type: ignore[arg-type]
        Batching(max_tokens=per_batch * plan.window, max_batch=per_batch),
    )
    got = Pipeline(backend, config).run([TokenSequence(i, s) for i, s in items], plan, tuple(prompt), stitch)  # type: ignore[arg-type]
    prefix = np.asarray([1, *prompt], dtype=np.int64)
    suffix = np.asarray([2], dtype=np.int64)
    for (ids, spans), enc in zip(items, got):
        want = _reference(
            oracles, backend, ids, spans, plan, prefix, suffix, stitch, pooling, include_prompt or not prompt
        )
        np.testing.assert_allclose(enc.pooled, want["pooled"], atol=1e-5)
        np.testing.assert_allclose(enc.span_means, want["spans"], atol=1e-5)
        np.testing.assert_allclose(enc.window_pooled, want["windows"], atol=1e-5)
        assert enc.n_windows == plan.n_windows(len(ids))


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 50), st.data())
def test_stitch_weights_partition_every_token(length: int, data: st.DataObject) -> None:
    """Both stitchings give every token a total weight of exactly 1 over the windows that cover it."""
    n = data.draw(st.integers(length + 1, 6 * length))
    stride = data.draw(st.integers(1, length))
    starts = WindowPlan(length, length, stride).starts(n)
    windows = np.arange(len(starts))
    for weights in (center_stitch_weights(starts, length, n, windows), overlap_stitch_weights(starts, length, windows)):
        total = np.zeros(n)
        for w, s in enumerate(starts.tolist()):
            total[s : s + length] += weights[w]
        np.testing.assert_allclose(total, 1.0, atol=1e-6)


@pytest.mark.parametrize("stitch", ["center", "weighted"])
def test_windows_in_any_order_give_the_same_sums(stitch: str) -> None:
    """Windows of a long document can arrive in any order: the sums are the same."""
    from longvec.runtime.core.stitch import SequenceLayout, SequenceSums, batch_rows, host_pool

    backend = FakeBackend(vocab_size=1000, hidden_size=HIDDEN)
    ids = np.random.default_rng(3).integers(5, 999, 300)
    plan = WindowPlan.make(34, 11, 2, 512)
    spans = np.array([[0, 300], [17, 90], [150, 151], [40, 40]])
    results = []
    for order in (np.arange(plan.n_windows(300)), np.random.default_rng(4).permutation(plan.n_windows(300))):
        layout = SequenceLayout(plan.starts(300), plan.content, 300, 1, 1, spans, stitch)  # type: ignore[arg-type]
        sums = SequenceSums(layout, HIDDEN)
        for w in order.tolist():
            s = int(layout.starts[w])
            framed = np.concatenate(([1], ids[s : s + plan.content], [2]))[None, :]
            rows = batch_rows([(sums, w)], framed.shape[1])
            rows.add(host_pool(backend.run(framed, np.ones_like(framed)), rows.weights))
        results.append((sums.pooled(), sums.span_means(), sums.window_pooled.copy()))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert not results[0][1][3].any()  # the empty span pools to zeros
