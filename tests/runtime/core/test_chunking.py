"""Chunk spans round-trip to the exact source text, for any Unicode, and caller spans fail clearly."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from longvec.runtime.core.chunking import Chunks, make_chunks
from longvec.runtime.core.text import TextTokenizer, Tokens
from longvec.runtime.errors import InputError

PIECES = [
    "word", "Lighthouse", "keeper's", "don't", "3.14", "1,000", "e-mail", "x",  # ASCII words
    "東京", "灯台守", "は", "、", "。",  # CJK, with ideographic punctuation
    "🚢", "👩‍👩‍👧", "🇳🇴", "👍🏽",  # emoji: plain, ZWJ family, flag, skin tone
    "e\u0301", "n\u0303o", "a\u0308\u0304",  # combining marks (stripped by the uncased tokenizer)
    "שלום", "مرحبا", "\u200fRTL\u200f", "\u202bembedded\u202c",  # RTL scripts and bidi controls
    "Ünïcödé", "ǅ", "ﬁ", "İ", "ß",  # letters whose normalization changes length
    " ", "  ", "\t", "\n", "\n\n", " \n \n ", "\u3000", "\u00a0", "\u2028", "\r\n",  # whitespace runs
    ".", "!", "?", "...", ",", ";", "(", ")", '"', "—",  # punctuation, sentence ends
]  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer(bundle_dir: Path) -> TextTokenizer:
    return TextTokenizer.from_file(bundle_dir / "tokenizer.json")


texts = st.one_of(
    st.lists(st.sampled_from(PIECES), min_size=1, max_size=120).map("".join),
    st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=200),
)


def check_round_trip(text: str, tokens: Tokens, chunks: Chunks, size: int | None) -> None:
    n = len(tokens)
    ts, cs = chunks.token_spans, chunks.char_spans
    assert ts.shape == cs.shape == (len(chunks), 2)
    if n == 0:
        return
    # the chunks cover all tokens, in order, without overlap, none empty, none over the size
    assert ts[0, 0] == 0 and ts[-1, 1] == n
    np.testing.assert_array_equal(ts[1:, 0], ts[:-1, 1])
    assert np.all(ts[:, 1] > ts[:, 0])
    if size is not None:
        assert np.all(ts[:, 1] - ts[:, 0] <= size)
    # character spans lie inside the text, in order, without overlap
    assert np.all((cs[:, 0] >= 0) & (cs[:, 0] < cs[:, 1]) & (cs[:, 1] <= len(text)))
    assert np.all(cs[1:, 0] >= cs[:-1, 1])
    off = tokens.offsets
    for (s, e), (a, b) in zip(cs.tolist(), ts.tolist()):
        # text[s:e] is the chunk: it starts at its first token and ends at its last, and holds all of its tokens
        assert s == off[a, 0] and e == off[b - 1, 1]
        assert np.all(off[a:b, 0] >= s) and np.all(off[a:b, 1] <= e)
        assert np.all(off[:a, 1] <= s) and np.all(off[b:, 0] >= e), "a token of another chunk reaches in"
        assert text[s:e].strip() == text[s:e] or not text[s:e].strip()


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts, st.sampled_from(["tokens", "sentences", "paragraphs"]), st.integers(1, 40))
def test_chunks_round_trip_to_the_source_text(tokenizer: TextTokenizer, text: str, chunking: str, size: int) -> None:
    tokens = tokenizer.encode([text])[0]
    check_round_trip(text, tokens, make_chunks(text, tokens, chunking, size, None), size)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts, st.data())
def test_caller_spans_on_token_edges_round_trip(tokenizer: TextTokenizer, text: str, data: st.DataObject) -> None:
    tokens = tokenizer.encode([text])[0]
    n = len(tokens)
    if n == 0:
        return
    cuts = sorted(set(data.draw(st.lists(st.integers(1, n - 1), max_size=6))) | {0, n}) if n > 1 else [0, 1]
    token_spans = np.array(list(itertools.pairwise(cuts)), dtype=np.int64)
    # widen each span into the whitespace around it: still the same tokens
    char_spans = np.stack([tokens.offsets[token_spans[:, 0], 0], tokens.offsets[token_spans[:, 1] - 1, 1]], axis=1)
    chunks = make_chunks(text, tokens, "spans", 1, char_spans.tolist())
    np.testing.assert_array_equal(chunks.token_spans, token_spans)
    np.testing.assert_array_equal(chunks.char_spans, char_spans)
    check_round_trip(text, tokens, chunks, None)


def test_chunking_cjk_emoji_rtl_and_whitespace_runs(tokenizer: TextTokenizer) -> None:
    text = "灯台守は毎晩ランプを灯した。  \n\n 🚢👩‍👩‍👧 the keeper\u0301s log —  שלום  مرحبا.\t\tEnd\u3000of\u00a0file!"
    tokens = tokenizer.encode([text])[0]
    for chunking in ("tokens", "sentences", "paragraphs"):
        for size in (1, 2, 5, 500):
            chunks = make_chunks(text, tokens, chunking, size, None)
            check_round_trip(text, tokens, chunks, size)
    one = make_chunks(text, tokens, "tokens", 500, None)
    assert len(one) == 1 and one.char_spans.tolist() == [[0, len(text)]]


def test_paragraphs_split_at_sentence_ends_before_word_breaks(tokenizer: TextTokenizer) -> None:
    sentences = [f"Sentence number {i} talks about the lamp and the keeper." for i in range(12)]
    long_paragraph = " ".join(sentences)
    text = "A short opening paragraph.\n\n" + long_paragraph + "\n\nA short closing paragraph."
    tokens = tokenizer.encode([text])[0]
    per_sentence = len(tokenizer.encode([sentences[0]])[0])
    size = 3 * per_sentence - 2  # room for two sentences, not three: a word-break cut would land mid-sentence
    chunks = make_chunks(text, tokens, "paragraphs", size, None)
    check_round_trip(text, tokens, chunks, size)
    pieces = [text[s:e] for s, e in chunks.char_spans.tolist()]
    # the opening paragraph and the first sentences do not fit together: the paragraph end is the cut
    assert pieces[0] == "A short opening paragraph."
    # inside the long paragraph every cut is a sentence end (the tail packs with the closing paragraph)
    for piece in pieces[1:]:
        assert piece.startswith("Sentence number") and piece.endswith(("keeper.", "closing paragraph.")), piece
    assert len(pieces) >= 6


def test_sentences_fall_back_to_word_breaks_only_for_a_sentence_over_the_size(tokenizer: TextTokenizer) -> None:
    text = "Short one. " + " ".join(["lamp"] * 30) + " end. Last one."
    tokens = tokenizer.encode([text])[0]
    pieces = [text[s:e] for s, e in make_chunks(text, tokens, "sentences", 12, None).char_spans.tolist()]
    assert pieces[0] == "Short one."
    assert pieces[-1].endswith("Last one.")
    assert all(p.split() == p.split(" ") for p in pieces)  # never a cut inside a word


@pytest.mark.parametrize(
    ("spans", "message"),
    [
        ([(0, 2)], "inside the token"),  # "Lighthouse" is one token, 0..10
        ([(3, 10)], "inside the token"),
        ([(0, 10), (11, 14)], "inside the token"),  # "keepers" -> "keepers" wordpieces 11..18
        ([(-1, 5)], "inside the text"),
        ([(5, 200)], "inside the text"),
        ([(4, 4)], "inside the text"),
        ([(9, 3)], "inside the text"),
        ([(10, 11)], "contains no token"),  # the space between two words
    ],
)
def test_caller_spans_inside_a_token_or_outside_the_text_are_input_errors(
    tokenizer: TextTokenizer, spans: list[tuple[int, int]], message: str
) -> None:
    text = "Lighthouse keepers kept logs."
    tokens = tokenizer.encode([text])[0]
    with pytest.raises(InputError, match=message):
        make_chunks(text, tokens, "spans", 1, spans)


def test_caller_spans_of_the_wrong_shape_are_input_errors(tokenizer: TextTokenizer) -> None:
    tokens = tokenizer.encode(["a b"])[0]
    with pytest.raises(InputError, match="start, end"):
        make_chunks("a b", tokens, "spans", 1, [[0, 1, 2]])


def test_chunk_offsets_of_a_1m_token_document_are_vectorized(tokenizer: TextTokenizer) -> None:
    # 1M tokens of offsets: the token arithmetic is vectorized, so the chunkers' Python runs per chunk or per
    # sentence/paragraph boundary (measured: 86k, 587k and 754k lines here), never per token; a Python loop over
    # tokens runs at least two lines per token (2M). Lines counted, not seconds: a loaded machine neither fails nor
    # passes it.
    import sys
    from types import FrameType
    from typing import Any

    def lines_run(fn: Any) -> tuple[Any, int]:
        count = 0

        def trace(frame: FrameType, event: str, arg: object) -> Any:
            nonlocal count
            if "longvec" not in frame.f_code.co_filename:
                return None  # numpy's own Python is not the chunker's work
            if event == "line":
                count += 1
            return trace

        sys.settrace(trace)
        try:
            return fn(), count
        finally:
            sys.settrace(None)

    n = 1_000_000
    pattern = ["lamp", "keeper", "tower.", "sea\n\n", "fog", "log."]  # words, sentence ends, paragraph ends
    text = " ".join(pattern * (n // len(pattern)))
    lengths = np.tile([len(w) for w in pattern], n // len(pattern))
    starts = np.concatenate(([0], np.cumsum(lengths + 1)[:-1]))
    stripped = lengths - np.tile([w.endswith("\n\n") * 2 for w in pattern], n // len(pattern))  # word, not newlines
    tokens = Tokens(np.zeros(len(lengths), np.int64), np.stack([starts, starts + stripped], axis=1))
    n = len(tokens)
    for chunking in ("tokens", "sentences", "paragraphs"):
        chunks, lines = lines_run(lambda c=chunking: make_chunks(text, tokens, c, 128, None))
        assert lines < n, (chunking, lines)
        assert chunks.token_spans[-1, 1] == n and np.all(np.diff(chunks.token_spans[:, 0]) > 0)
