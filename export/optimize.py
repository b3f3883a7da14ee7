"""Offline graph optimization with onnxruntime's transformer optimizer (operator fusion)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from longvec.runtime.errors import ExportError

# onnxruntime's optimizer knows these families; others get its generic BERT fusions, which still apply to
# most post-LN encoders, and the fusion counts in the manifest say what happened.
_OPTIMIZER_TYPES = {
    "bert": "bert",
    "roberta": "bert",
    "xlm-roberta": "bert",
    "mpnet": "bert",
    "distilbert": "bert",
}


def optimize(src: Path, out: Path, config: dict[str, Any]) -> dict[str, int]:
    """Write the fused fp32 graph to `out`; return the fused-operator counts."""
    from onnxruntime.transformers.optimizer import optimize_model

    model_type = _OPTIMIZER_TYPES.get(str(config.get("model_type")), "bert")
    try:
        optimized = optimize_model(
            str(src),
            model_type=model_type,
            num_heads=int(config.get("num_attention_heads", 0)),
            hidden_size=int(config.get("hidden_size", 0)),
            opt_level=0,  # fusions only: leave hardware-specific rewrites to the session at load time
        )
    except Exception as e:
        raise ExportError(f"{src}: onnxruntime optimizer failed ({e})") from e
    optimized.save_model_to_file(str(out))
    return {k: int(v) for k, v in optimized.get_fused_operator_statistics().items() if v}
