"""Span pooling kernels against plain loops over spans (float64 references), float32 and float16 inputs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longvec.kernels import (
    PrefixAccumulator,
    prefix_sums,
    span_first,
    span_max,
    span_mean,
    span_sums_from_prefix,
)
from longvec.kernels.pooling import segment_sums

# float16 inputs are exact in float64 and accumulated in float32, so both get float32-accumulation tolerances;
# the sums of ~50k unit-scale values carry absolute error ~1e-7 * sqrt(n) * |partial sums|.
TOL = {np.float32: dict(rtol=1e-4, atol=2e-5), np.float16: dict(rtol=1e-4, atol=2e-5)}

n_tokens = st.one_of(st.integers(1, 64), st.integers(1, 50_000))
dtypes = st.sampled_from([np.float32, np.float16])


@st.composite
def documents(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Token states [n, d] and spans mixing the shapes that break kernels: empty, one token, whole document,
    overlapping and unsorted."""
    n = draw(n_tokens)
    d = draw(st.integers(1, 6))
    dtype = draw(dtypes)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    states = rng.standard_normal((n, d)).astype(dtype)
    point = st.integers(0, n)
    kinds = draw(st.lists(st.sampled_from(["random", "empty", "single", "whole", "edge"]), max_size=12))
    spans = []
    for kind in kinds:
        if kind == "random":
            a, b = draw(point), draw(point)
            spans.append((min(a, b), max(a, b)))
        elif kind == "empty":
            a = draw(point)
            spans.append((a, a))
        elif kind == "single":
            a = draw(st.integers(0, n - 1))
            spans.append((a, a + 1))
        elif kind == "whole":
            spans.append((0, n))
        else:
            spans.append(draw(st.sampled_from([(0, 1), (n - 1, n), (n, n), (0, 0)])))
    return states, np.asarray(spans, dtype=np.int64).reshape(-1, 2)


def loop_reduce(states: np.ndarray, spans: np.ndarray, how: str) -> np.ndarray:
    out = np.zeros((len(spans), states.shape[1]), dtype=np.float64)
    for k, (s, e) in enumerate(spans.tolist()):
        if e > s:
            rows = states[s:e].astype(np.float64)
            out[k] = {"mean": rows.mean(axis=0), "max": rows.max(axis=0), "first": rows[0], "sum": rows.sum(axis=0)}[
                how
            ]
    return out


@settings(max_examples=50, deadline=None)
@given(documents())
def test_span_mean_matches_loop(doc: tuple[np.ndarray, np.ndarray]) -> None:
    states, spans = doc
    got = span_mean(states, spans)
    assert got.dtype == np.float32 and got.shape == (len(spans), states.shape[1])
    np.testing.assert_allclose(got, loop_reduce(states, spans, "mean"), **TOL[states.dtype.type])


@settings(max_examples=50, deadline=None)
@given(documents())
def test_span_max_and_first_are_exact(doc: tuple[np.ndarray, np.ndarray]) -> None:
    states, spans = doc
    # max and first select values, they do not compute: the result is exactly an input value
    np.testing.assert_array_equal(span_max(states, spans), loop_reduce(states, spans, "max").astype(np.float32))
    np.testing.assert_array_equal(span_first(states, spans), loop_reduce(states, spans, "first").astype(np.float32))


@settings(max_examples=50, deadline=None)
@given(documents())
def test_prefix_sums_give_span_sums(doc: tuple[np.ndarray, np.ndarray]) -> None:
    states, spans = doc
    prefix = prefix_sums(states)
    assert prefix.shape == (states.shape[0] + 1, states.shape[1])
    np.testing.assert_array_equal(prefix[0], 0.0)
    np.testing.assert_allclose(span_sums_from_prefix(prefix, spans), loop_reduce(states, spans, "sum"), atol=1e-9)


@settings(max_examples=50, deadline=None)
@given(documents(), st.data())
def test_prefix_accumulator_fed_in_random_blocks(doc: tuple[np.ndarray, np.ndarray], data: st.DataObject) -> None:
    states, spans = doc
    n = states.shape[0]
    extra = data.draw(st.lists(st.integers(0, n), max_size=5))  # boundaries nobody asks about are harmless
    acc = PrefixAccumulator(np.concatenate((spans.ravel(), extra)).astype(np.int64), states.shape[1])
    cuts = sorted(set(data.draw(st.lists(st.integers(0, n), max_size=20))) | {0, n})
    for lo, hi in itertools.pairwise(cuts):
        acc.add(states[lo:hi])
        acc.add(states[hi:hi])  # an empty block changes nothing
    assert acc.position == n
    # float32 running sums: the rounding error grows with the magnitudes summed, not with the (possibly cancelling)
    # result, so the bound is relative to the span's sum of |x|; a wrong boundary is off by whole rows
    scale = loop_reduce(np.abs(states.astype(np.float64)), spans, "sum")
    assert np.all(np.abs(acc.span_sums(spans) - loop_reduce(states, spans, "sum")) <= 1e-5 * scale + 1e-4)
    np.testing.assert_allclose(acc.span_means(spans), loop_reduce(states, spans, "mean"), **TOL[states.dtype.type])
    np.testing.assert_array_equal(acc.span_means(spans, block=2), acc.span_means(spans))


def test_prefix_accumulator_rejects_unknown_and_unseen_edges() -> None:
    states = np.ones((10, 2), np.float32)
    acc = PrefixAccumulator(np.array([0, 4, 10]), 2)
    acc.add(states[:6])
    np.testing.assert_array_equal(acc.span_sums(np.array([[0, 4]])), [[4.0, 4.0]])
    with pytest.raises(ValueError, match="seen so far"):
        acc.span_sums(np.array([[4, 10]]))
    acc.add(states[6:])
    with pytest.raises(ValueError, match="start <= end"):
        acc.span_sums(np.array([[10, 4]]))
    with pytest.raises(ValueError, match="boundary"):
        acc.span_sums(np.array([[3, 10]]))
    with pytest.raises(ValueError, match="boundary"):
        PrefixAccumulator(np.zeros(0, np.int64), 2).span_sums(np.array([[0, 0]]))


@settings(max_examples=50, deadline=None)
@given(documents(), st.data())
def test_segment_sums_match_loop_on_both_paths(doc: tuple[np.ndarray, np.ndarray], data: st.DataObject) -> None:
    # few long segments take the per-segment loop, many short ones np.add.reduceat: both must agree with a loop
    states, _ = doc
    n = states.shape[0]
    starts = np.unique([0, *data.draw(st.lists(st.integers(0, n - 1), max_size=data.draw(st.sampled_from([3, n]))))])
    bounds = [*starts.tolist(), n]
    spans = np.array(list(itertools.pairwise(bounds)), dtype=np.int64)
    got = segment_sums(states, starts)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, loop_reduce(states, spans, "sum"), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("kernel", [span_mean, span_max, span_first])
@pytest.mark.parametrize("bad", [[[-1, 2]], [[3, 2]], [[0, 11]]])
def test_span_kernels_reject_bad_spans(kernel, bad: list[list[int]]) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="spans must satisfy"):
        kernel(np.ones((10, 3), np.float32), np.array(bad))


def test_span_mean_of_many_huge_overlapping_spans() -> None:
    # 1000 spans of ~1M tokens each: one pass over segments, not a copy per span
    states = np.full((1_000_000, 2), 0.5, np.float32)
    spans = np.stack([np.arange(0, 1000), np.arange(1_000_000 - 1000, 1_000_000)], axis=1)
    np.testing.assert_allclose(span_mean(states, spans), 0.5, rtol=1e-6)
