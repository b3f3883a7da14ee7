"""`longvec serve` options: every flag readable from the environment, flags win, bad values are usage errors,
and a bad bundle fails before any port is opened."""

from __future__ import annotations

from pathlib import Path

import pytest

from longvec.runtime.cli.main import build_parser, main


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
