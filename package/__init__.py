"""longvec: embed documents of any length with a torch-free runtime.

The library lives in `longvec.runtime` (serve side), `longvec.export` (torch side) and `longvec.kernels` (NumPy).
This package only answers `longvec.__version__` and `from longvec import Embedder`, both looked up on first use:
`import longvec.export` or `import longvec.kernels` must not load onnxruntime through their parent package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from longvec.runtime.embedder import Embedder

__all__ = ["Embedder", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib import metadata

        return metadata.version("longvec")
    if name == "Embedder":
        from longvec.runtime.embedder import Embedder

        return Embedder
    raise AttributeError(f"module 'longvec' has no attribute {name!r}")
