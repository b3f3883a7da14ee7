"""Backend capabilities are declared data (runtime.backends.base.Capabilities), read as `backend.capabilities.x`:
no code outside runtime/backends/ probes a backend for one with `getattr`/`hasattr`. `make check` runs this file,
so adding such a probe fails the check (the second test shows the scanner catches one)."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

from longvec.runtime.backends import Capabilities

ROOT = Path(__file__).resolve().parents[3]
SCANNED = ("runtime", "export", "bench", "package", "kernels", "tests")
ALLOWED = ROOT / "runtime" / "backends"  # the one place that defines and forwards them
CAPABILITY_NAMES = {"capabilities", *(f.name for f in dataclasses.fields(Capabilities))}
# words other objects use too (a bench system's `provider`, a profile's `max_batch`): a probe only when the
# probed expression names a backend
GENERIC = {"provider", "max_batch"}


def probes(source: str, filename: str = "<source>") -> list[str]:
    """`getattr(x, "pools", ...)` / `hasattr(x, "on_gpu")` calls naming a capability, as "file:line name"."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value in CAPABILITY_NAMES
            and (node.args[1].value not in GENERIC or "backend" in ast.unparse(node.args[0]).lower())
        ):
            found.append(f"{filename}:{node.lineno} {node.func.id}(..., {node.args[1].value!r})")
    return found


def test_no_capability_probe_outside_backends() -> None:
    found = [
        hit
        for folder in SCANNED
        for path in sorted((ROOT / folder).rglob("*.py"))
        if ALLOWED not in path.parents
        for hit in probes(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    ]
    assert not found, "read backend.capabilities instead of probing: " + "; ".join(found)


def test_the_scanner_finds_the_probes_it_forbids() -> None:
    bad = (
        'limit = getattr(backend, "max_batch", None)\n'
        'if hasattr(b, "on_gpu"): pass\n'
        'x = getattr(o, "name")\n'
        'p = getattr(self.inner_backend, "provider", "")\n'
        'q = getattr(system, "provider", "")\n'
    )
    assert probes(bad) == [
        "<source>:1 getattr(..., 'max_batch')",
        "<source>:2 hasattr(..., 'on_gpu')",
        "<source>:4 getattr(..., 'provider')",
    ]
    assert {"pools", "on_gpu", "max_batch", "provider", "max_seq"} <= CAPABILITY_NAMES
