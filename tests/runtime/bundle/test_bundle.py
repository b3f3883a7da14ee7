"""Broken bundles fail with typed errors that name the file (and field) at fault.

Every case corrupts a private copy of the tiny BERT bundle (a few hundred KB), never the real one.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from longvec.runtime import (
    BundleError,
    BundleNotFound,
    ChecksumMismatch,
    Embedder,
    ManifestError,
    SchemaVersionError,
    UnsafePath,
    VariantNotFound,
)
from longvec.runtime.bundle.reader import Bundle, sha256_file


def load_error(
    bundle: Path, kind: type[BundleError], *, variant: str = "optimized", pooled: bool | None = None
) -> BundleError:
    with pytest.raises(kind) as info:
        Embedder.load(bundle, variant=variant, threads=1, pooled=pooled)
    return info.value


def test_the_copy_loads(bundle: Path) -> None:
    with Embedder.load(bundle, threads=1) as emb:
        assert emb.embed(["it works"]).shape == (1, emb.dim)


def test_missing_directory(tmp_path: Path) -> None:
    err = load_error(tmp_path / "nowhere", BundleNotFound)
    assert err.path == tmp_path / "nowhere" and "nowhere" in str(err)


def test_missing_manifest(bundle: Path) -> None:
    (bundle / "manifest.json").unlink()
    err = load_error(bundle, BundleNotFound)
    assert err.path.name == "manifest.json" and "manifest.json" in str(err)


@pytest.mark.parametrize("name", ["model.onnx", "model.optimized.onnx", "tokenizer.json"])
def test_missing_listed_file(bundle: Path, name: str) -> None:
    (bundle / name).unlink()
    err = load_error(bundle, BundleNotFound)
    assert err.path.name == name and name in str(err)


def test_missing_file_is_caught_without_verification(bundle: Path) -> None:
    (bundle / "model.optimized.onnx").unlink()
    with pytest.raises(BundleNotFound, match=r"model\.optimized\.onnx"):
        Embedder.load(bundle, verify=False)


def test_checksum_mismatch(bundle: Path) -> None:
    tok = bundle / "tokenizer.json"
    tok.write_text(tok.read_text(encoding="utf-8").replace('"[UNK]"', '"[UNKNOWN]"'), encoding="utf-8")
    err = load_error(bundle, ChecksumMismatch)
    assert err.path.name == "tokenizer.json" and "sha256" in str(err)


# the graph a load reads: the token-state graph, or (the default where the variant has one) its pooled twin
GRAPHS = pytest.mark.parametrize(("name", "pooled"), [("model.onnx", False), ("model.pooled.onnx", None)])


@GRAPHS
def test_truncated_model_fails_checksum(bundle: Path, name: str, pooled: bool | None) -> None:
    model = bundle / name
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    err = load_error(bundle, ChecksumMismatch, variant="fp32", pooled=pooled)
    assert err.path.name == name


@GRAPHS
def test_truncated_model_with_matching_checksum_is_a_bundle_error(
    bundle: Path, edit_manifest: Callable[..., None], name: str, pooled: bool | None
) -> None:
    """A graph onnxruntime cannot parse is reported against its file, even when the manifest was rewritten."""
    model = bundle / name
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    edit_manifest(bundle, lambda m: m["files"].__setitem__(name, sha256_file(model)))
    err = load_error(bundle, BundleError, variant="fp32", pooled=pooled)
    assert err.path.name == name and name in str(err)


def test_schema_from_the_future(bundle: Path, edit_manifest: Callable[..., None]) -> None:
    edit_manifest(bundle, lambda m: m.__setitem__("schema_version", 99))
    err = load_error(bundle, SchemaVersionError)
    assert err.path.name == "manifest.json" and "99" in str(err) and "upgrade" in str(err)


def test_invalid_json(bundle: Path) -> None:
    (bundle / "manifest.json").write_text('{"schema_version": 1,', encoding="utf-8")
    err = load_error(bundle, ManifestError)
    assert err.path.name == "manifest.json" and "JSON" in str(err)


@pytest.mark.parametrize("field", ["framing", "pooling", "variants", "source", "hidden_size", "schema_version"])
def test_missing_field(bundle: Path, field: str, edit_manifest: Callable[..., None]) -> None:
    edit_manifest(bundle, lambda m: m.pop(field))
    err = load_error(bundle, ManifestError)
    assert err.path.name == "manifest.json" and field in str(err)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("hidden_size", "384"),
        ("hidden_size", -1),
        ("pooling", {"mode": "max", "normalize": True}),
        ("files", []),
        ("default_window", 100_000),
        ("variants", []),
    ],
)
def test_wrong_field_value(bundle: Path, field: str, value: object, edit_manifest: Callable[..., None]) -> None:
    edit_manifest(bundle, lambda m: m.__setitem__(field, value))
    err = load_error(bundle, ManifestError)
    assert err.path.name == "manifest.json"


def test_unknown_variant(bundle: Path) -> None:
    err = load_error(bundle, VariantNotFound, variant="int4")
    assert err.path.name == "manifest.json" and "int4" in str(err) and "optimized" in str(err)


def _point_variant_at(name: str) -> Callable[[dict[str, Any]], None]:
    def change(m: dict[str, Any]) -> None:
        old = m["variants"][0]["file"]
        m["variants"][0]["file"] = name
        m["files"][name] = m["files"].pop(old)

    return change


@pytest.mark.parametrize("escape", ["/etc/passwd", "../model.onnx", "sub/../../model.onnx", "..\\model.onnx"])
def test_manifest_path_outside_the_bundle(bundle: Path, escape: str, edit_manifest: Callable[..., None]) -> None:
    edit_manifest(bundle, _point_variant_at(escape))
    err = load_error(bundle, UnsafePath, variant="fp32")
    assert err.path.name == "manifest.json" and escape in str(err)


def test_tokenizer_path_outside_the_bundle(bundle: Path, edit_manifest: Callable[..., None]) -> None:
    edit_manifest(bundle, lambda m: m.__setitem__("tokenizer_file", "../tokenizer.json"))
    err = load_error(bundle, UnsafePath)
    assert err.path.name == "manifest.json" and "../tokenizer.json" in str(err)


def test_file_used_but_not_checksummed(bundle: Path, edit_manifest: Callable[..., None]) -> None:
    edit_manifest(bundle, lambda m: m["files"].pop("model.optimized.onnx"))
    err = load_error(bundle, ManifestError)
    assert err.path.name == "manifest.json" and "model.optimized.onnx" in str(err) and "files" in str(err)


def test_symlink_escaping_the_bundle(bundle: Path, tmp_path: Path) -> None:
    """A listed file that is a symlink to outside the bundle is refused even though its checksum matches."""
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.move(bundle / "model.onnx", outside / "model.onnx")
    (bundle / "model.onnx").symlink_to(outside / "model.onnx")
    err = load_error(bundle, UnsafePath, variant="fp32")
    assert "model.onnx" in str(err) and "outside" in str(err)


def test_symlinked_directory_escaping_the_bundle(
    bundle: Path, tmp_path: Path, edit_manifest: Callable[..., None]
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(bundle / "model.onnx", outside / "model.onnx")
    (bundle / "graphs").symlink_to(outside, target_is_directory=True)
    edit_manifest(bundle, _point_variant_at("graphs/model.onnx"))
    err = load_error(bundle, UnsafePath, variant="fp32")
    assert "graphs/model.onnx" in str(err)


def test_symlink_inside_the_bundle_is_fine(bundle: Path) -> None:
    (bundle / "graphs").mkdir()
    shutil.move(bundle / "model.onnx", bundle / "graphs" / "model.onnx")
    (bundle / "model.onnx").symlink_to(Path("graphs") / "model.onnx")
    with Embedder.load(bundle, variant="fp32", threads=1) as emb:
        assert emb.embed(["inside"]).shape == (1, emb.dim)


def test_every_bundle_error_is_a_longvec_error(bundle: Path) -> None:
    from longvec.runtime import LongvecError

    (bundle / "manifest.json").unlink()
    with pytest.raises(LongvecError):
        Bundle.open(bundle)
