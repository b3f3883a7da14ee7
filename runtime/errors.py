"""The one exception tree of longvec.

    LongvecError
    ├── BundleError                  a bundle on disk is unusable; the message names the file (and field)
    │   ├── BundleNotFound           the directory, manifest.json or a listed file is missing
    │   ├── ManifestError            manifest.json is not valid JSON or a field is missing / wrong
    │   ├── SchemaVersionError       written by a newer longvec than this one
    │   ├── UnsafePath               a path in the manifest leaves the bundle directory
    │   ├── ChecksumMismatch         a file's sha256 differs from the manifest (truncated, edited)
    │   └── VariantNotFound          the asked-for variant is not in this bundle
    ├── BackendUnavailable           the engine for a variant is not installed or cannot load the graph
    ├── InputError (ValueError)      a text or option the caller passed cannot be embedded as asked
    │   ├── LimitExceeded            a request is larger than a limit (a library bound such as max_chunks=, or a
    │   │                            server flag); `.limit` names it
    │   └── ModelMismatch            a search index queried with another model than the one it was built with
    ├── ExportError                  the export stage could not read or convert a model
    │   └── ParityError              an exported graph disagrees with torch (or fp32) beyond tolerance
    │       └── VariantsRefused      the bundle was written, without the variants that failed their gate
    ├── OutputError                  a batch job's output cannot be written (not a directory, read-only, disk full)
    ├── OverloadedError              the server's queue is full; retry later
    ├── Cancelled                    the caller gave up (a cancellation token tripped between encoder batches)
    │   └── DeadlineExceeded         the work ran past its deadline
    └── AddressInUse                 the server cannot listen: another process holds the address and port

`TypeError` is raised, not wrapped, for arguments of the wrong Python type.
"""

from pathlib import Path
from typing import Any


class LongvecError(Exception):
    """Base of every error longvec raises on purpose."""


class BundleError(LongvecError):
    def __init__(self, path: Path | str, message: str) -> None:
        self.path = Path(path)
        super().__init__(f"{self.path}: {message}")


class BundleNotFound(BundleError):
    pass


class ManifestError(BundleError):
    pass


class SchemaVersionError(BundleError):
    pass


class UnsafePath(BundleError):
    pass


class ChecksumMismatch(BundleError):
    pass


class VariantNotFound(BundleError):
    pass


class BackendUnavailable(LongvecError):
    pass


class InputError(LongvecError, ValueError):
    pass


class LimitExceeded(InputError):
    def __init__(self, message: str, limit: str | None = None) -> None:
        self.limit = limit  # the bound's name, e.g. "max_chunks": a library argument, or a server flag without --
        super().__init__(message)


class ModelMismatch(InputError):
    pass


class ExportError(LongvecError):
    pass


class ParityError(ExportError):
    pass


class VariantsRefused(ParityError):
    """Raised after the bundle was written: `refused` maps each variant left out to why (its measured figure and
    what to try); `manifest` is the bundle that was written."""

    def __init__(self, message: str, manifest: Any, refused: dict[str, str]) -> None:
        super().__init__(message)
        self.manifest = manifest
        self.refused = refused


class OutputError(LongvecError):
    pass


class OverloadedError(LongvecError):
    pass


class Cancelled(LongvecError):
    pass


class DeadlineExceeded(Cancelled):
    pass


class AddressInUse(LongvecError):
    pass
