"""A one-line progress bar for batch jobs: documents done, tokens/s and ETA. On a terminal it redraws in place;
otherwise (a log file, CI, a pipe) it stays quiet and the job logs one line per shard instead."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def duration(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    def __init__(self, total: int, done: int = 0, stream: TextIO | None = None, width: int = 28) -> None:
        self.stream = stream or sys.stdout
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.total, self.done, self.width = total, done, width
        self._skipped = done  # resumed documents do not count toward the rate
        self.tokens = 0
        self.started = self._last_draw = time.monotonic()

    def update(self, documents: int, tokens: int) -> None:
        self.done += documents
        self.tokens += tokens
        now = time.monotonic()
        if self.live and (now - self._last_draw >= 0.2 or self.done >= self.total):
            self._last_draw = now
            self.stream.write("\r" + self.line())
            self.stream.flush()

    def rates(self) -> tuple[float, float, float]:
        """documents/s and tokens/s of this run, and the seconds left at that rate."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        docs_per_s = (self.done - self._skipped) / elapsed
        left = (self.total - self.done) / docs_per_s if docs_per_s > 0 else float("nan")
        return docs_per_s, self.tokens / elapsed, left

    def line(self) -> str:
        frac = self.done / self.total if self.total else 1.0
        filled = int(frac * self.width)
        bar = "█" * filled + "·" * (self.width - filled)
        docs_per_s, tokens_per_s, left = self.rates()
        eta = duration(left) if docs_per_s > 0 else "--:--"
        return (
            f"{bar} {self.done}/{self.total} docs {frac:4.0%}  {tokens_per_s:,.0f} tok/s  {docs_per_s:,.1f} docs/s  "
            f"ETA {eta} "
        )

    def log(self, message: str) -> None:
        """A line that is not the bar: printed above it on a terminal, as is otherwise."""
        if self.live:
            self.stream.write("\r\x1b[2K")
        self.stream.write(message + "\n")
        if self.live:
            self.stream.write(self.line())
        self.stream.flush()

    def close(self) -> None:
        if self.live:
            self.stream.write("\r" + self.line() + "\n")
            self.stream.flush()
