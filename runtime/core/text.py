"""Tokenization: once per text, without truncation or special tokens, keeping character offsets."""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from longvec.runtime.errors import BundleError, InputError


@dataclass(frozen=True)
class Tokens:
    """The content tokens of one text: ids [n] and half-open character offsets [n, 2] into that text."""

    ids: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def text_problem(text: object, allow_blank: bool = False) -> str | None:
    """Why `text` cannot be embedded faithfully, as words that follow its name ("texts[3] is ...", "text is
    ..."), or None. The one text check of the library, the server and batch jobs, so all three say the same."""
    if not isinstance(text, str):
        return f"is {type(text).__name__}, expected a string"
    if not allow_blank and not text.strip():
        return "is empty or whitespace only; there is nothing to embed"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"is not valid Unicode (lone surrogate at {e.start})"
    return None


def validate_texts(texts: Sequence[str], allow_blank: bool = False) -> list[str]:
    """Reject what cannot be embedded faithfully, naming the item; the caller's list is not changed."""
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of str, not a single str (wrap it in a list)")
    out = list(texts)
    for i, text in enumerate(out):
        problem = text_problem(text, allow_blank)
        if problem is not None:
            raise (InputError if isinstance(text, str) else TypeError)(f"texts[{i}] {problem}")
    return out


def require_tokens(tokens: Sequence[Tokens]) -> None:
    """A text the tokenizer turns into nothing (e.g. only control characters) has nothing to embed."""
    for i, t in enumerate(tokens):
        if len(t) == 0:
            raise InputError(f"texts[{i}] has no tokens for this model's tokenizer")


# Long texts are tokenized in pieces: one `tokenizers` call on a 1M-token text holds ~700 MB (per-byte alignments,
# token strings, Python lists of ids and offsets), pieces keep that to a few MB per piece. A cut goes just before a
# space, tab or newline that is followed by a non-space. Only pre-tokenizers that split on whitespace and drop it
# (BERT-style) give the same tokens for the pieces as for the whole text; byte-level BPE keeps the space in the next
# token and trims the offsets of a sequence's first token differently, SentencePiece prepends "▁" to a piece that
# starts with a newline. Texts for those tokenizers are tokenized whole (tests/runtime/core/test_tokenize_pieces.py).
PIECE_CHARS = 1 << 16
_PIECES_PER_CALL = 4  # pieces per encode_batch call: parallel in Rust, still bounded memory
_CUT = re.compile(r"[ \t\n](?=\S)")
# BertPreTokenizer also isolates every punctuation character, so a cut right after one is as safe: a run without
# whitespace ("!!!!…", "a!a!…", "««««…") is then cut into pieces too instead of being tokenized whole
# (TextTokenizer._cut).
_WHITESPACE_SPLITTERS = {"BertPreTokenizer", "Whitespace", "WhitespaceSplit"}


@functools.cache
def _bmp_categories() -> tuple[str, str]:
    """Regex class bodies of the non-ASCII characters of the basic plane that are punctuation (category P*), and of
    those that are marks or format/control characters (M*, C*: a normalizer may drop or attach them). Built once
    per process (~10 ms), on the first long text or admission count, not at import."""
    punct, attached = [], []
    for code in range(0x80, 0x10000):
        if 0xD800 <= code <= 0xDFFF:
            continue
        kind = unicodedata.category(chr(code))[0]
        if kind == "P":
            punct.append(re.escape(chr(code)))
        elif kind in "MC":
            attached.append(re.escape(chr(code)))
    return "".join(punct), "".join(attached)


def splits_on_whitespace(tokenizer: Tokenizer) -> bool:
    """True when the pre-tokenizer drops whitespace between words, so no token spans a cut at whitespace."""
    spec = json.loads(tokenizer.to_str()).get("pre_tokenizer") or {}
    members = spec.get("pretokenizers", [spec]) if spec.get("type") == "Sequence" else [spec]
    return any(m.get("type") in _WHITESPACE_SPLITTERS for m in members)


