"""What commands read from the file system besides bundles: a text file, with the usual mistakes named."""

from __future__ import annotations

from pathlib import Path

from longvec.runtime.errors import InputError


def read_text_file(path: Path) -> str:
    """A UTF-8 text file, or an InputError that says which of the usual mistakes it is."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a text file") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); convert it, e.g. with iconv") from None
