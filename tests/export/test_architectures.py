"""Export -> bundle -> runtime parity with torch for tiny random encoders of every supported architecture.

The reference is the transformers model run in torch on each text alone (no padding), framed by the tokenizer's
own post-processor; the runtime side is `Embedder.load` on the exported bundle, texts batched with padding.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer

from longvec.runtime import Embedder, InputError
from longvec.runtime.bundle.reader import Bundle

ARCH_NAMES = ("bert", "roberta", "xlm-roberta", "mpnet", "modernbert")
MEAN_POOLED = ("bert", "roberta", "mpnet", "modernbert")
TinyExport = Callable[[str], tuple[Path, Path]]


class TorchReference:
    def __init__(self, model_dir: Path) -> None:
        from transformers import AutoModel

        self.model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
        self.tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tok.no_truncation()
        self.tok.no_padding()
        self._memo: dict[tuple[int, ...], torch.Tensor] = {}

    def framed(self, text: str) -> tuple[list[int], list[int], list[int]]:
        """(prefix, content, suffix) ids as the tokenizer's post-processor frames `text`."""
        full = self.tok.encode(text).ids
        content = self.tok.encode(text, add_special_tokens=False).ids
        assert full[1:-1] == content, "tiny tokenizers frame one token on each side"
        return full[:1], content, full[-1:]

    def states(self, ids: list[int]) -> np.ndarray:
        key = tuple(ids)
        if key not in self._memo:
            mask = torch.ones(1, len(ids), dtype=torch.long)
            with torch.no_grad():
                self._memo[key] = self.model(input_ids=torch.tensor([ids]), attention_mask=mask).last_hidden_state[0]
        return self._memo[key].numpy()


def _pool(states: np.ndarray, mode: str) -> np.ndarray:
    v = states[0] if mode == "cls" else states.mean(axis=0)
    return v / np.linalg.norm(v)


def _pooling_mode(tiny: ModuleType, arch: str) -> str:
    return tiny.ARCHS[arch].pooling or "mean"  # a plain HF directory gets normalized mean pooling


@pytest.fixture(scope="module")
def reference(tiny_export: TinyExport) -> Callable[[str], TorchReference]:
    cache: dict[str, TorchReference] = {}

    def get(arch: str) -> TorchReference:
        if arch not in cache:
            cache[arch] = TorchReference(tiny_export(arch)[0])
        return cache[arch]

    return get


def _fitting_texts(tiny: ModuleType, ref: TorchReference, limit: int) -> list[str]:
    """Varied texts whose framed length fits the encoder, longest one first trimmed to exactly fill it."""
    texts = [t for t in tiny.texts(24, seed=1, max_words=40) if len(ref.framed(t)[1]) + 2 <= limit]
    words = tiny.texts(1, seed=2, max_words=200)[0].split()
    while len(ref.framed(" ".join(words))[1]) + 2 > limit:
        words.pop()
    for filler in ("a", ".", "a", ".", "a"):  # top up to the last position
        if len(ref.framed(" ".join([*words, filler]))[1]) + 2 <= limit:
            words.append(filler)
    return [" ".join(words), *texts, "?!", "a", "东京 🚀 café"]


@pytest.mark.parametrize("variant", ["fp32", "optimized"])
@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_runtime_matches_torch(
    arch: str,
    variant: str,
    tiny_export: TinyExport,
    reference: Callable[[str], TorchReference],
    tiny_models: ModuleType,
) -> None:
    ref = reference(arch)
    bundle_dir = tiny_export(arch)[1]
    with Embedder.load(bundle_dir, variant=variant, threads=1) as emb:
        texts = _fitting_texts(tiny_models, ref, emb.manifest.max_positions)
        assert len(ref.framed(texts[0])[1]) + 2 >= emb.manifest.max_positions - 1  # the full window is exercised
        got = emb.embed(texts)
        alone = emb.embed(texts[1:2])  # batch of one: the traced graph's batch axis is really dynamic
        # Token states from the backend on one right-padded batch vs torch on each text alone.
        seqs = [[*p, *c, *s] for p, c, s in map(ref.framed, texts)]
        width = max(map(len, seqs))
        ids = np.full((len(seqs), width), emb.manifest.framing.pad_id, dtype=np.int64)
        mask = np.zeros_like(ids)
        for r, s in enumerate(seqs):
            ids[r, : len(s)], mask[r, : len(s)] = s, 1
        states = emb.backend.run(ids, mask)
    mode = _pooling_mode(tiny_models, arch)
    want = np.stack([_pool(ref.states(s), mode) for s in seqs])
    np.testing.assert_allclose(alone[0], got[1], atol=1e-5)
    cos = np.einsum("nd,nd->n", got, want)
    assert cos.min() >= 0.9999, f"{arch}/{variant}: min cosine {cos.min():.6f} at {texts[int(cos.argmin())]!r}"
    worst = max(float(np.abs(states[r, : len(s)] - ref.states(s)).max()) for r, s in enumerate(seqs))
    assert worst < 1e-4, f"{arch}/{variant}: token states differ by {worst:.2e}"


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_manifest_describes_the_model(arch: str, tiny_export: TinyExport, tiny_models: ModuleType) -> None:
    model_dir, bundle_dir = tiny_export(arch)
    m = Bundle.open(bundle_dir).manifest
    spec = tiny_models.ARCHS[arch]
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    framed = tok.encode("hello").ids
    assert m.architecture == spec.model_type
    # RoBERTa-likes and MPNet store pad_id + 1 extra learned positions that a window cannot use.
    assert m.max_positions == tiny_models.POSITIONS
    assert (m.framing.prefix_ids, m.framing.suffix_ids) == ((framed[0],), (framed[-1],))
    assert m.pooling.mode == _pooling_mode(tiny_models, arch) and m.pooling.normalize
    has_types = spec.model_type in ("bert", "roberta", "xlm-roberta")
    assert ("token_type_ids" in m.input_names) == has_types
    assert {v.name for v in m.variants} == {"fp32", "optimized"}
    for v in m.variants:
        assert v.parity.min_cosine >= 0.9999 and v.parity.max_abs_diff < 1e-3, (v.name, v.parity)


