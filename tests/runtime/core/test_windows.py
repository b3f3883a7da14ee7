"""Window planner invariants, and what the encoder actually receives (the fake backend records its inputs)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longvec.runtime import Embedder
from longvec.runtime.core.windows import WindowPlan
from longvec.runtime.errors import InputError


@st.composite
def plans(draw: st.DrawFn) -> WindowPlan:
    max_positions = draw(st.integers(2, 512))
    window = draw(st.integers(2, max_positions))
    overhead = draw(st.integers(0, window - 1))
    content = window - overhead
    stride = draw(st.one_of(st.none(), st.just(1), st.just(content), st.integers(1, content)))
    return WindowPlan.make(window, stride, overhead, max_positions)


def check_layout(plan: WindowPlan, n: int) -> None:
    starts = plan.starts(n)
    assert starts.dtype == np.int64 and len(starts) == plan.n_windows(n) >= 1
    assert starts[0] == 0
    length = min(plan.content, n)
    covered = np.zeros(n, dtype=bool)
    for s in starts.tolist():
        assert s >= 0 and s + length <= n, "a window reaches past the document"
        covered[s : s + length] = True
    assert covered.all(), "a token is in no window"
    assert starts[-1] + length == n, "the last window is not aligned to the end"
    gaps = np.diff(starts)
    assert np.all(gaps >= 1) and np.all(gaps <= plan.stride)
    assert np.all(gaps[:-1] == plan.stride), "only the last window may step back from the stride"


@settings(max_examples=50, deadline=None)
@given(plans(), st.one_of(st.integers(1, 600), st.integers(1, 50_000)))
def test_every_token_is_covered_and_windows_stay_inside(plan: WindowPlan, n: int) -> None:
    assert plan.window <= 512 and plan.content + (plan.window - plan.content) == plan.window
    assert 1 <= plan.stride <= plan.content
    check_layout(plan, n)


@pytest.mark.parametrize("stride", [1, 2, 5, 10, None])
@pytest.mark.parametrize("offset", [-9, -1, 0, 1, 2, 9, 11, 37])
def test_stride_edge_cases(stride: int | None, offset: int) -> None:
    plan = WindowPlan.make(12, stride, 2, 512)  # content 10
    n = 10 + offset
    check_layout(plan, n)
    starts = plan.starts(n).tolist()
    if n <= 10:  # shorter than one window, or exactly one window
        assert starts == [0]
    elif n == 11:  # one token over: a second window, pulled back to end at the last token
        assert starts == [0, 1]
    if stride == 10 and n > 10:  # stride = content: no overlap except the end-aligned last window
        assert starts[:-1] == list(range(0, 10 * (len(starts) - 1), 10))
    if stride == 1:
        assert starts == list(range(max(n - 10, 0) + 1))


def test_default_stride_is_half_the_content() -> None:
    assert WindowPlan.make(256, None, 2, 512).stride == 127
    assert WindowPlan.make(3, None, 2, 512).stride == 1


@pytest.mark.parametrize(
    ("window", "stride", "overhead", "message"),
    [(513, None, 2, "exceeds"), (2, None, 2, "no room"), (10, 9, 2, "stride"), (10, 0, 2, "stride")],
)
def test_bad_plans_are_input_errors(window: int, stride: int | None, overhead: int, message: str) -> None:
    with pytest.raises(InputError, match=message):
        WindowPlan.make(window, stride, overhead, 512)


GREEK = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "omicron",
    "pi",
    "rho",
    "sigma",
]


@pytest.mark.parametrize("prompt", [None, "query: "])
@pytest.mark.parametrize("stride", [None, 1, 7])
def test_encoder_sees_framed_windows_with_the_prompt_under_the_limit(
    make_fake: Callable[..., Embedder], text_of: Callable[..., str], prompt: str | None, stride: int | None
) -> None:
    emb = make_fake(window=24, max_tokens=24 * 5)
    emb.backend.record = True  # type: ignore[attr-defined]
    texts = [text_of(3, words=GREEK), text_of(40, 1, GREEK), text_of(150, 2, GREEK)]
    plan = emb.plan(stride=stride, prompt=prompt)
    prompt_ids = list(emb.tokenizer.ids(prompt)) if prompt else []
    head = [101, *prompt_ids]
    emb.embed(texts, prompt=prompt, stride=stride)
    rows = [(ids[r], mask[r]) for ids, mask in emb.backend.inputs for r in range(len(ids))]  # type: ignore[attr-defined]
    seen: dict[tuple[int, ...], int] = {}
    for ids, mask in rows:
        length = int(mask.sum())
        assert np.all(mask[:length] == 1) and np.all(mask[length:] == 0)
        assert length <= plan.window <= emb.manifest.max_positions
        row = ids[:length].tolist()
        assert row[: len(head)] == head, "framing prefix and prompt must open every window"
        assert row[-1] == 102
        body = tuple(row[len(head) : -1])
        seen[body] = seen.get(body, 0) + 1
    # every planned window of every text was encoded exactly once, with exactly its content tokens
    expected: dict[tuple[int, ...], int] = {}
    for tok in emb.tokenizer.encode(texts):
        ids = tok.ids.tolist()
        for s in plan.starts(len(ids)).tolist():
            key = tuple(ids[s : s + plan.content])
            expected[key] = expected.get(key, 0) + 1
    assert seen == expected
    assert len(rows) == sum(plan.n_windows(len(t)) for t in emb.tokenizer.encode(texts))


def test_a_prompt_that_fills_the_window_is_an_input_error(
    make_fake: Callable[..., Embedder], text_of: Callable[..., str]
) -> None:
    emb = make_fake(window=8)
    with pytest.raises(InputError, match="no room"):
        emb.embed(["hello"], prompt=text_of(20, words=GREEK))
