"""The README's "Serving" tables match the code they describe: the routes the app serves, the metrics it exports,
the error codes it answers with, and every limit flag with its default (issue 21: tables generated from the code
are checked against it)."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from longvec.runtime.cli.serve import OPTIONS
from longvec.runtime.server import ServeSettings, create_app
from longvec.runtime.server.errors import ERROR_TABLE, INTERNAL
from longvec.runtime.server.metrics import Metrics

README = Path(__file__).resolve().parents[3] / "README.md"


def serving() -> str:
    text = README.read_text(encoding="utf-8")
    return text[text.index("## Serving\n") : text.index("\n## ", text.index("## Serving\n") + 1)]


def table(header: str) -> list[list[str]]:
    """The rows of the Serving table whose header row starts with `header`, as lists of cells."""
    lines = serving().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def test_the_routes_table_lists_every_route_the_app_serves() -> None:
    app = create_app(ServeSettings(model_name="m"), lambda: None)  # type: ignore[arg-type,return-value]
    served = set()
    for route in app.routes:
        path = re.sub(r"\{[^}]*\}", "{id}", getattr(route, "path", ""))
        for method in sorted(getattr(route, "methods", None) or ()):
            if method != "HEAD":
                served.add(f"{method} {path}")
    documented = {m for row in table("| route |") for m in re.findall(r"`([A-Z]+ /[^`]*)`", row[0])}
    assert documented == served


def test_the_metrics_table_is_the_registry() -> None:
    documented = {(re.sub(r"`", "", row[0]), row[1]) for row in table("| metric |")}
    assert documented == {(name, kind) for name, kind, _ in Metrics().families()}


def test_the_error_table_is_the_servers() -> None:
    documented = {(int(row[0]), row[1].strip("`")) for row in table("| status | code |")}
    assert documented == {(status, code) for _, status, _, code in ERROR_TABLE} | {(INTERNAL[0], INTERNAL[2])}


def _number(cell: str) -> float:
    value, _, unit = cell.replace(",", "").partition(" ")
    return float(value) * {"": 1, "s": 1, "MiB": 2**20}[unit]


def test_the_limits_table_has_every_limit_flag_and_its_default() -> None:
    defaults = {f.name: f.default for f in fields(ServeSettings)}
    limits = {
        flag
        for flag in OPTIONS
        if isinstance(defaults.get(flag[2:].replace("-", "_")), (int, float))
        and not isinstance(defaults.get(flag[2:].replace("-", "_")), bool)
    }
    rows = {row[0].strip("`"): row[1] for row in table("| flag | default |")}
    assert set(rows) == limits
    for flag, cell in rows.items():
        assert _number(cell) == defaults[flag[2:].replace("-", "_")], flag