@pytest.mark.parametrize("arch", ["roberta", "mpnet"])
def test_window_past_usable_positions_is_refused(arch: str, tiny_export: TinyExport, tiny_models: ModuleType) -> None:
    with pytest.raises(InputError, match="exceeds"):
        Embedder.load(tiny_export(arch)[1], window=tiny_models.POSITIONS + 1)


def _windows(n: int, content: int) -> list[int]:
    """Half-overlapping window starts, the last aligned to the end (written out here, not taken from runtime)."""
    if n <= content:
        return [0]
    stride = content // 2
    return [*range(0, n - content, stride), n - content]


def _stitched_reference(ref: TorchReference, text: str, window: int, mode: str) -> tuple[np.ndarray, int]:
    """Torch on every window (each fits the encoder), tokens taken from the window where they are most central."""
    prefix, content, suffix = ref.framed(text)
    size = window - len(prefix) - len(suffix)
    starts = _windows(len(content), size)
    per_window = [ref.states(prefix + content[s : s + size] + suffix) for s in starts]
    size = min(size, len(content))
    centers = np.array(starts) + (size - 1) / 2
    tokens = []
    for t in range(len(content)):
        dist = np.abs(t - centers)
        w = int(np.flatnonzero(dist == dist.min())[-1])  # a tie goes to the later window
        tokens.append(per_window[w][len(prefix) + t - starts[w]])
    states = np.concatenate([per_window[0][: len(prefix)], np.stack(tokens), per_window[-1][len(prefix) + size :]])
    return _pool(states, mode), len(starts)


@pytest.mark.parametrize("window", [24, 64])
@pytest.mark.parametrize("arch", MEAN_POOLED)
def test_long_texts_match_torch_window_by_window(
    arch: str,
    window: int,
    tiny_export: TinyExport,
    reference: Callable[[str], TorchReference],
    tiny_models: ModuleType,
) -> None:
    ref = reference(arch)
    long_texts = tiny_models.texts(3, seed=3, max_words=100, min_words=70)  # 2+ windows of 64 positions
    short = "short text that fits one window"
    texts = [long_texts[0], short, *long_texts[1:]]
    with Embedder.load(tiny_export(arch)[1], variant="optimized", window=window, threads=1) as emb:
        half = emb.plan().content // 2  # the reference's half-overlapping windows, not the bundle's default stride
        got = emb.embed(texts, stride=half)
        docs = emb.embed_documents(texts, stride=half, mode="late")
    for text, vec, doc in zip(texts, got, docs):
        want, n_windows = _stitched_reference(ref, text, window, "mean")
        assert doc.n_windows == n_windows
        if text != short:
            assert n_windows >= 2
        assert float(vec @ want) >= 0.9999, f"{arch} window={window}: cosine {float(vec @ want):.6f}"
        assert np.allclose(doc.vector, vec, atol=1e-6)


@pytest.fixture(scope="module")
def sentence_transformer(tiny_export: TinyExport) -> Callable[[str], Any]:
    from sentence_transformers import SentenceTransformer

    cache: dict[str, Any] = {}

    def get(arch: str) -> Any:
        if arch not in cache:
            cache[arch] = SentenceTransformer(str(tiny_export(arch)[0]), device="cpu")
        return cache[arch]

    return get


