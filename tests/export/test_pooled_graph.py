"""The pooled graph (pooling inside the ONNX graph) equals the token-state path on CPU onnxruntime, for every tiny
architecture and the real MiniLM bundle; `longvec export --add-pooled` gives old bundles one; a graph whose hidden
size differs from the manifest's is refused at load, naming the file."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from longvec.runtime import BundleError, Embedder
from longvec.runtime.bundle.reader import Bundle, sha256_file
from longvec.runtime.cli.main import main
from longvec.runtime.core.stitch import host_pool

TinyExport = Callable[[str], tuple[Path, Path]]
ARCHS = ("bert", "xlm-roberta", "mpnet", "modernbert")
TEXTS = [
    "Long documents are split into overlapping windows. " * 30,
    "a",
    "Die Katze sitzt auf der Matte. Café, naïve, Zürich!",
    "The lighthouse keeper climbed the stairs every night to trim the wick. " * 9,
]


def _mean_rows(ids: np.ndarray, mask: np.ndarray, seed: int = 0) -> np.ndarray:
    """Each text's mean, then random spans as mean rows: weights of the size the pipeline builds."""
    rng = np.random.default_rng(seed)
    rows = [mask / mask.sum(axis=1, keepdims=True)]
    for _ in range(3):
        lo = rng.integers(0, mask.sum(axis=1))
        span = (np.arange(ids.shape[1])[None, :] >= lo[:, None]) & mask.astype(bool)
        rows.append(span / span.sum(axis=1, keepdims=True))
    return np.stack(rows, axis=1).astype(np.float32)


def _assert_pooled_matches_states(bundle_dir: Path, variant: str) -> None:
    with (
        Embedder.load(bundle_dir, variant=variant, threads=1, pooled=True) as pooled,
        Embedder.load(bundle_dir, variant=variant, threads=1, pooled=False) as states,
    ):
        assert "pooled graph" in pooled.provider and "token-state graph" in states.provider
        ids = np.asarray(
            [[*pooled.manifest.framing.prefix_ids, *range(5, 5 + n), *pooled.manifest.framing.suffix_ids] for n in (9,)]
            * 2
        )
        ids[1, 6:] = pooled.manifest.framing.pad_id
        mask = (np.arange(ids.shape[1]) < np.array([[ids.shape[1]], [6]])).astype(np.int64)
        weights = _mean_rows(ids, mask)
        got = pooled.backend.run_pooled(ids, mask, weights)  # type: ignore[attr-defined]
        want = host_pool(states.backend.run(ids, mask), weights)
        np.testing.assert_allclose(got, want, atol=1e-5)
        window = min(pooled.manifest.max_positions, 64)
        for kwargs in ({}, {"stitch": "weighted", "chunk_tokens": 16}, {"mode": "window_mean"}):
            a = pooled.embed_documents(TEXTS, window=window, **kwargs)  # type: ignore[arg-type]
            b = states.embed_documents(TEXTS, window=window, **kwargs)  # type: ignore[arg-type]
            for x, y in zip(a, b):
                assert x.n_windows == y.n_windows and x.n_windows >= 1
                np.testing.assert_allclose(x.vector, y.vector, atol=1e-5)
                np.testing.assert_allclose(x.chunk_vectors, y.chunk_vectors, atol=1e-5)
        assert max(r.n_windows for r in a) > 1  # long texts were really stitched


@pytest.mark.parametrize("arch", ARCHS)
def test_pooled_graph_equals_token_states_on_tiny_architectures(arch: str, tiny_export: TinyExport) -> None:
    bundle_dir = tiny_export(arch)[1]
    manifest = Bundle.open(bundle_dir).manifest
    assert {v.name: v.pooled_file for v in manifest.variants} == {
        "fp32": "model.pooled.onnx",
        "optimized": "model.optimized.pooled.onnx",
    }
    for variant in ("fp32", "optimized"):
        _assert_pooled_matches_states(bundle_dir, variant)


def test_pooled_graph_equals_token_states_on_minilm(bundle_dir: Path, tmp_path: Path) -> None:
    if Bundle.open(bundle_dir, verify=False).manifest.variant("optimized").pooled_file is None:  # type: ignore[union-attr]
        shutil.copytree(bundle_dir, tmp_path / "b")
        assert main(["export", "--add-pooled", str(tmp_path / "b")]) == 0
        bundle_dir = tmp_path / "b"
    _assert_pooled_matches_states(bundle_dir, "optimized")


def _strip_pooled(src: Path, dst: Path) -> None:
    """A copy of the bundle as written before pooled graphs existed: no pooled files, no pooled_file fields."""
    shutil.copytree(src, dst)
    raw = json.loads((dst / "manifest.json").read_text())
    for v in raw["variants"]:
        (dst / v.pop("pooled_file")).unlink()
        v.pop("tensorrt")
    raw["files"] = {k: h for k, h in raw["files"].items() if (dst / k).is_file()}
    (dst / "manifest.json").write_text(json.dumps(raw))


def test_add_pooled_gives_an_old_bundle_pooled_graphs(tiny_bundle: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    _strip_pooled(tiny_bundle, old)
    with Embedder.load(old, threads=1) as emb:  # an old bundle still loads
        before = emb.embed(TEXTS)
    with pytest.raises(Exception, match="add-pooled"):
        Embedder.load(old, threads=1, pooled=True)
    assert main(["export", "--add-pooled", str(old)]) == 0
    bundle = Bundle.open(old)  # every checksum verified, the new files included
    assert [v.pooled_file for v in bundle.manifest.variants] == ["model.pooled.onnx", "model.optimized.pooled.onnx"]
    assert bundle.manifest.files["model.pooled.onnx"] == sha256_file(old / "model.pooled.onnx")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no work directory left behind
    with Embedder.load(old, threads=1, pooled=True) as emb:
        np.testing.assert_allclose(emb.embed(TEXTS), before, atol=1e-5)
    assert main(["export", "--add-pooled", str(old)]) == 0  # a second run changes nothing


def _graph_of_hidden(path: Path, hidden: int | str) -> None:
    """A valid ONNX encoder stand-in: token states = an embedding table lookup of width `hidden_width`."""
    width = 7
    table = helper.make_tensor("table", TensorProto.FLOAT, [1000, width], np.ones(1000 * width, np.float32))
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "input_ids"], ["last_hidden_state"])],
        "other_hidden",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info("token_type_ids", TensorProto.INT64, ["batch", "sequence"]),
        ],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", hidden])],
        [table],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


@pytest.mark.parametrize(
    ("declared", "pooled"), [(7, False), ("hidden", False), (7, True)]
)  # a static axis, a symbolic one (found by a probe run), and the pooled graph swapped
def test_graph_of_another_hidden_size_is_a_bundle_error(
    tiny_bundle: Path, tmp_path: Path, declared: int | str, pooled: bool
) -> None:
    from longvec.export.pooled import add_pool_head

    bad = tmp_path / "swapped"
    shutil.copytree(tiny_bundle, bad)
    name = "model.optimized.pooled.onnx" if pooled else "model.optimized.onnx"
    _graph_of_hidden(tmp_path / "other.onnx", declared)
    if pooled:
        add_pool_head(tmp_path / "other.onnx", bad / name, 7)
    else:
        shutil.copy(tmp_path / "other.onnx", bad / name)
    raw = json.loads((bad / "manifest.json").read_text())
    raw["files"][name] = sha256_file(bad / name)  # checksums updated
    (bad / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match=rf"{re.escape(name)}.*hidden size is 7.*hidden_size=32"):
        Embedder.load(bad, threads=1, pooled=pooled)
