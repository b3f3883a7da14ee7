"""Large inputs a group at a time: lazy groups of texts, errors that name a text by its overall position, and an
optional progress bar. What lets `embed` / `embed_documents` take huge lists and their `_iter` twins any
iterable without holding all of it."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any, TypeVar

from longvec.runtime.errors import InputError

T = TypeVar("T")


def groups(items: Iterable[T], size: int) -> Iterator[tuple[int, list[T]]]:
    """(offset, up to `size` items) from any iterable, read lazily."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InputError(f"batch_size must be a positive int, got {size!r}")
    if isinstance(items, str):
        raise TypeError("texts must be an iterable of str, not a single str (wrap it in a list)")
    it = iter(items)
    offset = 0
    while batch := list(islice(it, size)):
        yield offset, batch
        offset += len(batch)


class renumbered:
    """Errors raised for a group of texts name each text by its overall position (texts[1030], not texts[6])."""

    _INDEX = re.compile(r"texts\[(\d+)\]")

    def __init__(self, offset: int) -> None:
        self.offset = offset

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: object) -> None:
        if self.offset and isinstance(error, (InputError, TypeError)) and error.args:
            message = self._INDEX.sub(lambda m: f"texts[{int(m.group(1)) + self.offset}]", str(error.args[0]))
            error.args = (message, *error.args[1:])


class progress:
    """`with progress(total, on) as advance: advance(n)`: tqdm on stderr when installed, else a counter line."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.done, self._bar = total, enabled, 0, None

    def __enter__(self) -> Any:
        if self.enabled:
            try:
                from tqdm.auto import tqdm

                self._bar = tqdm(total=self.total, unit="text", file=sys.stderr)
            except ImportError:
                self._bar = None
        return self.advance

    def advance(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
        else:
            sys.stderr.write(f"\r{self.done}/{self.total} texts")
            sys.stderr.flush()

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled:
            sys.stderr.write("\n")
