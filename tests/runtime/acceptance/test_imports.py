"""Import weight, checked in a fresh interpreter: the runtime never pulls in the export stack, kernels only numpy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXPORT_STACK = {"torch", "transformers", "onnx", "sentence_transformers", "onnxscript", "safetensors"}

_LOADED = """
import json, sys
{body}
print(json.dumps(sorted({{name.partition(".")[0] for name in sys.modules}})))
"""


def loaded_top_level(body: str) -> set[str]:
    """Top-level names of every module a fresh interpreter has imported after running `body`."""
    done = subprocess.run(
        [sys.executable, "-c", _LOADED.format(body=body)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_runtime_embeds_without_the_export_stack(tiny_bundle: Path) -> None:
    loaded = loaded_top_level(
        f"""
import longvec.runtime
from longvec.runtime import Embedder
with Embedder.load({str(tiny_bundle)!r}, threads=1) as emb:
    assert emb.embed(["import weight"]).shape == (1, emb.dim)
    emb.embed_documents(["a document " * 100], chunk_tokens=16)
"""
    )
    assert {"onnxruntime", "tokenizers", "numpy"} <= loaded  # the test did load and run a bundle
    assert not loaded & EXPORT_STACK, sorted(loaded & EXPORT_STACK)


def test_kernels_import_only_numpy() -> None:
    loaded = loaded_top_level("import longvec.kernels")
    third_party = {n for n in loaded - set(sys.stdlib_module_names) if not n.startswith("_")}
    assert third_party == {"longvec", "numpy"}, sorted(third_party)


def test_top_package_is_light_and_gives_the_embedder_on_demand() -> None:
    """`import longvec` (which every `import longvec.export` / `.kernels` runs first) loads no engine or array
    library; `longvec.__version__` needs only the package metadata; `from longvec import Embedder` then works."""
    light = loaded_top_level("import longvec\nassert longvec.__version__")
    assert not light & {"numpy", "onnxruntime", "tokenizers", *EXPORT_STACK}, sorted(light)
    full = loaded_top_level("from longvec import Embedder\nassert Embedder.load")
    assert {"numpy", "tokenizers"} <= full and not full & EXPORT_STACK, sorted(full & EXPORT_STACK)


OPTIONAL_HEAVY = {"fastapi", "uvicorn", "starlette", "pyarrow", "ray", "snowballstemmer", "tensorrt"}


def test_cli_imports_only_what_the_command_needs(tiny_bundle: Path) -> None:
    """Every subcommand registers itself, yet `longvec inspect` loads neither torch nor a server or batch stack."""
    loaded = loaded_top_level(
        f"""
from longvec.runtime.cli.main import COMMANDS, build_parser, main
import contextlib, io
build_parser()  # registers the optional subcommands too
assert {{"export", "inspect", "search"}} <= set(COMMANDS)
with contextlib.redirect_stdout(io.StringIO()):
    assert main(["inspect", {str(tiny_bundle)!r}]) == 0
"""
    )
    assert not loaded & (EXPORT_STACK | OPTIONAL_HEAVY), sorted(loaded & (EXPORT_STACK | OPTIONAL_HEAVY))
