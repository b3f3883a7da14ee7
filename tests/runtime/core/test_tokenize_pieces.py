"""Long texts are tokenized in pieces (bounded memory); the result must equal tokenizing the whole text at once."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from longvec.runtime.core.text import TextTokenizer, piece_bounds

PIECES = [
    "word", "Lighthouse", "keeper's", " 's", "don't", "3.14", "e-mail", "東京", "は", "。", "🚢", "👩‍👩‍👧",
    "e\u0301", "שלום", "مرحبا", "\u200f", "Ünïcödé", "ﬁ", "İ",
    " ", "  ", "   ", "\t", "\n", "\n\n", " \n", "\u3000", "\u00a0", "\u2028", "\r\n", "\x1c", "\x85",
    ".", "!", "?", ",", "(", '"', "«", "—", "¿", "\u0301", "\u200d",
]  # fmt: skip
texts = st.one_of(
    st.lists(st.sampled_from(PIECES), min_size=1, max_size=150).map("".join),
    st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=300),
)


CORPUS = [
    "The lighthouse keeper trimmed the wick at dusk and wound the clockwork that turned the lens.",
    "Fog horns sounded when the light could not be seen; ships counted the flashes to know the coast.",
    "Café owners in Ålesund remember the naïve painter who drew 灯台 and 🚢 in 1887, don't they?",
] * 20


def byte_level_bpe() -> Tokenizer:
    """GPT-2 / RoBERTa style: byte-level pre-tokenizer, offsets trimmed by the RoBERTa post-processor."""
    from tokenizers import models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    special = ["<s>", "<pad>", "</s>", "<unk>"]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tok.train_from_iterator(
        CORPUS, trainers.BpeTrainer(vocab_size=400, special_tokens=special, initial_alphabet=alphabet)
    )
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True)
    return tok


def sentencepiece_unigram() -> Tokenizer:
    """XLM-R / T5 style: NFKC, metaspace pre-tokenizer, unigram model."""
    from tokenizers import models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator(
        CORPUS, trainers.UnigramTrainer(vocab_size=150, special_tokens=["<unk>"], unk_token="<unk>")
    )
    return tok


@pytest.fixture(scope="module")
def tokenizers(bundle_dir: Path) -> dict[str, Tokenizer]:
    """BERT WordPiece (the real MiniLM one), byte-level BPE and SentencePiece-style Unigram."""
    return {
        "wordpiece": Tokenizer.from_file(str(bundle_dir / "tokenizer.json")),
        "bpe": byte_level_bpe(),
        "unigram": sentencepiece_unigram(),
    }


def test_only_whitespace_dropping_pre_tokenizers_are_cut(tokenizers: dict[str, Tokenizer]) -> None:
    # byte-level BPE and SentencePiece tokenize a piece's first token differently (space kept in the token,
    # offsets trimmed, "▁" prepended): hypothesis found both, so those texts are tokenized whole
    assert TextTokenizer(tokenizers["wordpiece"], piece_chars=8).piece_chars == 8
    assert TextTokenizer(tokenizers["bpe"], piece_chars=8).piece_chars is None
    assert TextTokenizer(tokenizers["unigram"], piece_chars=8).piece_chars is None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts, st.integers(1, 40), st.sampled_from(["wordpiece", "bpe", "unigram"]))
def test_pieces_tokenize_exactly_like_the_whole_text(
    tokenizers: dict[str, Tokenizer], text: str, piece_chars: int, kind: str
) -> None:
    whole = TextTokenizer(tokenizers[kind], piece_chars=10**9).encode([text])[0]
    pieces = TextTokenizer(tokenizers[kind], piece_chars=piece_chars).encode([text, "short"])[0]
    np.testing.assert_array_equal(pieces.ids, whole.ids)
    np.testing.assert_array_equal(pieces.offsets, whole.offsets)


@settings(max_examples=50, deadline=None)
@given(texts, st.integers(1, 50))
def test_piece_bounds_tile_the_text_and_cut_before_a_word(text: str, piece_chars: int) -> None:
    bounds = piece_bounds(text, piece_chars)
    assert bounds[0][0] == 0 and bounds[-1][1] == len(text)
    assert all(a < b for a, b in bounds)
    assert all(prev[1] == nxt[0] for prev, nxt in itertools.pairwise(bounds))
    for _, cut in bounds[:-1]:
        assert text[cut] in " \t\n" and not text[cut + 1].isspace()


def test_a_long_real_text_in_pieces(bundle_dir: Path) -> None:
    paragraph = (
        "The lighthouse keeper's log, 1887: fog from 3 a.m.; the horn sounded 1,204 times.  Supplies —\toil, "
        "wicks, bread — came on the 14th.\n\nCafé owners in Ålesund remember the naïve painter who drew 灯台.\n"
    )
    text = paragraph * 400  # ~80k characters, several pieces of the default size
    tok = Tokenizer.from_file(str(bundle_dir / "tokenizer.json"))
    assert len(piece_bounds(text)) > 1
    whole = TextTokenizer(tok, piece_chars=10**9).encode([text])[0]
    pieces = TextTokenizer(tok).encode([text])[0]
    np.testing.assert_array_equal(pieces.ids, whole.ids)
    np.testing.assert_array_equal(pieces.offsets, whole.offsets)


@pytest.mark.parametrize("make", [byte_level_bpe, sentencepiece_unigram])
def test_the_character_floor_holds_for_other_tokenizer_families(make: object) -> None:
    """TextTokenizer.min_tokens (the server's refusal before tokenizing) never passes the real count."""
    tok = TextTokenizer(make())  # type: ignore[operator]
    assert tok.min_tokens("a b c") == 3  # both split at whitespace: the floor applies

    @settings(max_examples=200, deadline=None)
    @given(st.text(alphabet=st.sampled_from(list("ab1!. \t\n\r東é\u0301\x1c\u00a0_")), max_size=60))
    def check(text: str) -> None:
        assert tok.min_tokens(text) <= len(tok.encode([text])[0])

    check()


def test_no_piece_cut_falls_inside_an_added_token(tokenizers: dict[str, Tokenizer]) -> None:
    # "[SEP]" is matched in the raw text as one token; a cut after its "[" (punctuation) made it 4 tokens
    tok = tokenizers["wordpiece"]
    text = "a[SEP]b " * 40 + "[MASK]!" * 40
    for piece_chars in range(1, 12):
        pieces = TextTokenizer(tok, piece_chars=piece_chars).encode([text])[0]
        assert pieces.ids.tolist() == tok.encode(text, add_special_tokens=False).ids


def test_unicode_punctuation_counts_before_tokenizing_and_is_cut_into_pieces(tokenizers: dict[str, Tokenizer]) -> None:
    # 4 MiB of "«" is 2.1M tokens: the floor counted none of them (only ASCII punctuation), and with no whitespace
    # or ASCII punctuation to cut at, the text was tokenized whole (+1.3 GB)
    tok = TextTokenizer(tokenizers["wordpiece"])
    text = "«—¿。" * 2000
    assert tok.min_tokens(text) == len(tok.encode([text])[0]) == 8000
    assert len(piece_bounds(text, 100, tok._cut)) > 1
    small = TextTokenizer(tokenizers["wordpiece"], piece_chars=7)
    for text in ["«a«\u0301b»" * 30, "x—y " * 50]:
        got = small.encode([text])[0]
        whole = tokenizers["wordpiece"].encode(text, add_special_tokens=False)
        assert got.ids.tolist() == whole.ids and got.offsets.tolist() == [list(o) for o in whole.offsets]
