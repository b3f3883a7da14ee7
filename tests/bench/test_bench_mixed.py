"""The mixed-length case of `longvec bench` (issue 24): paragraphs of 19-170 words in corpus order, each fitting one
window, the same texts for every system, longvec's own length-sorted token-budget batches recorded for the bare
loop, and each system asked to batch its own default way."""

from __future__ import annotations

import pytest
from harness.workloads import MIXED_WORDS, WorkloadBuilder, build_cases

from longvec.runtime import Embedder
from longvec.runtime.errors import InputError

WORDS = ["the", "keeper", "lit", "the", "lamp", "at", "dusk", "and", "watched", "the", "ships", "pass", "the", "rocks"]


def paragraph(n_words: int) -> str:
    return " ".join(WORDS[i % len(WORDS)] for i in range(n_words)) + "."


# one document of paragraphs: too short, in range (mixed lengths), too long
CORPUS = ["\n\n".join(paragraph(n) for n in (5, 19, 120, 40, 170, 171, 300, 60, 25, 90, 150, 33, 18))]


def test_mixed_case_takes_paragraphs_in_range_and_records_longvecs_batches(embedder: Embedder) -> None:
    case = WorkloadBuilder(embedder.tokenizer, embedder.manifest, CORPUS).mixed(9)
    [texts] = case.calls
    words = [len(t.split()) for t in texts]
    assert words == [19, 120, 40, 170, 60, 25, 90, 150, 33]  # corpus order, 18 / 171 / 300 words left out
    assert all(MIXED_WORDS[0] <= w <= MIXED_WORDS[1] for w in words)
    lengths = [len(t) for t in embedder.tokenizer.encode(texts)]
    assert max(lengths) <= embedder.plan().content  # every text fits one window: no system truncates
    assert case.default_batching and case.peer_calls == [texts] and case.window is None
    assert case.tokens == sum(n + 2 for n in lengths)
    batches = case.encoder_calls[0]
    rows = [int(m.sum()) for _, m in batches]
    assert sum(rows) == case.tokens  # exactly longvec's encoder work, no window split
    # longvec's own batching: sorted by length and packed under its token budget
    seen = [int(n) for _, m in batches for n in m.sum(axis=1)]
    assert seen == sorted(n + 2 for n in lengths)
    assert all(ids.shape[0] * ids.shape[1] <= embedder.batching.max_tokens for ids, _ in batches)


def test_mixed_case_refuses_a_corpus_without_enough_paragraphs(embedder: Embedder) -> None:
    with pytest.raises(InputError, match="paragraphs of 19-170 words, 10 asked"):
        WorkloadBuilder(embedder.tokenizer, embedder.manifest, CORPUS).mixed(10)


def test_build_cases_adds_the_mixed_case_only_when_asked(embedder: Embedder) -> None:
    without = build_cases(embedder.tokenizer, embedder.manifest, CORPUS, [], [], [])
    with_mixed = build_cases(embedder.tokenizer, embedder.manifest, CORPUS, [], [], [], mixed=4)
    assert without == [] and [c.name for c in with_mixed] == ["mixed-4"]
