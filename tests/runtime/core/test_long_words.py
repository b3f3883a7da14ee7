"""A long run of letters is cut before tokenizing (WordPiece makes the whole word one [UNK] anyway); the tokens and
offsets must equal the tokenizer's own on the whole text, and the tokenizer must never see the run whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Encoding, Tokenizer

from longvec.runtime.core.text import LongWords, TextTokenizer

# letters and marks inside a word (ASCII, accented, Cyrillic, Hangul jamo and syllables, ß, "ﬁ", a combining accent
# and a zero-width space that the normalizer removes, a spacing mark it keeps) and characters that end a word or
# that the normalizer spaces out (CJK, punctuation, whitespace, "_", "¿", an added token)
LETTERS = ["a", "Z", "9", "é", "İ", "ж", "ß", "ﬁ", "Ａ", "가", "\u1100", "\u1161", "\u11a8", "e\u0301", "a\u200b",
           "\u200ba", "a\u0903", "\u0301", "\u200b", "²"]  # fmt: skip
OTHERS = ["中", "_", "!", " ", "\n", "¿", "[UNK]", "x"]
runs = st.tuples(st.sampled_from(LETTERS + OTHERS), st.integers(1, 1500)).map(lambda p: p[0] * p[1])
texts = st.lists(st.one_of(runs, st.sampled_from(OTHERS)), min_size=1, max_size=6).map("".join)


@pytest.fixture(scope="module")
def wordpiece(bundle_dir: Path) -> Tokenizer:
    return Tokenizer.from_file(str(bundle_dir / "tokenizer.json"))


def _same(got: object, want: Encoding) -> None:
    np.testing.assert_array_equal(got.ids, np.asarray(want.ids, dtype=np.int64))  # type: ignore[attr-defined]
    np.testing.assert_array_equal(got.offsets, np.asarray(want.offsets, dtype=np.int64).reshape(-1, 2))  # type: ignore[attr-defined]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts, st.sampled_from([16, 10**9]))
def test_cut_runs_tokenize_like_the_whole_text(wordpiece: Tokenizer, text: str, piece_chars: int) -> None:
    got = TextTokenizer(wordpiece, piece_chars=piece_chars).encode([text, "short"])[0]
    _same(got, wordpiece.encode(text, add_special_tokens=False))


class _Recording:
    """The real tokenizer, recording the longest text it was given."""

    def __init__(self, inner: Tokenizer) -> None:
        self.inner, self.longest = inner, 0

    def encode(self, text: str, **kw: object) -> Encoding:
        self.longest = max(self.longest, len(text))
        return self.inner.encode(text, **kw)

    def encode_batch(self, texts: list[str], **kw: object) -> list[Encoding]:
        self.longest = max([self.longest, *map(len, texts)])
        return self.inner.encode_batch(texts, **kw)


@pytest.mark.parametrize("letter", ["a", "ж", "é", "e\u0301", "a\u200b", "\u200ba", "ﬁ"])
def test_a_megabyte_word_never_reaches_the_tokenizer_whole(wordpiece: Tokenizer, letter: str) -> None:
    # one word of 1M letters: 1 [UNK] over the whole of it, found from a few hundred characters (the tokenizer's own
    # normalized copy of the whole word cost 2.6 s and +333 MB at 4 MiB)
    text = "Before, " + letter * (1_000_000 // len(letter)) + " after."
    tok = TextTokenizer(wordpiece)
    recording = _Recording(wordpiece)
    tok._tok = recording  # type: ignore[assignment]
    got = tok.encode([text])[0]
    assert recording.longest < 1000
    assert int(got.ids[2]) == wordpiece.token_to_id("[UNK]")
    want = wordpiece.encode(text, add_special_tokens=False)
    assert got.offsets[2].tolist() == list(want.offsets[2]) and got.ids.tolist() == want.ids
    assert text[int(got.offsets[-1][0]) :] == "."


def test_a_cut_that_does_not_land_in_one_unk_falls_back_to_the_whole_text(wordpiece: Tokenizer) -> None:
    tok = TextTokenizer(wordpiece)
    assert tok._long_words is not None
    object.__setattr__(tok._long_words, "unk_id", -1)  # no token is ever this: every check fails
    text = "a " + "b" * 5000 + " c"
    _same(tok.encode([text])[0], wordpiece.encode(text, add_special_tokens=False))


def test_only_wordpiece_with_safe_rules_is_cut(wordpiece: Tokenizer) -> None:
    import json

    spec = json.loads(wordpiece.to_str())
    assert LongWords.of(wordpiece, spec) is not None
    # an added token that could match inside a run, another model, or a pre-tokenizer that splits letters from digits
    assert LongWords.of(wordpiece, {**spec, "added_tokens": [{"content": "abc"}]}) is None
    assert LongWords.of(wordpiece, {**spec, "model": {**spec["model"], "type": "BPE"}}) is None
    assert LongWords.of(wordpiece, {**spec, "pre_tokenizer": {"type": "ByteLevel"}}) is None
    assert LongWords.of(wordpiece, {**spec, "normalizer": {"type": "Replace"}}) is None
    assert LongWords.of(wordpiece, {**spec, "normalizer": {"type": "NFC"}}) is None  # composes across characters
