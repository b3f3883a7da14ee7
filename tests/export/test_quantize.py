"""The int8 and fp16 variants: they export, load and agree with fp32; a bad one is left out of the bundle loudly
(VariantsRefused, exit 7), and a bad fp32 graph fails the export with nothing written."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from tokenizers import Tokenizer

from longvec.export import export_bundle, parity, quantize
from longvec.runtime import Embedder
from longvec.runtime.bundle.manifest import PoolingConfig
from longvec.runtime.bundle.reader import Bundle
from longvec.runtime.cli.main import main
from longvec.runtime.errors import ParityError, VariantsRefused

TinyExport = Callable[[str], tuple[Path, Path]]
REPO = Path(__file__).resolve().parents[2]


def paragraphs(path: Path) -> list[str]:
    return [p for p in path.read_text(encoding="utf-8").split("\n\n") if len(p.split()) > 3]


@pytest.fixture(scope="module")
def tiny_quantized(tiny_export: TinyExport, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("quantized") / "bundle"
    export_bundle(tiny_export("bert")[0], out, ("optimized", "int8", "fp16"))
    return out


def test_tiny_variants_export_and_load(tiny_quantized: Path) -> None:
    bundle = Bundle.open(tiny_quantized)  # verifies every checksum
    ops = {
        v.name: Counter(n.op_type for n in onnx.load(str(bundle.path(v.file))).graph.node)
        for v in bundle.manifest.variants
    }
    assert ops["int8"]["QAttention"] > 0 and ops["int8"]["MatMulInteger"] > 0
    assert "validation.txt windows" in bundle.variant("int8").notes
    fp16_model = onnx.load(str(bundle.path(bundle.variant("fp16").file)))
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in fp16_model.graph.initializer)
    assert [i.type.tensor_type.elem_type for i in fp16_model.graph.input] == [onnx.TensorProto.INT64] * 3
    texts = paragraphs(REPO / "examples" / "lighthouses.txt")[:6]
    vectors = {}
    for name in ("optimized", "int8", "fp16"):
        with Embedder.load(tiny_quantized, variant=name) as emb:
            vectors[name] = emb.embed(texts)
        assert bundle.variant(name).parity.min_cosine >= parity.TOLERANCES[bundle.variant(name).precision].min_cosine
    for name in ("int8", "fp16"):
        cos = np.einsum("nd,nd->n", vectors[name], vectors["optimized"])
        assert cos.min() >= parity.TOLERANCES[name].min_cosine, (name, cos)
        assert not np.array_equal(vectors[name], vectors["optimized"])  # really a different graph


def test_real_int8_agrees_with_fp32_on_prose(bundle_dir: Path, tmp_path: Path) -> None:
    """The int8 scheme on all-MiniLM-L6-v2, against its fp32 graph: full windows of the demo document and each of
    its paragraphs alone, none of it calibration text. Built here from the bundle's optimized graph, because the
    export's parity texts stop this int8 from being written (see bench/RESULTS.md, "Quantized variants")."""
    bundle = Bundle.open(bundle_dir, verify=False)
    tok = Tokenizer.from_file(str(bundle.path(bundle.manifest.tokenizer_file)))
    framing = bundle.manifest.framing
    fp32 = bundle.path(bundle.variant("optimized").file)
    quantize.make_variant("int8", fp32, tmp_path / "int8.onnx", tok, framing)
    doc = REPO / "examples" / "lighthouses.txt"
    windows = quantize.text_windows(doc.read_text(encoding="utf-8"), tok, framing, 512)
    windows += [
        [*framing.prefix_ids, *tok.encode(p, add_special_tokens=False).ids, *framing.suffix_ids]
        for p in paragraphs(doc)
    ]
    cos = []
    for ids, mask in quantize.padded_batches(windows, framing.pad_id):
        a, b = (pool(session(path), ids, mask) for path in (fp32, tmp_path / "int8.onnx"))
        cos.append(np.einsum("nd,nd->n", a, b))
    got = np.concatenate(cos)
    assert got.min() >= parity.TOLERANCES["int8"].min_cosine, got
    assert got.min() < 0.99999  # really quantized


def session(path: Path):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def pool(sess, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    states = sess.run(None, {i.name: feeds[i.name] for i in sess.get_inputs()})[0]
    return parity.pool(states, mask, PoolingConfig("mean", True))


def _siblings(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir())


def test_int8_below_its_tolerance_is_left_out_of_a_bundle_that_is_written(
    tiny_export: TinyExport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Beyond any cosine: checks that the int8 tolerance is what gates this variant, and what the export keeps.
    monkeypatch.setitem(parity.TOLERANCES, "int8", parity.Tolerance(min_cosine=1.5, max_abs_diff=None))
    out = tmp_path / "bundle"
    with pytest.raises(VariantsRefused, match="variant 'int8'") as info:
        export_bundle(tiny_export("bert")[0], out, ("optimized", "int8"))
    assert list(info.value.refused) == ["int8"]
    assert "min cosine" in info.value.refused["int8"] and "below 1.5" in info.value.refused["int8"]
    assert "fp16" in info.value.refused["int8"]  # what to try
    assert [v.name for v in Bundle.open(out).manifest.variants] == ["fp32", "optimized"]
    assert not (out / "model.int8.onnx").exists()
    assert _siblings(out) == ["bundle"]  # no temporary directory left
    # The CLI: one line on stderr (other libraries' bars and warnings silenced), its own exit code.
    capsys.readouterr()
    code = main(["export", str(tiny_export("bert")[0]), str(tmp_path / "cli"), "--variants", "optimized,int8"])
    err = capsys.readouterr().err
    assert code == 7, err
    assert err.count("\n") == 1 and err.startswith("longvec: error: wrote ") and "refused int8" in err


def test_a_bad_fp32_graph_writes_nothing(
    tiny_export: TinyExport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(parity.TOLERANCES, "fp32", parity.Tolerance(min_cosine=1.5, max_abs_diff=None))
    out = tmp_path / "bundle"
    with pytest.raises(ParityError, match="variant 'fp32'") as info:
        export_bundle(tiny_export("bert")[0], out, ("optimized",))
    assert not isinstance(info.value, VariantsRefused)
    assert _siblings(out) == []
    # An existing bundle survives a failed re-export untouched.
    old = tmp_path / "old"
    shutil.copytree(tiny_export("bert")[1], old)
    with pytest.raises(ParityError):
        export_bundle(tiny_export("bert")[0], old, ("optimized",), overwrite=True)
    assert Bundle.open(old).variant("optimized")


def test_broken_quantization_fails_the_export(
    tiny_export: TinyExport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real tolerances, a really broken graph: every quantized weight's scale is 30x too large (the tiny random
    encoder's states are dominated by its embeddings, so it takes a gross error to move them)."""
    make_variant = quantize.make_variant

    def corrupted(name: str, src: Path, out: Path, *args: object) -> str:
        notes = make_variant(name, src, out, *args)  # type: ignore[arg-type]
        model = onnx.load(str(out))
        scales = [i for i in model.graph.initializer if i.name.endswith("_scale")]
        assert scales
        for scale in scales:
            scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * 30, scale.name))
        onnx.save(model, str(out))
        return notes

    monkeypatch.setattr(quantize, "make_variant", corrupted)
    out = tmp_path / "bundle"
    with pytest.raises(VariantsRefused, match=r"variant 'int8' on validation\.txt windows"):
        export_bundle(tiny_export("bert")[0], out, ("optimized", "int8"))
    assert [v.name for v in Bundle.open(out).manifest.variants] == ["fp32", "optimized"]
