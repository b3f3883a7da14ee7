"""longvec export stage: a local encoder directory -> a self-describing ONNX bundle (needs torch), plus the
torch-free steps on an existing bundle (pooled graphs: export/pooled.py; TensorRT plans: export/tensorrt.py).

The names below are loaded on first use, so the torch-free steps import without torch.
"""

from typing import Any

__all__ = ["DEFAULT_VARIANTS", "KNOWN_VARIANTS", "export_bundle"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from longvec.export import bundle

        return getattr(bundle, name)
    raise AttributeError(f"module 'longvec.export' has no attribute {name!r}")
