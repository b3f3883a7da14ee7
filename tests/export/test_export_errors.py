"""Export failures are typed, name what is wrong, and never leave a partial bundle behind."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from longvec.export import export_bundle, parity
from longvec.runtime.errors import ExportError, ParityError

TinyExport = Callable[[str], tuple[Path, Path]]


@pytest.fixture
def model_dir(tiny_export: TinyExport, tmp_path: Path) -> Path:
    """A private copy of the tiny BERT model directory, safe to break."""
    copy = tmp_path / "model"
    shutil.copytree(tiny_export("bert")[0], copy)
    return copy


def siblings(out: Path) -> list[str]:
    """Everything next to `out` that an export could have left (including its hidden work directory)."""
    return sorted(p.name for p in out.parent.iterdir() if p.name not in ("model", "elsewhere"))


@pytest.mark.parametrize(
    ("remove", "named"),
    [
        (["config.json"], ["config.json"]),
        (["tokenizer.json"], ["tokenizer.json"]),
        (["model.safetensors"], ["model.safetensors or pytorch_model.bin"]),
        (
            ["config.json", "tokenizer.json", "model.safetensors"],
            ["config.json", "tokenizer.json", "model.safetensors"],
        ),
    ],
)
def test_incomplete_model_dir_names_what_is_missing(
    model_dir: Path, tmp_path: Path, remove: list[str], named: list[str]
) -> None:
    for name in remove:
        (model_dir / name).unlink()
    out = tmp_path / "bundle"
    with pytest.raises(ExportError, match="incomplete model directory") as info:
        export_bundle(model_dir, out)
    for name in named:
        assert name in str(info.value)
    assert str(model_dir) in str(info.value)
    assert siblings(out) == []


def test_missing_model_dir(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="does not exist"):
        export_bundle(tmp_path / "no-such-model", tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()


def test_unsupported_sentence_transformers_module(model_dir: Path, tmp_path: Path) -> None:
    modules = json.loads((model_dir / "modules.json").read_text(encoding="utf-8"))
    modules.insert(2, {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    (model_dir / "modules.json").write_text(json.dumps(modules), encoding="utf-8")
    with pytest.raises(ExportError, match=r"modules\.json.*Dense"):
        export_bundle(model_dir, tmp_path / "bundle")
    assert siblings(tmp_path / "bundle") == []


def test_unsupported_pooling(model_dir: Path, tmp_path: Path) -> None:
    cfg_path = model_dir / "1_Pooling" / "config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg.update(pooling_mode_mean_tokens=False, pooling_mode_max_tokens=True)
    cfg_path.write_text(json.dumps(cfg), encoding="utf-8")
    with pytest.raises(ExportError, match=r"1_Pooling.*not supported"):
        export_bundle(model_dir, tmp_path / "bundle")


def test_unknown_variant(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="int4"):
        export_bundle(model_dir, tmp_path / "bundle", variants=("int4",))
    assert siblings(tmp_path / "bundle") == []


def test_non_empty_target_needs_overwrite(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "keep.txt").write_text("precious", encoding="utf-8")
    with pytest.raises(ExportError, match="overwrite"):
        export_bundle(model_dir, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert siblings(out) == ["bundle"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_target_that_is_a_file(model_dir: Path, tmp_path: Path, overwrite: bool) -> None:
    out = tmp_path / "bundle"
    out.write_text("not a directory", encoding="utf-8")
    with pytest.raises(ExportError, match="not a directory"):
        export_bundle(model_dir, out, overwrite=overwrite)
    assert out.read_text(encoding="utf-8") == "not a directory"


def test_overwrite_replaces_and_an_empty_target_is_fine(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    out.mkdir()
    export_bundle(model_dir, out, variants=())  # an existing empty directory needs no --overwrite
    (out / "stale.txt").write_text("old", encoding="utf-8")
    manifest = export_bundle(model_dir, out, variants=(), overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json",
        "model.onnx",
        "model.pooled.onnx",
        "tokenizer.json",
    ]
    assert [v.name for v in manifest.variants] == ["fp32"]
    assert siblings(out) == ["bundle"]


def test_unloadable_weights_write_nothing(model_dir: Path, tmp_path: Path) -> None:
    (model_dir / "model.safetensors").write_bytes(b"not a safetensors file")
    out = tmp_path / "bundle"
    with pytest.raises(ExportError, match="transformers cannot load"):
        export_bundle(model_dir, out)
    assert siblings(out) == []


def test_failed_parity_keeps_the_old_bundle(
    model_dir: Path, tmp_path: Path, tiny_export: TinyExport, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parity gate runs before anything is moved into place: an existing bundle survives a failed re-export."""
    out = tmp_path / "bundle"
    shutil.copytree(tiny_export("bert")[1], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setitem(parity.TOLERANCES, "fp32", parity.Tolerance(min_cosine=1.5, max_abs_diff=None))
    with pytest.raises(ParityError, match=r"variant 'fp32'.*min cosine"):
        export_bundle(model_dir, out, variants=(), overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert siblings(out) == ["bundle"]
