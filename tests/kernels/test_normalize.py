"""Normalization and Matryoshka truncation against per-row Python references."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longvec.kernels import l2_normalize, matryoshka


@st.composite
def matrices(draw: st.DrawFn) -> np.ndarray:
    """Rows of mixed scale, some all-zero, float32 or float16."""
    rows, dim = draw(st.integers(1, 20)), draw(st.integers(1, 40))
    dtype = draw(st.sampled_from([np.float32, np.float16]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = 10.0 ** rng.integers(-2, 3, size=(rows, 1))
    x = rng.standard_normal((rows, dim)) * scale
    x[rng.random(rows) < 0.2] = 0.0
    if draw(st.booleans()):
        x[:, rng.random(dim) < 0.3] = 0.0  # exact zeros inside rows (binary quantization's edge)
    return x.astype(dtype)


def row_norm(row: np.ndarray) -> float:
    return math.sqrt(sum(float(v) * float(v) for v in row))


@settings(max_examples=50, deadline=None)
@given(matrices())
def test_l2_normalize_matches_loop_and_keeps_zero_rows(x: np.ndarray) -> None:
    got = l2_normalize(x)
    assert got.dtype == np.float32 and got.shape == x.shape and np.all(np.isfinite(got))
    for row, out in zip(x, got):
        norm = row_norm(row)
        if norm == 0.0:
            np.testing.assert_array_equal(out, 0.0)
        else:
            np.testing.assert_allclose(out, [float(v) / norm for v in row], rtol=1e-5, atol=1e-6)
            assert abs(row_norm(out) - 1.0) < 1e-5


@settings(max_examples=50, deadline=None)
@given(matrices(), st.data())
def test_matryoshka_truncates_then_renormalizes(x: np.ndarray, data: st.DataObject) -> None:
    dims = data.draw(st.integers(1, x.shape[1]))
    got = matryoshka(x, dims)
    assert got.shape == (x.shape[0], dims)
    for row, out in zip(x, got):
        norm = row_norm(row[:dims])
        expected = [0.0] * dims if norm == 0.0 else [float(v) / norm for v in row[:dims]]
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dims", [0, -1, 5])
def test_matryoshka_rejects_dims_out_of_range(dims: int) -> None:
    with pytest.raises(ValueError, match="dims"):
        matryoshka(np.ones((2, 4), np.float32), dims)
