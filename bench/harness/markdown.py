"""Markdown for benchmark reports: tables, and the one section of bench/RESULTS.md that a script regenerates."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path


def row(cells: Iterable[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def table(header: Sequence[object], rows: Iterable[Sequence[object]]) -> list[str]:
    """A header, its rule and one line per row; each cell is shown with str() (format numbers before)."""
    return [row(header), "|" + "---|" * len(header), *(row(r) for r in rows)]


def replace_section(path: Path, heading: str, text: str, end: str | None = None) -> None:
    """Put `text` in place of the section that starts at the line `heading` and runs to the `end` marker line
    (with no marker: to the next `## ` heading), or append it; the rest of the file stays as it is."""
    old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    start = old.find(heading + "\n")
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    elif end is not None:
        stop = old.find(end, start)
        new = old[:start] + text + (old[stop + len(end) + 1 :] if stop >= 0 else "")
    else:
        stop = old.find("\n## ", start + len(heading))
        new = old[:start] + text + ("\n" + old[stop + 1 :] if stop >= 0 else "")
    path.write_text(new, encoding="utf-8")
