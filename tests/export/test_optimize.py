"""The optimized variant is really fused, and the manifest's notes say exactly what is in the graph."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest

from longvec.runtime.bundle.reader import Bundle

MINILM_FUSIONS = {
    "EmbedLayerNormalization": 1,
    "Attention": 6,
    "BiasGelu": 6,
    "SkipLayerNormalization": 12,
}


def op_counts(path: Path) -> Counter[str]:
    model = onnx.load(str(path), load_external_data=False)
    return Counter(node.op_type for node in model.graph.node)


def noted_fusions(notes: str) -> dict[str, int]:
    """'fused: Attention x6, BiasGelu x6' -> {'Attention': 6, 'BiasGelu': 6}."""
    assert notes.startswith("fused: "), notes
    pairs = (item.rsplit(" x", 1) for item in notes.removeprefix("fused: ").split(", "))
    return {op: int(n) for op, n in pairs}


def test_minilm_optimized_graph_is_fused(bundle_dir: Path) -> None:
    bundle = Bundle.open(bundle_dir, verify=False)
    variant = bundle.variant("optimized")
    counts = op_counts(bundle.path(variant.file))
    assert {op: counts[op] for op in MINILM_FUSIONS} == MINILM_FUSIONS
    assert noted_fusions(variant.notes) == MINILM_FUSIONS
    # Fused means the unfused pieces are gone: no plain Softmax/Erf left over from attention and GELU.
    assert counts["Softmax"] == 0 and counts["Erf"] == 0
    assert sum(op_counts(bundle.path(bundle.variant("fp32").file))[op] for op in MINILM_FUSIONS) == 0


@pytest.mark.parametrize("arch", ["bert", "roberta", "xlm-roberta", "mpnet", "modernbert"])
def test_notes_match_the_graph(arch: str, tiny_export: Callable[[str], tuple[Path, Path]]) -> None:
    bundle = Bundle.open(tiny_export(arch)[1])
    variant = bundle.variant("optimized")
    counts = op_counts(bundle.path(variant.file))
    noted = noted_fusions(variant.notes)
    assert noted, f"{arch}: the optimizer fused nothing"
    assert {op: counts[op] for op in noted} == noted
