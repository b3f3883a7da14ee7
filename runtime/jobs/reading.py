"""Reading a corpus file as it was fingerprinted: the bytes a job embeds are hashed as they are read and compared
with the scan's sha256, so that a file rewritten, appended to or truncated during a job stops it instead of
mixing old and new documents in one output."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from longvec.runtime.errors import InputError


class ReadDigest:
    """A binary file that hashes what is read from it, so a job can prove it embedded the bytes it fingerprinted
    (and not a file rewritten since the scan): lines for plain JSONL, `read` for the gzip reader."""

    def __init__(self, raw: Any) -> None:
        self.raw, self.digest = raw, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.digest.update(data)
        return data

    def __iter__(self) -> Iterator[bytes]:
        for line in self.raw:
            self.digest.update(line)
            yield line

    def drain(self) -> None:
        while self.read(1 << 20):
            pass

    def hexdigest(self) -> str:
        return self.digest.hexdigest()


def changed_during_job(path: Path, detail: str) -> InputError:
    return InputError(
        f"{path}: the file changed while the job was reading it ({detail}, or other contents); the shards "
        "written from it may mix old and new documents: keep the input still during a job, then rerun with "
        "--overwrite"
    )