@pytest.mark.parametrize("prompt", [None, "query", "Represent this sentence: "])
@pytest.mark.parametrize("arch", ["bert", "bert-last", "xlm-roberta", "mpnet", "modernbert"])  # with ST files
def test_prompts_match_sentence_transformers(
    arch: str,
    prompt: str | None,
    tiny_export: TinyExport,
    sentence_transformer: Callable[[str], Any],
    tiny_models: ModuleType,
) -> None:
    """Prompt by name or literal: ST tokenizes prompt + text as one string and (include_prompt=False) leaves the
    prompt out of the mean; the runtime repeats the prompt in every window and must agree on one window."""
    st = sentence_transformer(arch)
    named = prompt in tiny_models.PROMPTS
    prefix = tiny_models.PROMPTS.get(prompt, prompt or "")
    with Embedder.load(tiny_export(arch)[1], threads=1) as emb:
        assert emb.manifest.pooling.include_prompt == tiny_models.ARCHS[arch].include_prompt
        assert dict(emb.manifest.prompts) == tiny_models.PROMPTS
        texts = tiny_models.texts(40, seed=4, max_words=20)
        fits = emb.count_tokens([prefix + t for t in texts])
        texts = [t for t, n in zip(texts, fits) if n <= tiny_models.POSITIONS - 2]  # ST would truncate the rest
        assert len(texts) >= 20
        got = emb.embed(texts, prompt_name=prompt if named else None, prompt=None if named else prompt)
        legacy = got[:3]
        if named:
            with pytest.warns(DeprecationWarning, match="prompt_name"):  # the old spelling: a name as prompt=
                legacy = emb.embed(texts[:3], prompt=prompt)
    want = st.encode(texts, prompt_name=prompt if named else None, prompt=None if named else prompt)
    cos = np.einsum("nd,nd->n", got, want) / np.linalg.norm(want, axis=1)
    assert cos.min() >= 0.9999, f"{arch} prompt={prompt!r}: min cosine {cos.min():.6f} on {texts[int(cos.argmin())]!r}"
    np.testing.assert_allclose(legacy, got[:3], atol=1e-6)


@pytest.fixture(scope="module")
def default_prompt_bundle(
    tiny_export: TinyExport, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], tuple[Path, Path]]:
    """A tiny model whose sentence-transformers config names a default prompt ("query"), and its bundle."""
    import json
    import shutil

    from longvec.export import export_bundle

    root = tmp_path_factory.mktemp("default-prompt")
    done: dict[str, tuple[Path, Path]] = {}

    def get(arch: str) -> tuple[Path, Path]:
        if arch not in done:
            model_dir = root / arch
            shutil.copytree(tiny_export(arch)[0], model_dir)
            config = model_dir / "config_sentence_transformers.json"
            st_config = json.loads(config.read_text(encoding="utf-8"))
            config.write_text(json.dumps({**st_config, "default_prompt_name": "query"}), encoding="utf-8")
            export_bundle(model_dir, root / f"{arch}-bundle", ("optimized",))
            done[arch] = (model_dir, root / f"{arch}-bundle")
        return done[arch]

    return get


@pytest.mark.parametrize("arch", ["bert", "mpnet"])  # mpnet: include_prompt=False, the prompt is not pooled
def test_default_prompt_applies_as_in_sentence_transformers(
    arch: str, default_prompt_bundle: Callable[[str], tuple[Path, Path]], tiny_models: ModuleType
) -> None:
    """With no prompt argument the bundle's default prompt applies, in embed and embed_documents; prompt_name
    picks another; prompt="" turns it off; an unknown name lists the known ones. Each against
    sentence-transformers on the same model directory."""
    from sentence_transformers import SentenceTransformer

    model_dir, bundle_dir = default_prompt_bundle(arch)
    st = SentenceTransformer(str(model_dir), device="cpu")
    assert st.default_prompt_name == "query"
    texts = [t for t in tiny_models.texts(30, seed=5, max_words=12) if t.strip()]
    with Embedder.load(bundle_dir, threads=1) as emb:
        assert emb.manifest.default_prompt == "query"
        assert emb.resolve_prompt() == "query: "
        calls = {
            "default": ({}, {}),
            "prompt_name": ({"prompt_name": "passage"}, {"prompt_name": "passage"}),
            "off": ({"prompt": ""}, {"prompt": ""}),
            "literal": ({"prompt": "Represent this: "}, {"prompt": "Represent this: "}),
        }
        got = {case: emb.embed(texts, **ours) for case, (ours, _) in calls.items()}
        docs = emb.embed_documents(texts)
        with pytest.raises(InputError, match=r"unknown prompt_name 'search'.*'passage', 'query'"):
            emb.embed(texts, prompt_name="search")
        with pytest.raises(InputError, match="not both"):
            emb.embed(texts, prompt="x", prompt_name="query")
    for case, (_, theirs) in calls.items():
        want = st.encode(texts, **theirs)
        cos = np.einsum("nd,nd->n", got[case], want) / np.linalg.norm(want, axis=1)
        assert cos.min() >= 0.9999, f"{arch} {case}: min cosine {cos.min():.6f}"
    assert float(np.einsum("nd,nd->n", got["default"], got["off"]).min()) < 0.9999  # the default really applied
    np.testing.assert_allclose(np.stack([d.vector for d in docs]), got["default"], atol=1e-5)
