"""`longvec serve` options: every flag readable from the environment, flags win, bad values are usage errors,
and a bad bundle fails before any port is opened."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from longvec.runtime import BundleError, Embedder
from longvec.runtime.cli.main import EXIT_CODES, build_parser, main
from longvec.runtime.errors import AddressInUse


def test_every_flag_has_an_environment_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag, env in [
        ("--host", "LONGVEC_HOST"),
        ("--port", "LONGVEC_PORT"),
        ("--api-key", "LONGVEC_API_KEY"),
        ("--max-batch-tokens", "LONGVEC_MAX_BATCH_TOKENS"),
        ("--max-queue", "LONGVEC_MAX_QUEUE"),
        ("--max-request-tokens", "LONGVEC_MAX_REQUEST_TOKENS"),
        ("--max-items", "LONGVEC_MAX_ITEMS"),
        ("--max-body-bytes", "LONGVEC_MAX_BODY_BYTES"),
        ("--variant", "LONGVEC_VARIANT"),
        ("--threads", "LONGVEC_THREADS"),
        ("--window", "LONGVEC_WINDOW"),
    ]:
        assert flag in text and f"env {env}" in text, flag
    assert "default 127.0.0.1" in text


def test_environment_then_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LONGVEC_MAX_QUEUE", "7")
    monkeypatch.setenv("LONGVEC_API_KEY", "from-env")
    monkeypatch.setenv("LONGVEC_PORT", "9001")
    args = build_parser().parse_args(["serve", "b", "--port", "9002"])
    assert (args.max_queue, args.api_key, args.port, args.host) == (7, "from-env", 9002, "127.0.0.1")


def test_key_from_environment_is_not_printed_in_help(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LONGVEC_API_KEY", "s3cret-value")
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert "s3cret-value" not in capsys.readouterr().out


def test_bad_environment_value_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LONGVEC_PORT", "eighty")
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "b"])
    assert exit_info.value.code == 2


def test_bad_bundle_or_limits_fail_before_serving(
    tmp_path: Path, bundle_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", str(tmp_path / "missing")]) == 3
    assert "bundle directory does not exist" in capsys.readouterr().err
    assert main(["serve", str(bundle_dir), "--max-queue", "0"]) == 4
    assert "--max-queue must be positive" in capsys.readouterr().err
    assert main(["serve", str(bundle_dir), "--variant", "int8"]) == 3  # a variant name this bundle lacks
    assert main(["serve", str(bundle_dir), "--window", "4096"]) == 4


def replace_file(bundle: Path, name: str, content: bytes, edit_manifest: Any) -> Path:
    """Replace one file of a bundle copy and update its checksum, so the bundle "loads fine" until it is used."""
    (bundle / name).write_bytes(content)
    edit_manifest(bundle, lambda raw: raw["files"].__setitem__(name, hashlib.sha256(content).hexdigest()))
    return bundle


@pytest.fixture
def run_cli(longvec_cli: list[str]) -> Any:
    """The command in a subprocess, with the environment's LONGVEC_* settings replaced by `env`."""

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("LONGVEC_")}
        return subprocess.run(
            [*longvec_cli, *args], capture_output=True, text=True, timeout=120, env={**clean, **(env or {})}
        )

    return run


@pytest.mark.parametrize("content", [b"{}", b"", b"[]", b'{"model": {}}'], ids=["empty-object", "empty", "list", "bad"])
def test_a_bad_tokenizer_is_a_bundle_error(bundle: Path, edit_manifest: Any, run_cli: Any, content: bytes) -> None:
    """Finding 7: a tokenizer.json of {} raised tokenizers' raw "Model missing"; `serve` exited 1 with a traceback.
    Now the library raises BundleError naming the file, and `serve` exits 3 with one line, before opening a port."""
    bad = replace_file(bundle, "tokenizer.json", content, edit_manifest)
    with pytest.raises(BundleError, match=r"tokenizer\.json: not a usable tokenizers file"):
        Embedder.load(bad)
    done = run_cli("serve", str(bad), "--port", "0")
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("longvec: error: ") and "tokenizer.json" in lines[0], done.stderr


def test_a_graph_that_fails_to_load_exits_with_the_bundle_code(bundle: Path, edit_manifest: Any, run_cli: Any) -> None:
    """A model file that is not ONNX (checksum updated) fails when the server loads it, after the port opened:
    the process still exits 3, with no traceback."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    optimized = next(v for v in manifest["variants"] if v["name"] == "optimized")
    graph = optimized.get("pooled_file") or optimized["file"]  # the graph the server loads by default
    bad = replace_file(bundle, graph, b"not an onnx graph", edit_manifest)
    done = run_cli("serve", str(bad), "--port", "0")
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.strip().splitlines()[-1].startswith("longvec: error: ")


def test_an_empty_api_key_is_refused(bundle_dir: Path, run_cli: Any) -> None:
    done = run_cli("serve", str(bundle_dir), "--port", "0", env={"LONGVEC_API_KEY": ""})
    assert done.returncode == 4 and done.stderr.strip().splitlines() == [
        "longvec: error: the API key is empty (LONGVEC_API_KEY= or --api-key ''); set a key, or unset it"
    ], done.stderr


def test_a_non_loopback_address_needs_a_key_or_no_auth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Checked before the bundle and before binding: the test never listens on anything but 127.0.0.1."""
    assert main(["serve", str(tmp_path / "missing"), "--host", "0.0.0.0"]) == 4
    assert "--no-auth" in capsys.readouterr().err
    # with --no-auth (or a key) the auth rule passes, and the missing bundle is the next error
    assert main(["serve", str(tmp_path / "missing"), "--host", "0.0.0.0", "--no-auth"]) == 3
    assert main(["serve", str(tmp_path / "missing"), "--host", "0.0.0.0", "--api-key", "k"]) == 3
    assert main(["serve", str(tmp_path / "missing"), "--host", "::1"]) == 3  # loopback needs neither
    capsys.readouterr()


def test_a_port_in_use_is_one_line_and_its_own_exit_code(bundle_dir: Path, run_cli: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_cli("serve", str(bundle_dir), "--port", str(port))
    assert done.returncode == 9, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"longvec: error: 127.0.0.1:{port} is already in use by another process; choose another --port"
    ]
    assert EXIT_CODES[AddressInUse] == 9
