"""Changing a bundle that already exists (`export --add-pooled`, `build-engine`) with no moment at which it is
half-written: its files are hard-linked (or copied) into a temporary sibling, the new files and the new manifest
are written there, and the two directories are swapped by renames. A failed swap puts the original back."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from longvec.runtime.bundle.manifest import MANIFEST_NAME, Manifest


@contextmanager
def working_copy(root: Path, manifest: Manifest) -> Iterator[Path]:
    """A sibling of `root` holding its manifest and every file it lists; removed on the way out unless committed."""
    work = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.resolve().parent))
    try:
        for name in (MANIFEST_NAME, *manifest.files):
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            _link_or_copy(root / name, work / name)
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def commit(work: Path, root: Path, manifest: Manifest) -> None:
    """Write `manifest` into the working copy and put the copy where `root` was."""
    (work / MANIFEST_NAME).unlink()  # a hard link to the original's manifest: never write through it
    (work / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
    old = work.with_name(work.name + ".old")
    root.rename(old)
    try:
        work.rename(root)
    except BaseException:
        old.rename(root)
        raise
    shutil.rmtree(old)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)  # the graphs are large and never written in place: linking costs no disk
    except OSError:
        shutil.copy2(src, dst)
