"""What the wheel holds: every package folder is listed in pyproject.toml (a folder left out installs nothing and
fails a user's import, not CI), the type marker ships, and kernels stay NumPy-only at the source level."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
import tomllib

import longvec

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]


def package_folders() -> dict[str, Path]:
    """Dotted name -> folder of every directory with an __init__.py under the mapped source folders."""
    found: dict[str, Path] = {}
    for name, folder in SETUPTOOLS["package-dir"].items():
        base = ROOT / folder
        for init in sorted(base.rglob("__init__.py")):
            relative = init.parent.relative_to(base)
            found[".".join((name, *relative.parts))] = init.parent
    return found


def test_the_folders_walked_are_the_source_folders() -> None:
    folders = package_folders()
    assert {"longvec", "longvec.runtime", "longvec.runtime.core", "longvec.export", "longvec.kernels"} <= set(folders)
    assert folders["longvec.runtime.core"] == ROOT / "runtime" / "core"


def test_every_package_folder_is_listed_in_pyproject() -> None:
    missing = sorted(set(package_folders()) - set(SETUPTOOLS["packages"]))
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {missing}"


def test_every_listed_package_has_a_folder() -> None:
    stale = sorted(set(SETUPTOOLS["packages"]) - set(package_folders()))
    assert not stale, f"listed in pyproject.toml but no folder with __init__.py: {stale}"


def test_every_listed_package_is_installed() -> None:
    """The installed copy (what the tests run against) has each listed package, with its modules."""
    installed = Path(longvec.__file__).parent
    for name, folder in package_folders().items():
        target = installed.joinpath(*name.split(".")[1:])
        want = sorted(p.name for p in folder.glob("*.py"))
        have = sorted(p.name for p in target.glob("*.py"))
        assert have == want, f"{name}: installed {have}, source {want} (run `make install`)"


def test_type_marker_ships() -> None:
    assert (Path(longvec.__file__).parent / "py.typed").is_file()


def test_version_comes_from_the_package_metadata() -> None:
    from importlib import metadata

    assert longvec.__version__ == metadata.version("longvec") == PYPROJECT["project"]["version"]


def test_embedder_from_the_top_package_is_the_runtime_one() -> None:
    from longvec.runtime import Embedder

    assert longvec.Embedder is Embedder
    with pytest.raises(AttributeError, match="no attribute 'Embeder'"):
        _ = longvec.Embeder  # type: ignore[attr-defined]


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots |= {a.name.partition(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.partition(".")[0])
    return roots


def test_kernels_import_only_numpy_and_the_standard_library() -> None:
    """import-linter forbids named packages; this checks the allow-list, every import statement included (also
    those inside functions, which a fresh-interpreter import test does not execute)."""
    allowed = {"numpy", "longvec", "__future__", *sys.stdlib_module_names}
    for path in sorted((ROOT / "kernels").rglob("*.py")):
        others = _imported_roots(path) - allowed
        assert not others, f"{path.relative_to(ROOT)} imports {sorted(others)}"
    for path in sorted((ROOT / "kernels").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("longvec."):
                assert node.module.startswith("longvec.kernels"), f"{path.name} imports {node.module}"
