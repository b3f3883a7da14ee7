"""longvec runtime: load a bundle and embed texts of any length. Needs numpy, onnxruntime and tokenizers only."""

from longvec.runtime.core.fusion import fuse_scores, sparse_scores
from longvec.runtime.core.search import Hit
from longvec.runtime.core.sparse import SparseVector
from longvec.runtime.embedder import DocumentResult, Embedder, similarity
from longvec.runtime.errors import (
    AddressInUse,
    BackendUnavailable,
    BundleError,
    BundleNotFound,
    Cancelled,
    ChecksumMismatch,
    DeadlineExceeded,
    ExportError,
    InputError,
    LimitExceeded,
    LongvecError,
    ManifestError,
    ModelMismatch,
    OutputError,
    OverloadedError,
    ParityError,
    SchemaVersionError,
    UnsafePath,
    VariantNotFound,
    VariantsRefused,
)

# every class of the one exception tree (runtime/errors.py) is public: callers catch them by name
__all__ = [
    "AddressInUse",
    "BackendUnavailable",
    "BundleError",
    "BundleNotFound",
    "Cancelled",
    "ChecksumMismatch",
    "DeadlineExceeded",
    "DocumentResult",
    "Embedder",
    "ExportError",
    "Hit",
    "InputError",
    "LimitExceeded",
    "LongvecError",
    "ManifestError",
    "ModelMismatch",
    "OutputError",
    "OverloadedError",
    "ParityError",
    "SchemaVersionError",
    "SparseVector",
    "UnsafePath",
    "VariantNotFound",
    "VariantsRefused",
    "fuse_scores",
    "similarity",
    "sparse_scores",
]
