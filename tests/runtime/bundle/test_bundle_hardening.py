"""Bundles whose parts are malformed or disagree fail at load with a typed BundleError naming the file (and the
field), never a raw Python or onnxruntime error at load or at the first embed; `serve` then exits 3."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from longvec.runtime import BundleError, Embedder, ManifestError, UnsafePath
from longvec.runtime.bundle.reader import sha256_file

Edit = Callable[[Path, Callable[[dict[str, Any]], None]], None]


def load(bundle: Path, **kwargs: Any) -> Embedder:
    return Embedder.load(bundle, threads=1, **kwargs)


def test_a_manifest_that_is_not_utf8_or_nested_too_deeply_is_a_manifest_error(bundle: Path) -> None:
    manifest = bundle / "manifest.json"
    manifest.write_bytes(manifest.read_bytes().replace(b'"name"', b'"n\xe4me"', 1))
    with pytest.raises(ManifestError, match="not UTF-8") as caught:
        load(bundle)
    assert caught.value.path == manifest
    manifest.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ManifestError, match="nested too deeply"):
        load(bundle)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("prefix_ids", ["CLS"], "framing.prefix_ids must hold token ids"),
        ("prefix_ids", [-5], "framing.prefix_ids must hold token ids"),
        ("suffix_ids", "102", "framing.suffix_ids must be a list"),
        ("pad_id", 1e12, "framing.pad_id must hold token ids"),
        ("pad_id", 2**40, "framing.pad_id must hold token ids"),
        ("prefix_ids", [999_999], "framing.prefix_ids holds token id 999999, beyond the tokenizer's vocabulary"),
        ("pad_id", 5_000_000, "framing.pad_id holds token id 5000000, beyond the tokenizer's vocabulary"),
    ],
)
def test_bad_framing_ids_are_refused_at_load(
    bundle: Path, edit_manifest: Edit, field: str, value: object, message: str
) -> None:
    edit_manifest(bundle, lambda m: m["framing"].__setitem__(field, value))
    with pytest.raises(ManifestError, match=message) as caught:
        load(bundle)
    assert caught.value.path.name == "manifest.json"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(prompts={"query": 5}, default_prompt="query"), "'prompts' must map prompt names"),
        (lambda m: m.update(prompts="x"), "'prompts' must map prompt names"),
        (lambda m: m.update(prompts={"query": "query: "}, default_prompt=["query"]), "default_prompt must be"),
        (lambda m: m["pooling"].update(normalize="no"), "pooling.normalize must be true or false"),
        (lambda m: m.update(schema_version=True), "schema_version' must be a positive integer"),
        (lambda m: m.update(schema_version=0), "schema_version' must be a positive integer"),
        (lambda m: m.update(max_positions=512.0), "max_positions must be an integer"),
        (lambda m: m.update(framing=[1, 2]), "invalid field"),
    ],
)
def test_fields_of_the_wrong_type_are_refused_at_load(
    bundle: Path, edit_manifest: Edit, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    edit_manifest(bundle, change)
    with pytest.raises(ManifestError, match=message):
        load(bundle)


def test_a_manifest_symlinked_from_outside_the_bundle_is_refused(bundle: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.json"
    shutil.move(bundle / "manifest.json", outside)
    (bundle / "manifest.json").symlink_to(outside)
    with pytest.raises(UnsafePath, match="outside the bundle"):
        load(bundle)


def test_a_tokenizer_vocabulary_larger_than_the_embedding_table_is_refused_at_load(
    bundle: Path, edit_manifest: Edit
) -> None:
    path = bundle / "tokenizer.json"
    raw = json.loads(path.read_text())
    vocab = raw["model"]["vocab"]
    vocab["lighthouse"] = max(vocab.values()) + 50_000  # past the model's rows
    path.write_text(json.dumps(raw))
    edit_manifest(bundle, lambda m: m["files"].__setitem__("tokenizer.json", sha256_file(path)))
    for pooled in (True, False):
        with pytest.raises(BundleError, match="embedding table smaller than the tokenizer's vocabulary") as caught:
            load(bundle, pooled=pooled)
        assert caught.value.path.suffix == ".onnx"


def _reduce_pooled_rows(bundle: Path, edit_manifest: Edit, keepdims: int) -> None:
    """Replace the pooled graph by one that averages its rows: [batch, 1, hidden], or [batch, hidden]."""
    onnx = pytest.importorskip("onnx")
    path = bundle / "model.optimized.pooled.onnx"
    model = onnx.load(str(path))
    out = model.graph.output[0]
    for node in model.graph.node:
        node.output[:] = [f"{o}_rows" if o == out.name else o for o in node.output]
    model.graph.node.append(
        onnx.helper.make_node("ReduceMean", [f"{out.name}_rows"], [out.name], axes=[1], keepdims=keepdims)
    )
    del model.graph.output[:]
    model.graph.output.append(onnx.helper.make_tensor_value_info(out.name, onnx.TensorProto.FLOAT, None))
    onnx.save(model, str(path))
    edit_manifest(bundle, lambda m: m["files"].__setitem__(path.name, sha256_file(path)))


@pytest.mark.parametrize("keepdims", [1, 0])
def test_a_pooled_graph_of_the_wrong_shape_is_refused_at_load(bundle: Path, edit_manifest: Edit, keepdims: int) -> None:
    _reduce_pooled_rows(bundle, edit_manifest, keepdims)
    with pytest.raises(
        BundleError, match=r"returns shape \[1, (1, )?\d+\] for one text of 2 tokens, expected \[1, 2, \d+\]"
    ) as caught:
        load(bundle, pooled=True)
    assert caught.value.path.name == "model.optimized.pooled.onnx"
    with load(bundle, pooled=False) as emb:  # the token-state graph of the same variant is fine
        assert np.isfinite(emb.embed(["still works"])).all()


def test_serve_exits_3_on_such_a_bundle(
    bundle: Path, edit_manifest: Edit, run_longvec: Callable[..., Any], free_port: Callable[[], int]
) -> None:
    edit_manifest(bundle, lambda m: m.update(prompts={"query": 5}, default_prompt="query"))
    result = run_longvec("serve", bundle, "--host", "127.0.0.1", "--port", str(free_port()), timeout=120)
    assert result.returncode == 3, result.stderr
    assert "manifest.json" in result.stderr and "Traceback" not in result.stderr
