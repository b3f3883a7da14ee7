"""longvec runtime: load a bundle and embed texts of any length. Needs numpy, onnxruntime and tokenizers only."""

from longvec.runtime.core.fusion import fuse_scores, sparse_scores
from longvec.runtime.core.search import Hit
from longvec.runtime.core.sparse import SparseVector
from longvec.runtime.embedder import DocumentResult, Embedder
from longvec.runtime.errors import (
    BackendUnavailable,
    BundleError,
    BundleNotFound,
    ChecksumMismatch,
    InputError,
    LongvecError,
    ManifestError,
    SchemaVersionError,
    UnsafePath,
    VariantNotFound,
)

__all__ = [
    "BackendUnavailable",
    "BundleError",
    "BundleNotFound",
    "ChecksumMismatch",
    "DocumentResult",
    "Embedder",
    "Hit",
    "InputError",
    "LongvecError",
    "ManifestError",
    "SchemaVersionError",
    "SparseVector",
    "UnsafePath",
    "VariantNotFound",
    "fuse_scores",
    "sparse_scores",
]
