"""The `longvec` command from shared pieces (issue 18 item 3, issue 19 item 1, issue 21 item 5): one table of
exit codes, shown by `--help` and the README; every command that loads a bundle takes the same loading options
(--variant: any variant the bundle holds, --device from the library's DEVICES); defaults are the library's;
subcommands come from an explicit table."""

from __future__ import annotations

import argparse
import ast
import inspect
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from longvec.runtime import Embedder
from longvec.runtime.backends.options import DEVICES
from longvec.runtime.cli import codes
from longvec.runtime.cli.main import COMMANDS, build_parser, main
from longvec.runtime.errors import BackendUnavailable, BundleError

REPO = Path(__file__).resolve().parents[3]
LOADS_A_BUNDLE = ("search", "serve", "embed", "inspect", "bench", "index", "query")


def subparsers() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def option(command: str, flag: str) -> argparse.Action:
    return next(a for a in subparsers()[command]._actions if flag in a.option_strings)


def test_exit_codes_are_complete_and_listed_once() -> None:
    assert [e.code for e in codes.TABLE] == [*range(10), 130, 143]
    errors = [e.error for e in codes.TABLE if e.error is not None]
    assert len(errors) == len(set(errors)) and codes.EXIT_CODES[BackendUnavailable] == 5


def test_longvec_help_lists_every_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    listed = re.search(r"Exit codes: (.*?)\.", text)
    assert listed, text
    assert [int(x.split()[0]) for x in listed.group(1).split(", ")] == [e.code for e in codes.TABLE]


def test_the_readme_table_is_the_code_table() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    start = readme.index("| code | meaning |")
    end = next(i for i in range(start, len(readme)) if not readme[i].startswith("|"))
    assert readme[start:end] == codes.markdown_rows()


@pytest.mark.parametrize("name", LOADS_A_BUNDLE)
def test_every_command_that_loads_a_bundle_takes_device_and_any_variant(name: str) -> None:
    """The choices are the library's DEVICES; the variant is free text (a TensorRT plan's name parses)."""
    assert tuple(option(name, "--device").choices or ()) == DEVICES
    if name == "bench":  # a list of variants, every one the bundle holds by default
        assert option(name, "--variants").choices is None
        return
    variant = option(name, "--variant")
    assert variant.choices is None
    argv = {
        "search": ["b", "f", "q"],
        "serve": ["b"],
        "embed": ["b", "i", "o"],
        "inspect": ["b"],
        "index": ["b", "i", "db"],
        "query": ["db", "q"],
    }[name]
    args = build_parser().parse_args([name, *argv, "--variant", "tensorrt-h200-sm90", "--device", "cuda"])
    assert (args.variant, args.device) == ("tensorrt-h200-sm90", "cuda")


def test_defaults_are_the_librarys() -> None:
    load = inspect.signature(Embedder.load).parameters
    documents = inspect.signature(Embedder.embed_documents).parameters
    for name in ("search", "serve", "embed"):
        assert option(name, "--variant").default == load["variant"].default
        assert option(name, "--device").default == load["device"].default
        assert option(name, "--threads").default == load["threads"].default
        assert option(name, "--window").default == load["window"].default
    for name in ("search", "embed"):
        for flag, param in (("--chunk-tokens", "chunk_tokens"), ("--mode", "mode"), ("--chunking", "chunking")):
            assert option(name, flag).default == documents[param].default, (name, flag)
    assert option("search", "--stride").default == documents["stride"].default