def piece_bounds(
    text: str, piece_chars: int = PIECE_CHARS, cuts: re.Pattern[str] = _CUT, whole: Sequence[str] = ()
) -> list[tuple[int, int]]:
    """Consecutive [start, end) character ranges covering `text`, each ending at a safe cut near `piece_chars`
    (a text with no safe cut stays one piece: correctness before memory). No cut falls inside an occurrence of a
    string in `whole` (the tokenizer's added tokens, matched in the raw text: "[SEP]" cut after "[" is 4 tokens)."""

    def safe(cut: int) -> bool:
        return all(text.find(t, max(0, cut - len(t) + 1), cut + len(t) - 1) < 0 for t in whole)

    bounds, start = [], 0
    while len(text) - start > piece_chars:
        target = start + piece_chars
        before = [m.start() for m in cuts.finditer(text, start + max(1, piece_chars // 2), target)]  # never at start
        cut = next((c for c in reversed(before) if safe(c)), None)
        if cut is None:
            cut = next((m.start() for m in cuts.finditer(text, target) if safe(m.start())), len(text))
        bounds.append((start, cut))
        start = cut
    if start < len(text) or not bounds:
        bounds.append((start, len(text)))
    return bounds


# A floor on the tokens of a raw text, counted before tokenizing it (the server refuses a text whose floor passes its
# token bound without spending seconds and gigabytes in the tokenizer: 4 MiB of "!" is 4.2M tokens). Every counted
# item starts a pre-token of its own, and every pre-token gives at least one token:
# - an ASCII letter or digit at the start of the text or after an ASCII space, tab or newline, for any tokenizer
#   whose pre-tokenizer splits at whitespace (nothing in a supported normalizer removes ASCII letters or digits);
# - with BertPreTokenizer, every ASCII punctuation character (a pre-token alone) and a letter or digit after one;
# - with BertNormalizer's handle_chinese_chars, every CJK ideograph (spaced out into a pre-token alone).
_ASCII_PUNCT = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
_AFTER_SPACE = re.compile(r"(?:^|(?<=[ \t\n\r]))[A-Za-z0-9]")
_AFTER_BLANK = re.compile(r"(?:^|(?<= ))[A-Za-z0-9]")
_AFTER_SPACE_OR_PUNCT = re.compile(r"(?:^|(?<=[ \t\n\r!-/:-@\[-`{-~]))[A-Za-z0-9]")
_CJK = re.compile(
    "[\u4e00-\u9fff\u3400-\u4dbf\uf900-\ufaff\U00020000-\U0002a6df\U0002a700-\U0002b73f"
    "\U0002b740-\U0002b81f\U0002b820-\U0002ceaf\U0002f800-\U0002fa1f]"
)
_SAFE_NORMALIZERS = {"BertNormalizer", "NFC", "NFD", "NFKC", "NFKD", "Lowercase", "StripAccents", "Prepend"}


@dataclass(frozen=True)
class TokenFloor:
    """Counts a lower bound on a text's tokens from its characters alone (see the comment above)."""

    punctuation: bool  # BertPreTokenizer: each ASCII punctuation character is a pre-token
    cjk: bool  # BertNormalizer(handle_chinese_chars=True): each CJK ideograph is a pre-token
    spaces_only: bool = False  # Metaspace splits at " " only, not at tabs or newlines

    @classmethod
    def of(cls, spec: dict[str, object]) -> TokenFloor | None:
        """The floor a tokenizer.json allows, or None where its normalizer or pre-tokenizer might not keep it."""
        normalizer = spec.get("normalizer") or {}
        norms = _members(normalizer)
        if any(n.get("type") not in _SAFE_NORMALIZERS for n in norms):
            return None
        pre = _members(spec.get("pre_tokenizer") or {})
        splitting = [
            p
            for p in pre
            if p.get("type") in _WHITESPACE_SPLITTERS
            or (p.get("type") == "ByteLevel" and p.get("use_regex", True))
            or (p.get("type") == "Metaspace" and p.get("split", True))
        ]
        if not splitting:
            return None
        return cls(
            punctuation=any(p.get("type") == "BertPreTokenizer" for p in pre),
            cjk=any(n.get("type") == "BertNormalizer" and n.get("handle_chinese_chars", True) for n in norms),
            spaces_only=all(p.get("type") == "Metaspace" for p in splitting),
        )

    def __call__(self, text: str) -> int:
        if self.punctuation:
            n = sum(text.count(c) for c in _ASCII_PUNCT) + _AFTER_SPACE_OR_PUNCT.subn("", text)[1]
        else:
            n = (_AFTER_BLANK if self.spaces_only else _AFTER_SPACE).subn("", text)[1]
        return n + (_CJK.subn("", text)[1] if self.cjk else 0)


def _members(spec: object) -> list[dict[str, object]]:
    if not isinstance(spec, dict) or not spec:
        return []
    kind = spec.get("type")
    if kind == "Sequence":
        inner = spec.get("pretokenizers", spec.get("normalizers", []))
        return [m for m in inner if isinstance(m, dict)] if isinstance(inner, list) else [{"type": None}]
    return [spec]


# WordPiece gives a word longer than `max_input_chars_per_word` characters one [UNK] spanning the whole word, however
# long it is; the tokenizer still builds that word's normalized copy with per-byte alignments first (4 MiB of "a":
# 2.6 s and +333 MB; "e" + a combining accent, or "a" + a zero-width space, repeated to 4 MiB: 40-100 s). So a long
# word is cut to a few hundred characters before tokenizing and the offsets after each cut are shifted back: the
# word is still over the limit, so it is still one [UNK] with the same span.
# What makes this exact: the normalizers allowed here act on each character alone (no composition), and the
# pre-tokenizers split at single characters (whitespace, punctuation), so each character is classified once with the
# tokenizer's own normalizer and pre-tokenizer: it splits a word, or it adds `weight` characters to it (0 for one the
# normalizer removes: combining accents, zero-width and control characters). A cut keeps `keep` weighted characters
# and removes the rest of the word up to its last weighted character, so what follows the cut is aligned as before.
# Each cut is still checked after tokenizing (one [UNK] covers it); a text that fails is tokenized whole.
_PER_CHARACTER_NORMALIZERS = {"BertNormalizer", "NFD", "NFKD", "Lowercase", "StripAccents"}
_PER_CHARACTER_SPLITTERS = {"BertPreTokenizer", "WhitespaceSplit"}
# a superset of the characters that can end a word (whitespace, ASCII punctuation); the rest are classified
_CANDIDATE = r"[^\s!-/:-@\[-`{-~]{%d,}"


@dataclass(frozen=True)
class Cut:
    """Characters removed from a text before tokenizing: `removed` of them, at `at` in the shortened text, from a
    word that starts at `word` there."""

    at: int
    removed: int
    word: int


class LongWords:
    """Cuts words far over WordPiece's length limit before tokenizing (see the comment above); `of` gives None for
    a tokenizer whose rules do not make that exact."""

    def __init__(self, tokenizer: Tokenizer, limit: int, unk_id: int) -> None:
        self.keep = 2 * (limit + 1)
        self.unk_id = unk_id
        self._normalizer = tokenizer.normalizer
        self._pre_tokenizer = tokenizer.pre_tokenizer
        self._candidate = re.compile(_CANDIDATE % (2 * self.keep))
        self._weights: dict[str, int] = {}  # -1: splits a word

    @classmethod
    def of(cls, tokenizer: Tokenizer, spec: dict[str, object]) -> LongWords | None:
        model = spec.get("model") or {}
        if not isinstance(model, dict) or model.get("type") != "WordPiece":
            return None
        pre = _members(spec.get("pre_tokenizer") or {})
        if not pre or any(p.get("type") not in _PER_CHARACTER_SPLITTERS for p in pre):
            return None
        if any(n.get("type") not in _PER_CHARACTER_NORMALIZERS for n in _members(spec.get("normalizer") or {})):
            return None
        # an added token is matched in the raw text: one that could start or end inside a word could split it
        added = spec.get("added_tokens") or []
        contents = [a.get("content", "") for a in added if isinstance(a, dict)] if isinstance(added, list) else [""]
        if any(not c or not _splits_words(c[0]) or not _splits_words(c[-1]) for c in contents):  # [UNK], [SEP]
            return None
        limit, unk = model.get("max_input_chars_per_word"), model.get("unk_token")
        unk_id = tokenizer.token_to_id(unk) if isinstance(unk, str) else None
        if not isinstance(limit, int) or limit < 1 or unk_id is None:
            return None
        return cls(tokenizer, limit, unk_id)

    def _weight(self, char: str) -> int:
        weight = self._weights.get(char)
        if weight is None:
            normalized = self._normalizer.normalize_str(char) if self._normalizer is not None else char
            word = "a" + normalized + "a"
            alone = self._pre_tokenizer is None or len(self._pre_tokenizer.pre_tokenize_str(word)) == 1
            weight = self._weights[char] = len(normalized) if alone else -1
        return weight

    def shorten(self, text: str) -> tuple[str, list[Cut]]:
        """`text` with every long word cut after its first `keep` weighted characters, and where each cut is."""
        if len(text) <= 2 * self.keep:
            return text, []
        kept: list[str] = []
        cuts: list[Cut] = []
        start = removed = 0
        for m in self._candidate.finditer(text):
            for a, b in self._words(m.group(), m.start()):
                word = text[a:b]
                points = np.frombuffer(word.encode("utf-32-le"), np.uint32)
                table = np.zeros(int(points.max()) + 1, np.int8)  # weights are 0-18 (NFKD of one character)
                for c in set(word):
                    table[ord(c)] = self._weight(c)
                weights = table[points]
                if int(weights.sum(dtype=np.int64)) < 2 * self.keep:
                    continue
                first = a + _first_weighted(weights)  # where the [UNK] will start
                p = a + _after_weight(weights, self.keep)  # just after the keep-th weighted character
                q = a + _after_last_weighted(weights)
                kept.append(text[start:p])
                cuts.append(Cut(at=p - removed, removed=q - p, word=first - removed))
                removed += q - p
                start = q
        if not cuts:
            return text, []
        kept.append(text[start:])
        return "".join(kept), cuts

    def _words(self, run: str, offset: int) -> list[tuple[int, int]]:
        """The [start, end) ranges of a candidate run between the characters that split words."""
        splitters = "".join(re.escape(c) for c in set(run) if self._weight(c) < 0)
        if not splitters:
            return [(offset, offset + len(run))]
        found = re.finditer(f"[^{splitters}]{{{2 * self.keep},}}", run)
        return [(offset + w.start(), offset + w.end()) for w in found]

    def restore(self, tokens: Tokens, cuts: list[Cut]) -> Tokens | None:
        """Offsets of `tokens` (of the shortened text) moved back onto the original text, or None when a cut did
        not end up inside one [UNK] (the caller then tokenizes the text whole)."""
        at = np.array([c.at for c in cuts], dtype=np.int64)
        word = np.array([c.word for c in cuts], dtype=np.int64)
        shift = np.concatenate([[0], np.cumsum([c.removed for c in cuts], dtype=np.int64)])
        starts, ends = tokens.offsets[:, 0], tokens.offsets[:, 1]
        holder = np.searchsorted(ends, at - 1, side="right")  # the token holding each cut's last kept character
        if (holder >= len(tokens)).any():
            return None
        if not (
            (tokens.ids[holder] == self.unk_id).all() and (starts[holder] <= word).all() and (ends[holder] >= at).all()
        ):
            return None
        offsets = tokens.offsets + shift[np.searchsorted(at, tokens.offsets, side="right")]
        return Tokens(tokens.ids, offsets)


# the word scans below run over blocks, so a 4 MiB word needs no array wider than its int8 weights
_BLOCK = 1 << 16


def _first_weighted(weights: np.ndarray) -> int:
    for s in range(0, len(weights), _BLOCK):
        found = np.flatnonzero(weights[s : s + _BLOCK])
        if found.size:
            return s + int(found[0])
    raise ValueError("no weighted character")


def _after_weight(weights: np.ndarray, n: int) -> int:
    """The index just after the character where the running weight reaches `n`."""
    done = 0
    for s in range(0, len(weights), _BLOCK):
        total = np.cumsum(weights[s : s + _BLOCK], dtype=np.int64) + done
        if total[-1] >= n:
            return s + int(np.searchsorted(total, n)) + 1
        done = int(total[-1])
    raise ValueError(f"the weights sum to less than {n}")


def _after_last_weighted(weights: np.ndarray) -> int:
    for e in range(len(weights), 0, -_BLOCK):
        found = np.flatnonzero(weights[max(0, e - _BLOCK) : e])
        if found.size:
            return max(0, e - _BLOCK) + int(found[-1]) + 1
    raise ValueError("no weighted character")


def _splits_words(char: str) -> bool:
    """Whitespace and ASCII punctuation end a word for every pre-tokenizer allowed there."""
    return char.isspace() or char in _ASCII_PUNCT


class TextTokenizer:
    """A `tokenizers.Tokenizer` with truncation and padding switched off: longvec windows, not the tokenizer."""

    def __init__(self, tokenizer: Tokenizer, piece_chars: int = PIECE_CHARS) -> None:
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tok = tokenizer
        self.piece_chars = piece_chars if splits_on_whitespace(tokenizer) else None
        spec = json.loads(tokenizer.to_str())
        self._floor = TokenFloor.of(spec)
        self._bert = any(p.get("type") == "BertPreTokenizer" for p in _members(spec.get("pre_tokenizer") or {}))
        self._long_words = LongWords.of(tokenizer, spec)
        added = spec.get("added_tokens") or []
        self._added = tuple(a["content"] for a in added if len(a.get("content") or "") > 1)

    def min_tokens(self, text: str) -> int:
        """A lower bound on `len(encode([text])[0])`, from the characters alone (0 where the tokenizer's rules are
        not known to keep one): cheap enough to refuse a text before tokenizing it."""
        if self._floor is None:
            return 0
        unicode_punct = self._isolated.subn("", text)[1] if self._floor.punctuation and self._isolated else 0
        return self._floor(text) + unicode_punct

    @functools.cached_property
    def _isolated(self) -> re.Pattern[str] | None:
        """The non-ASCII punctuation this tokenizer makes a pre-token of its own (4 MiB of "«" is 2.1M tokens):
        each character checked with the tokenizer's own normalizer and pre-tokenizer. None: there is none."""
        normalizer, pre = self._tok.normalizer, self._tok.pre_tokenizer
        if not self._bert or pre is None:
            return None
        found = []
        for escaped in re.findall(r"\\?.", _bmp_categories()[0], flags=re.S):
            char = escaped[-1]
            normalized = normalizer.normalize_str(char) if normalizer is not None else char
            if normalized and len(pre.pre_tokenize_str("a" + normalized + "a")) >= 3:
                found.append(escaped)
        return re.compile(f"[{''.join(found)}]") if found else None

    @functools.cached_property
    def _cut(self) -> re.Pattern[str]:
        """Where a long text may be cut into pieces: before whitespace followed by a word, and, with BERT's
        pre-tokenizer, after a punctuation character it isolates, unless a mark or a format character follows
        (the normalizer may drop it into the character before)."""
        if not self._bert:
            return _CUT
        extra = self._isolated.pattern[1:-1] if self._isolated is not None else ""
        attached = _bmp_categories()[1]
        return re.compile(rf"[ \t\n](?=\S)|(?<=[!-/:-@\[-`{{-~{extra}])(?=[^\s{attached}])")

    @classmethod
    def from_file(cls, path: Path) -> TextTokenizer:
        try:
            tokenizer = Tokenizer.from_file(str(path))
            tokenizer.encode("a", add_special_tokens=False)  # some broken files load, then fail on first use
        except Exception as e:  # tokenizers raises plain Exception ("Model missing", serde errors, ...)
            raise BundleError(path, f"not a usable tokenizers file: {e}") from None
        return cls(tokenizer)

    @property
    def id_bound(self) -> int:
        """One past the largest token id this tokenizer can give (ids need not be dense: the largest counts)."""
        return max(self._tok.get_vocab(with_added_tokens=True).values(), default=-1) + 1

    def encode(self, texts: Sequence[str]) -> list[Tokens]:
        texts = list(texts)
        if self._long_words is None:
            return self._encode(texts)
        shortened = [self._long_words.shorten(t) for t in texts]
        out = self._encode([short for short, _ in shortened])
        for i, (_, cuts) in enumerate(shortened):
            if cuts:
                restored = self._long_words.restore(out[i], cuts)
                out[i] = restored if restored is not None else self._encode([texts[i]])[0]
        return out

    def _encode(self, texts: list[str]) -> list[Tokens]:
        out: list[Tokens | None] = [None] * len(texts)
        limit = self.piece_chars
        short = [i for i, t in enumerate(texts) if limit is None or len(t) <= limit]
        for i, tokens in zip(short, self._encode_pieces([texts[i] for i in short], [0] * len(short))):
            out[i] = tokens
        for i, text in enumerate(texts):
            if out[i] is None:
                out[i] = self._encode_long(text)
        return [t for t in out if t is not None]

    def _encode_long(self, text: str) -> Tokens:
        bounds = piece_bounds(text, self.piece_chars or len(text), self._cut, self._added)
        ids: list[np.ndarray] = []
        offsets: list[np.ndarray] = []
        for k in range(0, len(bounds), _PIECES_PER_CALL):
            group = bounds[k : k + _PIECES_PER_CALL]
            for part in self._encode_pieces([text[a:b] for a, b in group], [a for a, _ in group]):
                ids.append(part.ids)
                offsets.append(part.offsets)
        all_ids = np.concatenate(ids)
        ids.clear()  # free the pieces before the larger offsets array is built
        return Tokens(all_ids, np.concatenate(offsets))

    def _encode_pieces(self, pieces: list[str], shifts: list[int]) -> Iterator[Tokens]:
        # one piece (every query): `encode` on this thread; encode_batch would wake its worker pool on the cores the
        # encoder's (spinning) threads hold, for no parallelism to gain
        if len(pieces) == 1:
            encodings = [self._tok.encode(pieces[0], add_special_tokens=False)]
        else:
            encodings = self._tok.encode_batch(pieces, add_special_tokens=False) if pieces else []
        for e, shift in zip(encodings, shifts):
            yield Tokens(
                np.asarray(e.ids, dtype=np.int64),
                np.asarray(e.offsets, dtype=np.int64).reshape(-1, 2) + shift,
            )

    def ids(self, text: str) -> tuple[int, ...]:
        return tuple(self._tok.encode(text, add_special_tokens=False).ids)
