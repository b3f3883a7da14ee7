"""The `longvec` command helps: every option of every subcommand is described and shows its default, closed sets
are `choices` (a typo fails before anything loads), and the common mistakes end in one line on stderr with the
documented exit code (runtime/cli/main.py), never a traceback."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from longvec.runtime.cli.main import build_parser, main


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_subcommand_is_described_in_longvec_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for name in _subparsers():
        line = next((x for x in out.splitlines() if x.strip().startswith(name + " ")), "")
        assert len(line.split()) > 3, f"{name} has no description in longvec --help"


@pytest.mark.parametrize("name", sorted(_subparsers()))
def test_every_option_has_help_and_shows_its_default(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    parser = _subparsers()[name]
    with pytest.raises(SystemExit) as info:
        main([name, "--help"])
    assert info.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        label = action.option_strings[0] if action.option_strings else action.dest
        assert action.help and action.help.strip(), f"longvec {name} {label} has no help text"
        assert label in shown, f"longvec {name} --help does not show {label}"
        if action.option_strings:
            assert "default" in action.help.lower(), f"longvec {name} {label} does not show its default"


@pytest.mark.parametrize(
    ("name", "flag", "choices"),
    [
        ("search", "--mode", {"auto", "late", "naive", "blend", "window_mean", "truncate"}),
        ("search", "--chunking", {"tokens", "sentences", "paragraphs"}),
        ("search", "--device", {"cpu", "cuda", "auto"}),
        ("embed", "--mode", {"auto", "late", "naive", "blend", "window_mean", "truncate"}),
        ("embed", "--chunking", {"tokens", "sentences", "paragraphs"}),
        ("embed", "--device", {"cpu", "cuda", "auto"}),
        ("embed", "--engine", {"local", "ray"}),
        ("serve", "--log-level", {"critical", "error", "warning", "info", "debug", "trace"}),
        ("serve", "--device", {"cpu", "cuda", "auto"}),
        ("inspect", "--device", {"cpu", "cuda", "auto"}),
    ],
)
def test_closed_sets_are_choices(name: str, flag: str, choices: set[str]) -> None:
    action = next(a for a in _subparsers()[name]._actions if flag in a.option_strings)
    assert set(action.choices or ()) == choices


def test_the_default_chunking_is_the_same_everywhere() -> None:
    import inspect

    from longvec.runtime import Embedder
    from longvec.runtime.jobs.local import JobOptions
    from longvec.runtime.server.schema import DocumentsRequest

    library = inspect.signature(Embedder.embed_documents).parameters["chunking"].default
    cli = {
        name: next(a for a in _subparsers()[name]._actions if "--chunking" in a.option_strings).default
        for name in ("search", "embed")
    }
    assert cli == {"search": library, "embed": library}
    assert JobOptions().chunking == library == DocumentsRequest.model_fields["chunking"].default


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("longvec ")


def longvec(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """A fresh process, as a user runs it: stderr is exactly what they see."""
    return subprocess.run(
        [sys.executable, "-m", "longvec.runtime.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        check=False,
    )


@pytest.fixture
def latin1(tmp_path: Path) -> Path:
    path = tmp_path / "latin1.txt"
    path.write_bytes("Café au lait, crème brûlée. ".encode("latin-1") * 10)
    return path


@pytest.mark.parametrize(
    ("case", "code", "says"),
    [
        ("search: missing input file", 4, "no such file"),
        ("search: a non-UTF-8 file", 4, "not UTF-8"),
        ("search: a typo in --mode", 2, "invalid choice: 'lat'"),
        (
            "search: an unknown --prompt-name",
            4,
            "unknown prompt_name 'qurey'; this bundle's prompts: 'passage', 'query'",
        ),
        ("embed: missing input file", 4, "no such file or directory"),
        ("embed: a non-UTF-8 JSONL line", 4, "every document failed"),
        ("serve: a bad log level", 2, "invalid choice: 'loud'"),
        ("export: a hub id", 6, "looks like a model hub id"),
        ("export: a bundle folder under a file", 8, "a-file"),
        ("inspect: no bundle", 3, "bundle directory does not exist"),
    ],
)
def test_common_mistakes_are_one_line_and_a_documented_exit_code(
    case: str, code: int, says: str, tiny_bundle: Path, latin1: Path, tmp_path: Path, tiny_export: Any
) -> None:
    (tmp_path / "a-file").write_text("a file, not a folder")
    missing = tmp_path / "missing.txt"
    document = tmp_path / "doc.txt"
    document.write_text("The keeper trimmed the wick every night. " * 20, encoding="utf-8")
    argv: list[str | Path] = {
        "search: missing input file": ["search", tiny_bundle, missing, "query"],
        "search: a non-UTF-8 file": ["search", tiny_bundle, latin1, "query"],
        "search: a typo in --mode": ["search", tiny_bundle, latin1, "query", "--mode", "lat"],
        "search: an unknown --prompt-name": ["search", tiny_bundle, document, "query", "--prompt-name", "qurey"],
        "embed: missing input file": ["embed", tiny_bundle, tmp_path / "missing.jsonl", tmp_path / "out"],
        "embed: a non-UTF-8 JSONL line": ["embed", tiny_bundle, tmp_path / "bad.jsonl", tmp_path / "out"],
        "serve: a bad log level": ["serve", tiny_bundle, "--log-level", "loud"],
        "export: a hub id": ["export", "sentence-transformers/all-MiniLM-L6-v2", tmp_path / "bundle"],
        "export: a bundle folder under a file": ["export", tiny_export("bert")[0], tmp_path / "a-file" / "bundle"],
        "inspect: no bundle": ["inspect", tmp_path / "nowhere"],
    }[case]
    if case == "embed: a non-UTF-8 JSONL line":
        good = json.dumps({"id": 1, "text": "x"}).encode()
        (tmp_path / "bad.jsonl").write_bytes(good.replace(b'"x"', b'"caf\xe9"') + b"\n")
    done = longvec(*argv)
    assert done.returncode == code, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.endswith("\n"), done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr


def test_a_reader_that_leaves_early_is_not_an_error(tiny_bundle: Path) -> None:
    """`longvec inspect B | head -1`: the pipe closes before the command writes; no traceback, exit 0."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "longvec.runtime.cli", "inspect", str(tiny_bundle)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    proc.stdout.close()  # before the interpreter has even started: its first write meets a closed pipe
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and err == b"", err.decode()
