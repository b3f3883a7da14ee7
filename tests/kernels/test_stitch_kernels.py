"""Window stitching kernels against per-token loops."""

from __future__ import annotations

import bisect
from types import ModuleType

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from longvec.kernels import center_ownership, window_weights


@st.composite
def layouts(draw: st.DrawFn) -> tuple[np.ndarray, int, int]:
    """(starts, length, n_tokens): sorted windows of equal length that cover [0, n), the last aligned to the end.

    Either the planner's regular layout (stride s, last window pulled back to the end) or irregular gaps.
    """
    length = draw(st.integers(1, 64))
    n = draw(st.one_of(st.integers(length, length + 200), st.integers(length, 50_000)))
    if n == length:
        return np.zeros(1, np.int64), length, n
    last = n - length
    if draw(st.booleans()):
        stride = draw(st.integers(max(1, length // 8), length))
        starts = np.append(np.arange(0, last, stride), last)
    else:
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        gaps = rng.integers(1, length + 1, size=last)  # enough gaps of >= 1 to reach `last`
        starts = np.unique(np.minimum(np.concatenate(([0], np.cumsum(gaps))), last))
    return starts.astype(np.int64), length, n


def covering(starts: list[int], length: int, t: int) -> range:
    """Indices of the windows that contain token t."""
    return range(bisect.bisect_right(starts, t - length), bisect.bisect_right(starts, t))


@settings(max_examples=50, deadline=None)
@given(layouts())
def test_center_ownership_tiles_and_picks_the_nearest_center(layout: tuple[np.ndarray, int, int]) -> None:
    starts, length, n = layout
    owned = center_ownership(starts, length, n)
    assert owned.shape == (len(starts), 2)
    assert owned[0, 0] == 0 and owned[-1, 1] == n
    np.testing.assert_array_equal(owned[1:, 0], owned[:-1, 1])  # consecutive, no gap, no overlap
    assert np.all(owned[:, 1] >= owned[:, 0])
    s = starts.tolist()
    owner = np.repeat(np.arange(len(s)), owned[:, 1] - owned[:, 0])
    for t in range(n):
        w = int(owner[t])
        assert s[w] <= t < s[w] + length, f"token {t} owned by window {w} that does not contain it"
        twice_dist = [abs(2 * t - (2 * s[j] + length - 1)) for j in covering(s, length, t)]
        assert abs(2 * t - (2 * s[w] + length - 1)) == min(twice_dist), f"token {t}: a nearer center exists"


@settings(max_examples=50, deadline=None)
@given(layouts(), st.sampled_from([np.float32, np.float16]), st.integers(0, 2**32 - 1))
def test_stitch_center_takes_each_token_from_its_owner(
    oracles: ModuleType, layout: tuple[np.ndarray, int, int], dtype: type, seed: int
) -> None:
    starts, length, n = layout
    d = 3
    win = np.random.default_rng(seed).standard_normal((len(starts), length, d)).astype(dtype)
    got = oracles.stitch_center(win, starts, n)
    assert got.shape == (n, d) and got.dtype == np.float32
    s = starts.tolist()
    expected = np.empty((n, d), np.float32)
    for t in range(n):
        best = min(covering(s, length, t), key=lambda j: (abs(2 * t - (2 * s[j] + length - 1)), -j))
        expected[t] = win[best, t - s[best]]
    np.testing.assert_array_equal(got, expected)  # a selection, so exact for either dtype


@settings(max_examples=50, deadline=None)
@given(layouts(), st.sampled_from([np.float32, np.float16]), st.integers(0, 2**32 - 1), st.booleans())
def test_stitch_weighted_is_the_weighted_mean_of_covering_windows(
    oracles: ModuleType, layout: tuple[np.ndarray, int, int], dtype: type, seed: int, custom: bool
) -> None:
    starts, length, n = layout
    d = 2
    rng = np.random.default_rng(seed)
    win = rng.standard_normal((len(starts), length, d)).astype(dtype)
    weights = rng.uniform(0.1, 2.0, length).astype(np.float32) if custom else None
    got = oracles.stitch_weighted(win, starts, n, weights)
    w = window_weights(length) if weights is None else weights
    s = starts.tolist()
    expected = np.empty((n, d), np.float64)
    for t in range(n):
        num, den = np.zeros(d), 0.0
        for j in covering(s, length, t):
            num += float(w[t - s[j]]) * win[j, t - s[j]].astype(np.float64)
            den += float(w[t - s[j]])
        expected[t] = num / den
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_window_weights_are_triangular_and_positive() -> None:
    for length in (1, 2, 7, 8, 256):
        w = window_weights(length)
        assert w.shape == (length,) and np.all(w > 0)
        np.testing.assert_array_equal(w, w[::-1])
        assert w.argmax() in ((length - 1) // 2, length // 2)


def test_single_window_is_returned_unchanged(oracles: ModuleType) -> None:
    win = np.random.default_rng(0).standard_normal((1, 9, 4)).astype(np.float32)
    np.testing.assert_array_equal(oracles.stitch_center(win, np.array([0]), 9), win[0])
    np.testing.assert_allclose(oracles.stitch_weighted(win, np.array([0]), 9), win[0], rtol=1e-6)
