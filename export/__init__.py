"""longvec export stage (needs torch): a local encoder directory -> a self-describing ONNX bundle."""

from longvec.export.bundle import DEFAULT_VARIANTS, KNOWN_VARIANTS, export_bundle

__all__ = ["DEFAULT_VARIANTS", "KNOWN_VARIANTS", "export_bundle"]
