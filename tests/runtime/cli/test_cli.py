"""The `longvec` command end to end (export, inspect, search) and its exit-code table (runtime/cli/main.py)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from longvec.runtime import Embedder
from longvec.runtime.bundle.manifest import Manifest
from longvec.runtime.cli.main import main

TinyExport = Callable[[str], tuple[Path, Path]]
RunLongvec = Callable[..., subprocess.CompletedProcess[str]]


def test_export_then_inspect(tiny_export: TinyExport, tmp_path: Path, run_longvec: RunLongvec) -> None:
    model_dir = tiny_export("mpnet")[0]
    out = tmp_path / "bundle"
    done = run_longvec("export", model_dir, out, "--variants", "optimized")
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}: mpnet (fp32, optimized)" in done.stdout  # the model directory's name
    assert done.stderr == ""  # other libraries' progress bars and warnings stay quiet without --verbose
    assert "parity optimized: max|diff|" in done.stdout

    shown = run_longvec("inspect", out)
    assert shown.returncode == 0, shown.stderr
    assert "architecture mpnet, hidden size 32, inputs input_ids, attention_mask" in shown.stdout
    assert "window       64 positions" in shown.stdout
    assert "pooling      mean, normalize=True" in shown.stdout
    assert "model.optimized.onnx" in shown.stdout and "vs torch" in shown.stdout

    as_json = run_longvec("inspect", out, "--json")
    assert as_json.returncode == 0, as_json.stderr
    on_disk = Manifest.from_json((out / "manifest.json").read_text(encoding="utf-8"), out / "manifest.json")
    assert Manifest.from_json(as_json.stdout, out / "manifest.json") == on_disk
    with Embedder.load(out, threads=1) as emb:
        assert emb.embed(["the exported bundle works"]).shape == (1, 32)


def test_export_name_and_verbose(tiny_export: TinyExport, tmp_path: Path, run_longvec: RunLongvec) -> None:
    """--name is recorded and shown; --verbose lets other libraries speak (onnxruntime's quantization advice),
    which the default keeps quiet."""
    model_dir = tiny_export("bert")[0]
    quiet = run_longvec("export", model_dir, tmp_path / "a", "--variants", "int8", "--name", "my-org/tiny-encoder")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""
    manifest = Manifest.from_json((tmp_path / "a" / "manifest.json").read_text(), tmp_path / "a")
    assert manifest.name == "my-org/tiny-encoder"
    assert run_longvec("inspect", tmp_path / "a").stdout.startswith("model        my-org/tiny-encoder  (weights ")
    loud = run_longvec("export", model_dir, tmp_path / "b", "--variants", "int8", "--verbose")
    assert loud.returncode == 0, loud.stderr
    assert "quantization" in loud.stderr


def test_bundle_error_exits_3_without_a_traceback(tmp_path: Path, run_longvec: RunLongvec) -> None:
    done = run_longvec("inspect", tmp_path / "missing")
    assert done.returncode == 3
    assert done.stderr.startswith("longvec: error: ") and "missing" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture
def document(tmp_path: Path) -> Path:
    path = tmp_path / "doc.txt"
    path.write_text("The keeper trimmed the wick. " * 40, encoding="utf-8")
    return path


def _code(argv: list[str | Path], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def test_search_succeeds(bundle: Path, document: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", str(bundle), str(document), "lamp wick", "--chunk-tokens", "16"]) == 0
    out = capsys.readouterr().out
    assert "1. score" in out and "chars" in out


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing bundle", 3),
        ("checksum", 3),
        ("schema", 3),
        ("unsafe path", 3),
        ("unknown variant", 3),
        ("blank query", 4),
        ("bad chunk size", 4),
        ("tensorrt here", 5),
        ("export into non-empty dir", 6),
        ("export incomplete model", 6),
    ],
)
def test_exit_codes(
    case: str,
    expected: int,
    bundle: Path,
    document: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    edit_manifest: Callable[..., None],
) -> None:
    search: list[str | Path] = ["search", bundle, document, "lamp"]
    if case == "missing bundle":
        search[1] = tmp_path / "nowhere"
    elif case == "checksum":
        (bundle / "tokenizer.json").write_text("{}", encoding="utf-8")
    elif case == "schema":
        edit_manifest(bundle, lambda m: m.__setitem__("schema_version", 2))
    elif case == "unsafe path":
        edit_manifest(bundle, lambda m: m.__setitem__("tokenizer_file", "/etc/passwd"))
    elif case == "unknown variant":
        search += ["--variant", "int8"]  # a known variant name that this bundle does not hold
    elif case == "blank query":
        search[3] = "   "
    elif case == "bad chunk size":
        search += ["--chunk-tokens", "0"]
    elif case == "tensorrt here":
        edit_manifest(bundle, lambda m: m["variants"][1].__setitem__("engine", "tensorrt"))
    elif case == "export into non-empty dir":
        search = ["export", tmp_path / "model", bundle]
    elif case == "export incomplete model":
        (tmp_path / "model").mkdir()
        search = ["export", tmp_path / "model", tmp_path / "new-bundle"]
    code, err = _code(search, capsys)
    assert code == expected, err
    assert err.startswith("longvec: error: ")


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["inspect"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["no-such-command"])
    assert info.value.code == 2