def test_a_variant_the_bundle_lacks_is_named_with_the_bundles_variants(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "doc.txt"
    text.write_text("The keeper trimmed the wick every night. " * 5, encoding="utf-8")
    assert (
        main(["search", str(tiny_bundle), str(text), "wick", "--variant", "tensorrt-h200"])
        == codes.EXIT_CODES[BundleError]
    )
    err = capsys.readouterr().err
    assert "no variant 'tensorrt-h200'" in err and "this bundle has: fp32, optimized" in err


def has_cuda() -> bool:
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


@pytest.mark.skipif(has_cuda(), reason="this checks the refusal on a machine without onnxruntime-gpu")
@pytest.mark.parametrize("name", ["serve", "search"])
def test_device_cuda_without_a_gpu_is_the_typed_error(name: str, tiny_bundle: Path, tmp_path: Path) -> None:
    """Not a usage error (there was no --device) and never a CPU run: BackendUnavailable's one line and code."""
    text = tmp_path / "doc.txt"
    text.write_text("The keeper trimmed the wick every night. " * 5, encoding="utf-8")
    argv = ["serve", tiny_bundle, "--port", "0"] if name == "serve" else ["search", tiny_bundle, text, "wick"]
    done = subprocess.run(
        [sys.executable, "-m", "longvec.runtime.cli", *map(str, argv), "--device", "cuda"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == codes.EXIT_CODES[BackendUnavailable] == 5, done.stderr
    assert done.stderr.startswith("longvec: error: device='cuda'") and done.stderr.count("\n") == 1, done.stderr
    assert "onnxruntime-gpu" in done.stderr


def test_subcommands_come_from_an_explicit_table() -> None:
    """Each subcommand module is an ordinary import of main.py (import-linter and grep see it), none registers
    itself by being imported by name."""
    folder = REPO / "runtime" / "cli"
    for path in folder.glob("*.py"):
        assert "import_module" not in path.read_text(encoding="utf-8"), path
    tree = ast.parse((folder / "main.py").read_text(encoding="utf-8"))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    with_command = {p.stem for p in folder.glob("*.py") if re.search(r"^COMMAND = ", p.read_text(), flags=re.M)}
    assert with_command <= imported, with_command - imported
    assert {c.name for c in COMMANDS.values()} == set(COMMANDS) == set(subparsers())


def test_a_missing_argument_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["export", "model-dir-only"])
    assert info.value.code == 2
    assert "longvec export: error: export needs MODEL_DIR and BUNDLE_DIR" in capsys.readouterr().err


def test_an_unknown_flag_points_at_the_subcommands_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["search", "b", "f", "q", "--sparse-typo"])
    assert info.value.code == 2
    assert "(see longvec search --help)" in capsys.readouterr().err


def test_serve_log_level_help_lists_every_choice(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    described = re.search(r"--log-level \{[^}]*\} (.*?)\(env", text)
    assert described, text
    for level in option("serve", "--log-level").choices or ():
        assert level in described.group(1), level


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 0)])
def test_serve_ctrl_c_is_an_interruption_and_sigterm_a_clean_stop(
    signum: int, code: int, tiny_bundle: Path, free_port: Any
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LONGVEC_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "longvec.runtime.cli", "serve", str(tiny_bundle), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 120
        import urllib.request

        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    assert "Traceback" not in err


def test_readme_says_how_to_install_from_a_checkout() -> None:
    assert "pip install '.[serve]'" in (REPO / "README.md").read_text(encoding="utf-8")


def test_a_finished_job_leaves_no_lock(tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "in.jsonl"
    corpus.write_text("".join(f'{{"id": {i}, "text": "The keeper trimmed wick {i}."}}\n' for i in range(3)))
    assert main(["embed", str(tiny_bundle), str(corpus), str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "_progress.json").is_file() and not (tmp_path / "out" / "_lock").exists()
    assert main(["embed", str(tiny_bundle), str(corpus), str(tmp_path / "out")]) == 0  # a rerun: nothing to do
    assert not (tmp_path / "out" / "_lock").exists()
    capsys.readouterr()


def test_search_stride_and_threads_reach_the_library(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "doc.txt"
    text.write_text("The keeper trimmed the wick every night and wound the clockwork. " * 40, encoding="utf-8")
    base = ["search", str(tiny_bundle), str(text), "wick", "--mode", "late", "--threads", "1"]
    windows = []
    for extra in ([], ["--stride", "8"]):
        assert main([*base, *extra]) == 0
        windows.append(int(re.search(r"(\d+) windows", capsys.readouterr().out).group(1)))  # type: ignore[union-attr]
    with Embedder.load(tiny_bundle, threads=1) as emb:
        [doc] = emb.embed_documents([text.read_text(encoding="utf-8")], mode="late", stride=8)
    assert windows[1] == doc.n_windows > windows[0]
