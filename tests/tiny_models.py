"""Tiny random-weight encoders built on the spot: config + weights with transformers, a tokenizer.json trained
with `tokenizers` on a small corpus, and optionally a sentence-transformers modules.json. No downloads.

Not a test module; tests/conftest.py loads it by path (tests/ is not a package under --import-mode=importlib).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CORPUS = (
    "The lighthouse keeper climbed the stairs every night to trim the wick and wind the clockwork.",
    "Long documents are split into overlapping windows and stitched back together into one sequence.",
    "Embeddings map text to vectors; similar meanings end up close together in the space.",
    "In 1905 a clerk at the patent office published four papers that changed physics forever.",
    "Rivers carry sand to the sea, where waves sort it into beaches, bars and spits.",
    "She counted 3, 14, 159 and 2653 before the bell rang at noon on Tuesday.",
    "Die Katze sitzt auf der Matte. Café, naïve, Zürich, São Paulo! Numbers: 42, 7.5, 1e-9?",
    "東京は日本の首都です。 emoji 🚀🔥 ... (parentheses), [brackets], {braces}; quotes: 'single' \"double\".",
)
WORDS = sorted({w.strip(".,;:!?()[]{}'\"") for line in CORPUS for w in line.lower().split()} - {""})


@dataclass(frozen=True)
class Arch:
    name: str  # a label for test ids
    model_type: str
    tokenizer: str  # "wordpiece" / "bpe-cls" ([CLS] x [SEP]), "wordpiece-s" / "bpe" / "unigram" (<s> x </s>)
    pooling: str | None  # sentence-transformers pooling written to modules.json, None for a plain HF dir
    include_prompt: bool = True  # sentence-transformers Pooling: do prompt tokens count in the mean?


ARCHS: dict[str, Arch] = {
    a.name: a
    for a in (
        Arch("bert", "bert", "wordpiece", "mean"),
        Arch("bert-last", "bert", "wordpiece", "last"),  # last-token pooling, as decoder-style embedders use
        Arch("roberta", "roberta", "bpe", None),
        Arch("xlm-roberta", "xlm-roberta", "unigram", "cls"),
        Arch("mpnet", "mpnet", "wordpiece-s", "mean", include_prompt=False),
        Arch("modernbert", "modernbert", "bpe-cls", "mean"),  # byte-level BPE framed by [CLS] [SEP], as the real one
    )
}
POSITIONS = 64  # usable positions of every tiny encoder
PROMPTS = {"query": "query: ", "passage": "passage: "}  # written for every sentence-transformers directory


def _wordpiece(cls: str, sep: str, pad: str, unk: str, extra: list[str]):  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers
    from tokenizers.models import WordPiece

    special = [pad, unk, cls, sep, *extra]
    tok = Tokenizer(WordPiece(unk_token=unk, max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=None, handle_chinese_chars=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=400, special_tokens=special))
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, tok.token_to_id(cls)), (sep, tok.token_to_id(sep))],
    )
    tok.decoder = decoders.WordPiece()
    return tok


def _bpe(framing: str):  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors, trainers
    from tokenizers.models import BPE

    if framing == "cls":  # ModernBERT: a byte-level BPE vocabulary framed with [CLS] ... [SEP]
        special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    else:
        special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # RoBERTa's ids 0..4
    tok = Tokenizer(BPE(unk_token=special[1] if framing == "cls" else "<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        CORPUS,
        trainers.BpeTrainer(
            vocab_size=600, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    if framing == "cls":
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
        )
    else:
        tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True)
    return tok


def _unigram():  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers
    from tokenizers.models import Unigram

    special = ["<s>", "<pad>", "</s>", "<unk>"]  # XLM-R's ids 0..3
    tok = Tokenizer(Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(CORPUS, trainers.UnigramTrainer(vocab_size=300, special_tokens=special, unk_token="<unk>"))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    return tok


def _config(arch: Arch, vocab: int, ids: dict[str, int]):  # type: ignore[no-untyped-def]
    import transformers as tf

    common = dict(
        vocab_size=vocab,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        pad_token_id=ids["pad"],
    )
    makers: dict[str, Callable[[], object]] = {
        "bert": lambda: tf.BertConfig(max_position_embeddings=POSITIONS, type_vocab_size=2, **common),
        "roberta": lambda: tf.RobertaConfig(
            max_position_embeddings=POSITIONS + 2, type_vocab_size=1, bos_token_id=0, eos_token_id=2, **common
        ),
        "xlm-roberta": lambda: tf.XLMRobertaConfig(
            max_position_embeddings=POSITIONS + 2, type_vocab_size=1, bos_token_id=0, eos_token_id=2, **common
        ),
        "mpnet": lambda: tf.MPNetConfig(
            max_position_embeddings=POSITIONS + 2, bos_token_id=ids["cls"], eos_token_id=ids["sep"], **common
        ),
        "modernbert": lambda: tf.ModernBertConfig(
            max_position_embeddings=POSITIONS,
            global_attn_every_n_layers=2,  # layer 0 global, layer 1 sliding: both attention kinds exported
            local_attention=16,  # shorter than the texts, so the sliding window matters
            cls_token_id=ids["cls"],
            sep_token_id=ids["sep"],
            bos_token_id=ids["cls"],
            eos_token_id=ids["sep"],
            **common,
        ),
    }
    return makers[arch.model_type]()


def _tokenizer(arch: Arch):  # type: ignore[no-untyped-def]
    if arch.tokenizer == "wordpiece":
        return _wordpiece("[CLS]", "[SEP]", "[PAD]", "[UNK]", ["[MASK]"])
    if arch.tokenizer == "wordpiece-s":  # MPNet: a WordPiece vocabulary framed with <s> ... </s>, pad id 1
        return _mpnet_wordpiece()
    if arch.tokenizer == "bpe-cls":
        return _bpe("cls")
    return _bpe("s") if arch.tokenizer == "bpe" else _unigram()


def _mpnet_wordpiece():  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers
    from tokenizers.models import WordPiece

    tok = Tokenizer(WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    special = ["<s>", "<pad>", "</s>", "[UNK]", "<mask>"]  # all-mpnet-base-v2's order: pad id 1
    tok.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=400, special_tokens=special))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    return tok


def build_model_dir(name: str, out: Path, seed: int = 0) -> Path:
    """A complete local model directory for `ARCHS[name]` under `out`; deterministic for a given seed."""
    import torch
    import transformers as tf

    arch = ARCHS[name]
    out.mkdir(parents=True, exist_ok=True)
    tok = _tokenizer(arch)
    vocab = tok.get_vocab()
    cls_name, sep_name, pad_name = (
        ("[CLS]", "[SEP]", "[PAD]") if arch.tokenizer in ("wordpiece", "bpe-cls") else ("<s>", "</s>", "<pad>")
    )
    ids = {"cls": vocab[cls_name], "sep": vocab[sep_name], "pad": vocab[pad_name]}
    config = _config(arch, tok.get_vocab_size(), ids)
    torch.manual_seed(seed)
    model = tf.AutoModel.from_config(config).eval()
    with torch.no_grad():  # random init leaves LayerNorms at identity; perturb every tensor so nothing is trivial
        g = torch.Generator().manual_seed(seed)
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    model.save_pretrained(str(out))
    tok.save(str(out / "tokenizer.json"))
    special = {"cls_token": cls_name, "sep_token": sep_name, "pad_token": pad_name}
    (out / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": POSITIONS, **special}),
        encoding="utf-8",
    )
    if arch.pooling is not None:
        _sentence_transformers_files(out, arch.pooling, arch.include_prompt, config.hidden_size)
    return out


def _sentence_transformers_files(out: Path, pooling: str, include_prompt: bool, dim: int) -> None:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (out / "modules.json").write_text(json.dumps(modules), encoding="utf-8")
    (out / "1_Pooling").mkdir(exist_ok=True)
    (out / "1_Pooling" / "config.json").write_text(
        json.dumps(
            {
                "word_embedding_dimension": dim,
                "pooling_mode_cls_token": pooling == "cls",
                "pooling_mode_mean_tokens": pooling == "mean",
                "pooling_mode_lasttoken": pooling == "last",
                "pooling_mode_max_tokens": False,
                "pooling_mode_mean_sqrt_len_tokens": False,
                "include_prompt": include_prompt,
            }
        ),
        encoding="utf-8",
    )
    (out / "2_Normalize").mkdir(exist_ok=True)
    (out / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": POSITIONS}), encoding="utf-8")
    (out / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": PROMPTS, "default_prompt_name": None}), encoding="utf-8"
    )


def texts(n: int, seed: int, max_words: int, min_words: int = 1) -> list[str]:
    """Deterministic varied texts: corpus words in random order with punctuation, numbers and unicode."""
    rng = np.random.default_rng(seed)
    extras = ["42", "3.14", "🚀", "東京", "café", "?!", "...", "Zürich", "(x)", "1e-9"]
    pool = WORDS + extras
    out = []
    for _ in range(n):
        k = int(rng.integers(min_words, max_words + 1))
        out.append(" ".join(pool[i] for i in rng.integers(0, len(pool), size=k)))
    return out
