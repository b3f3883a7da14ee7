"""What opening a backend needs besides the engine name: the variant's files and how to run them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEVICES: tuple[str, ...] = ("cpu", "cuda", "auto")
# onnxruntime's TensorRT provider runs only the unfused graph: TensorRT's ONNX parser does not take onnxruntime's
# fused contrib ops (the "optimized" graph would leave it only the MatMuls between them, as many tiny engines)
TENSORRT_PROVIDER_VARIANT = "fp32"


@dataclass(frozen=True)
class GraphFiles:
    """The files of one variant: the token-state graph (or plan) and, when the bundle has it, its pooled twin."""

    states: Path | None
    pooled: Path | None = None
    input_names: tuple[str, ...] = ("input_ids", "attention_mask")  # the token-state graph's, from the manifest


@dataclass(frozen=True)
class BackendOptions:
    threads: int | None = None  # CPU threads (onnxruntime intra-op)
    spin: bool = False  # idle onnxruntime threads spin-wait: for a dedicated machine, not a shared one (onnx.py)
    device: str = "cpu"  # never switched silently: "auto" picks CUDA only when it is really there, and says so
    pooled: bool | None = None  # use the pooled graph: None = the default for the device (see onnx.py)
    tensorrt_provider: bool = False  # onnxruntime's TensorRT execution provider instead of CUDA's
    cache_dir: Path | None = None  # TensorRT engines and timing caches (default: ~/.cache/longvec/tensorrt)
    window: int | None = None  # the embedder's window: the longest sequence an engine is built or checked for
