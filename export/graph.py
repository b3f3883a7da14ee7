"""torch encoder -> ONNX graph with dynamic batch and sequence axes; output = last hidden state.

The TorchScript exporter (`dynamo=False`) with eager attention is used on purpose: torch 2.13's dynamo exporter
emits a graph that onnxruntime's BERT optimizer cannot fuse (measured 25-40% slower on CPU).
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path
from typing import Any

import torch

from longvec.runtime.errors import ExportError

OPSET = 17
# Learned absolute positions offset by padding_idx + 1 in these architectures (RoBERTa family, MPNet).
_POSITION_OFFSET_TYPES = {"roberta", "xlm-roberta", "camembert", "mpnet", "xlm-roberta-xl"}


def usable_positions(config: dict[str, Any]) -> int:
    positions = int(config.get("max_position_embeddings", 512))
    if config.get("model_type") in _POSITION_OFFSET_TYPES:
        positions -= int(config.get("pad_token_id", 1)) + 1
    return positions


class _StatesOnly(torch.nn.Module):
    """Returns only the token states, with a fixed positional signature the exporter can trace."""

    def __init__(self, model: torch.nn.Module, takes_token_types: bool) -> None:
        super().__init__()
        self.model = model
        self.takes_token_types = takes_token_types

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.takes_token_types:
            kwargs["token_type_ids"] = rest[0]
        return self.model(**kwargs).last_hidden_state


def load_encoder(path: Path) -> torch.nn.Module:
    from transformers import AutoModel

    try:
        model = AutoModel.from_pretrained(str(path), attn_implementation="eager", local_files_only=True)
    except Exception as e:
        raise ExportError(f"{path}: transformers cannot load this model ({e})") from e
    return model.eval()


def input_names_for(model: torch.nn.Module) -> tuple[str, ...]:
    params = inspect.signature(model.forward).parameters
    types = "token_type_ids" in params and getattr(model.config, "type_vocab_size", 0) > 0
    return ("input_ids", "attention_mask", "token_type_ids") if types else ("input_ids", "attention_mask")


def export_onnx(model: torch.nn.Module, out: Path, input_names: tuple[str, ...]) -> None:
    wrapper = _StatesOnly(model, "token_type_ids" in input_names).eval()
    config: Any = model.config  # a transformers PretrainedConfig; nn.Module's attribute typing does not know it
    ids = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12], [5, 6, 7, 8, 0, 0, 0, 0]], dtype=torch.long) % int(
        config.vocab_size
    )
    mask = torch.tensor([[1] * 8, [1] * 4 + [0] * 4], dtype=torch.long)
    args: tuple[torch.Tensor, ...] = (ids, mask) + ((torch.zeros_like(ids),) if len(input_names) == 3 else ())
    axes = {name: {0: "batch", 1: "sequence"} for name in input_names}
    axes["last_hidden_state"] = {0: "batch", 1: "sequence"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about python control flow on shapes
        torch.onnx.export(
            wrapper,
            args,
            str(out),
            input_names=list(input_names),
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
