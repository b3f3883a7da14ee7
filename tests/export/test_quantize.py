"""The int8 and fp16 variants: they export, load and agree with fp32, and a bad one fails the export loudly."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from longvec.export import export_bundle, parity, quantize
from longvec.runtime import Embedder
from longvec.runtime.bundle import Bundle
from longvec.runtime.errors import ParityError

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


def test_real_int8_agrees_with_fp32_on_long_prose(bundle_dir: Path) -> None:
    # Paragraphs and the whole demo document (several windows, stitched), none of it calibration text.
    lighthouses = REPO / "examples" / "lighthouses.txt"
    texts = [*paragraphs(lighthouses), lighthouses.read_text(encoding="utf-8")]
    with Embedder.load(bundle_dir, variant="optimized") as fp32, Embedder.load(bundle_dir, variant="int8") as int8:
        cos = np.einsum("nd,nd->n", fp32.embed(texts), int8.embed(texts))
    assert cos.min() >= parity.TOLERANCES["int8"].min_cosine, cos
    assert cos.min() < 0.99999  # the int8 graph is really quantized


def _siblings(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir())


def test_int8_below_its_tolerance_writes_nothing(
    tiny_export: TinyExport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Beyond any cosine: checks that the int8 tolerance is what gates this variant, and where the failure lands.
    monkeypatch.setitem(parity.TOLERANCES, "int8", parity.Tolerance(min_cosine=1.5, max_abs_diff=None))
    out = tmp_path / "bundle"
    with pytest.raises(ParityError, match="variant 'int8'"):
        export_bundle(tiny_export("bert")[0], out, ("int8",))
    assert _siblings(out) == []


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
    old = tmp_path / "old"
    with pytest.raises(ParityError, match=r"variant 'int8' on validation\.txt windows"):
        export_bundle(tiny_export("bert")[0], out, ("optimized", "int8"))
    assert _siblings(out) == []
    # An existing bundle survives a failed re-export untouched.
    shutil.copytree(tiny_export("bert")[1], old)
    with pytest.raises(ParityError):
        export_bundle(tiny_export("bert")[0], old, ("int8",), overwrite=True)
    assert Bundle.open(old).variant("optimized")
