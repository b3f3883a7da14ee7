"""The README's Python examples run as written: every ```python block, in order, in one namespace (as a reader
pastes them into one session), from a folder that holds the bundle at `bundles/all-MiniLM-L6-v2` (the MiniLM
bundle of this run) and the repository's `examples/`.

Two blocks need more than the library:
- the `openai` client block runs against the test server (tests/runtime/conftest.py): its address, key and model
  name are substituted for the README's `127.0.0.1:8080`, `secret` and `all-MiniLM-L6-v2`;
- the Ray block is skipped: it needs a Ray instance (tens of seconds to start). Its EmbedActor is run by
  tests/runtime/jobs/test_jobs_ray.py, in a Ray Data pipeline like the block's.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
README = REPO / "README.md"
SKIPPED = {"import ray": "needs a Ray instance; EmbedActor in Ray Data is tests/runtime/jobs/test_jobs_ray.py"}
NEEDS_SERVER = "from openai import OpenAI"


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.S | re.M)


def test_the_readme_has_python_blocks_and_only_known_ones_are_skipped() -> None:
    blocks = python_blocks()
    assert len(blocks) >= 4
    skipped = [b for b in blocks if any(marker in b for marker in SKIPPED)]
    assert len(skipped) == len(SKIPPED), "a skip reason names a block that is no longer in the README"


@pytest.fixture
def reader_folder(bundle_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "bundles").mkdir()
    (tmp_path / "bundles" / "all-MiniLM-L6-v2").symlink_to(bundle_dir.resolve(), target_is_directory=True)
    (tmp_path / "examples").symlink_to(REPO / "examples", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_python_block_runs(reader_folder: Path, server: Any) -> None:
    namespace: dict[str, Any] = {"__name__": "readme"}
    ran = 0
    for number, block in enumerate(python_blocks(), 1):
        if any(marker in block for marker in SKIPPED):
            continue
        code = block
        if NEEDS_SERVER in block:
            code = code.replace("http://127.0.0.1:8080", server.url).replace('"secret"', repr(server.api_key))
            code = code.replace('"all-MiniLM-L6-v2"', repr(server.model))
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
                exec(compile(code, f"README.md python block {number}", "exec"), namespace)
        except Exception as e:
            raise AssertionError(f"README python block {number} failed: {e!r}\n{block}") from e
        ran += 1
        if "print(doc)" in block:  # the repr the README shows is the one it prints
            shown = re.search(r"print\(doc\)  # (.*)", block)
            assert shown and shown.group(1) in out.getvalue(), out.getvalue()
    assert ran == len(python_blocks()) - len(SKIPPED)
    assert os.getcwd() == str(reader_folder)
