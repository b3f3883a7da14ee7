"""Reading a bundle directory: the manifest, its checksums, and the paths of the files it names."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from longvec.runtime.bundle.manifest import MANIFEST_NAME, Manifest, Variant
from longvec.runtime.errors import BundleNotFound, ChecksumMismatch, ManifestError, UnsafePath, VariantNotFound


def sha256_file(path: Path) -> str:
    return sha256_files([path])


def sha256_files(paths: Iterable[Path]) -> str:
    """One sha256 over the files' bytes in order, read in 1 MiB blocks (never a whole file in memory)."""
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Bundle:
    root: Path
    manifest: Manifest

    @classmethod
    def open(cls, root: str | Path, verify: bool = True) -> Bundle:
        """Read manifest.json; with `verify`, check that every listed file exists and matches its sha256."""
        root = Path(root)
        manifest_path = root / MANIFEST_NAME
        if not root.is_dir():
            raise BundleNotFound(root, "bundle directory does not exist")
        if not manifest_path.is_file():
            raise BundleNotFound(manifest_path, "missing; is this a longvec bundle (made by `longvec export`)?")
        manifest = Manifest.from_json(manifest_path.read_text(encoding="utf-8"), manifest_path)
        bundle = cls(root, manifest)
        for name in (manifest.tokenizer_file, *(f for v in manifest.variants for f in v.graph_files)):
            if name not in manifest.files:
                raise ManifestError(manifest_path, f"{name!r} is used but has no checksum in field 'files'")
        if verify:
            bundle.verify()
        return bundle

    @property
    def model_name(self) -> str:
        """The model's own name from the manifest; bundles written before it was recorded go by their folder."""
        return self.manifest.name or self.root.resolve().name

    def verify(self, names: Iterable[str] | None = None) -> None:
        """Every listed file must exist; the named ones (default: all) must match their sha256. Hashing is the
        slow part of a cold start (~0.1 s per 100 MB), so a load hashes only the files it reads."""
        paths = {name: self.path(name) for name in self.manifest.files}
        for name in self.manifest.files if names is None else names:
            if sha256_file(paths[name]) != self.manifest.files[name]:
                raise ChecksumMismatch(paths[name], "sha256 differs from manifest.json (truncated or modified)")

    def path(self, name: str) -> Path:
        """Absolute path of a file the manifest names; never outside the bundle, and it must exist."""
        resolved = (self.root / name).resolve()
        if not resolved.is_relative_to(self.root.resolve()):
            raise UnsafePath(self.root / MANIFEST_NAME, f"{name!r} resolves outside the bundle")
        if not resolved.is_file():
            raise BundleNotFound(self.root / name, "listed in manifest.json but missing")
        return resolved

    def variant_names(self) -> tuple[str, ...]:
        """Every variant this bundle holds, onnxruntime graphs and the TensorRT plans `longvec build-engine` adds
        alike (a plan runs only with device "cuda", on the GPU it was built for): what any `--variant` accepts."""
        return tuple(v.name for v in self.manifest.variants)

    def variant(self, name: str) -> Variant:
        variant = self.manifest.variant(name)
        if variant is None:
            have = ", ".join(self.variant_names())
            raise VariantNotFound(self.root / MANIFEST_NAME, f"no variant {name!r} (this bundle has: {have})")
        return variant
