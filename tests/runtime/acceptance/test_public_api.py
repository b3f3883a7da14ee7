"""The public API, pinned (as httpx pins its exports): changing it must be a deliberate edit of this file.

Parameters are pinned by name, kind and default; adding one at the end with a default keeps old calls working,
so such an addition only needs the new entry appended here.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import pytest

import longvec.runtime
from longvec.runtime import DocumentResult, Embedder, LongvecError

EXPORTS = [
    "AddressInUse",  # added in issue 18: every error class is public
    "BackendUnavailable",
    "BundleError",
    "BundleNotFound",
    "Cancelled",  # issue 18
    "ChecksumMismatch",
    "DeadlineExceeded",  # issue 18
    "DocumentResult",
    "Embedder",
    "ExportError",  # issue 18
    "Hit",
    "InputError",
    "LimitExceeded",  # issue 18
    "LongvecError",
    "ManifestError",
    "ModelMismatch",  # issue 23
    "OutputError",  # issue 18
    "OverloadedError",  # issue 18
    "ParityError",  # issue 18
    "SchemaVersionError",
    "SparseVector",
    "UnsafePath",
    "VariantNotFound",
    "VariantsRefused",  # issue 18
    "fuse_scores",
    "similarity",
    "sparse_scores",
]
NOT_ERRORS = ("Embedder", "DocumentResult", "Hit", "SparseVector", "fuse_scores", "similarity", "sparse_scores")

P = inspect.Parameter
EMPTY = P.empty
SIGNATURES: dict[str, list[tuple[str, Any, object]]] = {
    "load": [
        ("bundle_dir", P.POSITIONAL_OR_KEYWORD, EMPTY),
        ("variant", P.POSITIONAL_OR_KEYWORD, "optimized"),
        ("threads", P.POSITIONAL_OR_KEYWORD, None),
        ("window", P.POSITIONAL_OR_KEYWORD, None),
        ("max_batch_tokens", P.POSITIONAL_OR_KEYWORD, 8192),
        ("verify", P.POSITIONAL_OR_KEYWORD, True),
        ("device", P.POSITIONAL_OR_KEYWORD, "cpu"),  # added by the GPU issue (11), after every older parameter
        ("pooled", P.POSITIONAL_OR_KEYWORD, None),
        ("tensorrt_provider", P.POSITIONAL_OR_KEYWORD, False),
        ("spin", P.POSITIONAL_OR_KEYWORD, None),  # added by the throughput issue (12)
    ],
    "embed": [
        ("self", P.POSITIONAL_OR_KEYWORD, EMPTY),
        ("texts", P.POSITIONAL_OR_KEYWORD, EMPTY),
        ("prompt", P.POSITIONAL_OR_KEYWORD, None),
        ("window", P.POSITIONAL_OR_KEYWORD, None),
        ("stride", P.POSITIONAL_OR_KEYWORD, None),
        ("prompt_name", P.KEYWORD_ONLY, None),
        ("dimensions", P.KEYWORD_ONLY, None),
        ("normalize", P.KEYWORD_ONLY, None),
        ("batch_size", P.KEYWORD_ONLY, 1024),
        ("show_progress_bar", P.KEYWORD_ONLY, False),
    ],
    "embed_documents": [
        ("self", P.POSITIONAL_OR_KEYWORD, EMPTY),
        ("texts", P.POSITIONAL_OR_KEYWORD, EMPTY),
        ("chunking", P.POSITIONAL_OR_KEYWORD, "tokens"),
        ("chunk_tokens", P.POSITIONAL_OR_KEYWORD, 128),
        ("window", P.POSITIONAL_OR_KEYWORD, None),
        ("stride", P.POSITIONAL_OR_KEYWORD, None),
        ("mode", P.POSITIONAL_OR_KEYWORD, "auto"),
        ("spans", P.POSITIONAL_OR_KEYWORD, None),
        ("prompt", P.POSITIONAL_OR_KEYWORD, None),
        ("stitch", P.POSITIONAL_OR_KEYWORD, "center"),
        ("sparse", P.POSITIONAL_OR_KEYWORD, False),
        ("prompt_name", P.KEYWORD_ONLY, None),
        ("dimensions", P.KEYWORD_ONLY, None),
        ("normalize", P.KEYWORD_ONLY, None),
        ("snap", P.KEYWORD_ONLY, False),
        ("batch_size", P.KEYWORD_ONLY, 1024),
        ("show_progress_bar", P.KEYWORD_ONLY, False),
        ("max_chunks", P.KEYWORD_ONLY, 65_536),
    ],
    "embed_iter": [
        ("self", P.POSITIONAL_OR_KEYWORD, EMPTY),
        ("texts", P.POSITIONAL_OR_KEYWORD, EMPTY),
        ("prompt", P.POSITIONAL_OR_KEYWORD, None),
        ("window", P.POSITIONAL_OR_KEYWORD, None),
        ("stride", P.POSITIONAL_OR_KEYWORD, None),
        ("prompt_name", P.KEYWORD_ONLY, None),
        ("dimensions", P.KEYWORD_ONLY, None),
        ("normalize", P.KEYWORD_ONLY, None),
        ("batch_size", P.KEYWORD_ONLY, 1024),
    ],
    "embed_documents_iter": [
        ("self", P.POSITIONAL_OR_KEYWORD, EMPTY),
        ("texts", P.POSITIONAL_OR_KEYWORD, EMPTY),
        ("chunking", P.POSITIONAL_OR_KEYWORD, "tokens"),
        ("chunk_tokens", P.POSITIONAL_OR_KEYWORD, 128),
        ("window", P.POSITIONAL_OR_KEYWORD, None),
        ("stride", P.POSITIONAL_OR_KEYWORD, None),
        ("mode", P.POSITIONAL_OR_KEYWORD, "auto"),
        ("prompt", P.POSITIONAL_OR_KEYWORD, None),
        ("stitch", P.POSITIONAL_OR_KEYWORD, "center"),
        ("sparse", P.POSITIONAL_OR_KEYWORD, False),
        ("prompt_name", P.KEYWORD_ONLY, None),
        ("dimensions", P.KEYWORD_ONLY, None),
        ("normalize", P.KEYWORD_ONLY, None),
        # 256 until issue 18: the _iter forms now share their list forms' defaults and limits
        ("batch_size", P.KEYWORD_ONLY, 1024),
        ("max_chunks", P.KEYWORD_ONLY, 65536),
    ],
    "document_call": [
        ("self", P.POSITIONAL_OR_KEYWORD, EMPTY),
        ("chunking", P.POSITIONAL_OR_KEYWORD, "tokens"),
        ("chunk_tokens", P.POSITIONAL_OR_KEYWORD, 128),
        ("window", P.POSITIONAL_OR_KEYWORD, None),
        ("stride", P.POSITIONAL_OR_KEYWORD, None),
        ("mode", P.POSITIONAL_OR_KEYWORD, "auto"),
        ("prompt", P.POSITIONAL_OR_KEYWORD, None),
        ("stitch", P.POSITIONAL_OR_KEYWORD, "center"),
        ("sparse", P.POSITIONAL_OR_KEYWORD, False),
        ("spans", P.KEYWORD_ONLY, False),
        ("prompt_name", P.KEYWORD_ONLY, None),
        ("dimensions", P.KEYWORD_ONLY, None),
        ("normalize", P.KEYWORD_ONLY, None),
        ("snap", P.KEYWORD_ONLY, False),
        ("batch_size", P.KEYWORD_ONLY, 1024),
        ("max_chunks", P.KEYWORD_ONLY, 65536),
    ],
    "prepare_documents": [
        ("self", P.POSITIONAL_OR_KEYWORD, EMPTY),
        ("call", P.POSITIONAL_OR_KEYWORD, EMPTY),
        ("texts", P.POSITIONAL_OR_KEYWORD, EMPTY),
        ("spans", P.POSITIONAL_OR_KEYWORD, None),
    ],
    "embed_prepared": [
        ("self", P.POSITIONAL_OR_KEYWORD, EMPTY),
        ("prepared", P.POSITIONAL_OR_KEYWORD, EMPTY),
    ],
    # sentence-transformers' encode, argument for argument (issue 21)
    "encode": [
        ("self", P.POSITIONAL_OR_KEYWORD, EMPTY),
        ("sentences", P.POSITIONAL_OR_KEYWORD, EMPTY),
        ("prompt_name", P.POSITIONAL_OR_KEYWORD, None),
        ("prompt", P.POSITIONAL_OR_KEYWORD, None),
        ("batch_size", P.POSITIONAL_OR_KEYWORD, 32),
        ("show_progress_bar", P.POSITIONAL_OR_KEYWORD, None),
        ("output_value", P.POSITIONAL_OR_KEYWORD, "sentence_embedding"),
        ("precision", P.POSITIONAL_OR_KEYWORD, "float32"),
        ("convert_to_numpy", P.POSITIONAL_OR_KEYWORD, True),
        ("convert_to_tensor", P.POSITIONAL_OR_KEYWORD, False),
        ("device", P.POSITIONAL_OR_KEYWORD, None),
        ("normalize_embeddings", P.POSITIONAL_OR_KEYWORD, False),
        ("truncate_dim", P.POSITIONAL_OR_KEYWORD, None),
    ],
    "similarity": [("a", P.POSITIONAL_OR_KEYWORD, EMPTY), ("b", P.POSITIONAL_OR_KEYWORD, EMPTY)],
    "search": [
        ("self", P.POSITIONAL_OR_KEYWORD, EMPTY),
        ("query", P.POSITIONAL_OR_KEYWORD, EMPTY),
        ("documents", P.POSITIONAL_OR_KEYWORD, EMPTY),
        ("top_k", P.KEYWORD_ONLY, 10),
        ("hybrid", P.KEYWORD_ONLY, True),
        ("fusion", P.KEYWORD_ONLY, "zscore"),
        ("alpha", P.KEYWORD_ONLY, 0.5),
        ("texts", P.KEYWORD_ONLY, None),
        ("snap", P.KEYWORD_ONLY, False),
        ("chunking", P.KEYWORD_ONLY, "tokens"),
        ("chunk_tokens", P.KEYWORD_ONLY, 128),
        ("mode", P.KEYWORD_ONLY, "auto"),
        ("prompt_name", P.KEYWORD_ONLY, None),
        ("show_progress_bar", P.KEYWORD_ONLY, False),
        ("prompt", P.KEYWORD_ONLY, None),
    ],
    "resolve_prompt": [
        ("self", P.POSITIONAL_OR_KEYWORD, EMPTY),
        ("prompt", P.POSITIONAL_OR_KEYWORD, None),
        ("prompt_name", P.POSITIONAL_OR_KEYWORD, None),
    ],
}
RESULT_FIELDS = [
    ("vector", dataclasses.MISSING),
    ("chunk_vectors", dataclasses.MISSING),
    ("chunk_spans", dataclasses.MISSING),
    ("chunk_token_spans", dataclasses.MISSING),
    ("n_tokens", dataclasses.MISSING),
    ("n_tokens_embedded", dataclasses.MISSING),
    ("n_windows", dataclasses.MISSING),
    ("mode", dataclasses.MISSING),
    ("chunk_sparse", None),
]


def test_every_error_class_is_exported() -> None:
    from longvec.runtime import errors

    classes = {n for n, v in vars(errors).items() if isinstance(v, type) and issubclass(v, errors.LongvecError)}
    assert classes <= set(longvec.runtime.__all__), classes - set(longvec.runtime.__all__)


def test_exports() -> None:
    assert longvec.runtime.__all__ == EXPORTS
    for name in EXPORTS:
        assert getattr(longvec.runtime, name).__module__.startswith("longvec.runtime.")
    for name in EXPORTS:
        value = getattr(longvec.runtime, name)
        if name not in NOT_ERRORS:
            assert issubclass(value, LongvecError), name


@pytest.mark.parametrize("method", sorted(SIGNATURES))
def test_signature(method: str) -> None:
    fn: Callable[..., Any] = getattr(Embedder, method)
    params = [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]
    assert params == SIGNATURES[method]


def test_load_is_a_classmethod_and_embedder_a_context_manager() -> None:
    assert isinstance(inspect.getattr_static(Embedder, "load"), classmethod)
    assert callable(Embedder.__enter__) and callable(Embedder.__exit__) and callable(Embedder.close)


def test_document_result_fields() -> None:
    assert dataclasses.is_dataclass(DocumentResult)
    assert DocumentResult.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert [(f.name, f.default) for f in dataclasses.fields(DocumentResult)] == RESULT_FIELDS
