"""The `longvec` exit codes: the one table. `longvec --help` and the README's table are generated from it (the
README's is checked by tests/runtime/cli/test_cli_options.py); `main` maps an error to its code through it."""

from __future__ import annotations

from dataclasses import dataclass

from longvec.runtime.errors import (
    AddressInUse,
    BackendUnavailable,
    BundleError,
    ExportError,
    InputError,
    LongvecError,
    OutputError,
    VariantsRefused,
)


@dataclass(frozen=True)
class ExitCode:
    code: int
    short: str  # for the one-line list in `longvec --help`
    meaning: str  # for the README's table
    error: type[LongvecError] | None = None  # the error class it stands for, when one does


TABLE: tuple[ExitCode, ...] = (
    ExitCode(0, "ok", "success"),
    ExitCode(1, "a bug", "a bug (the only case with a traceback)"),
    ExitCode(
        2,
        "usage",
        "usage: unknown flag, a missing argument, a value not among the choices (e.g. `--log-level loud`)",
    ),
    ExitCode(
        3,
        "bundle",
        "bundle: missing file, checksum, schema, unsafe path, a variant the bundle does not hold",
        BundleError,
    ),
    ExitCode(
        4,
        "input",
        "input: bad text, span or option; an input file missing or not UTF-8; a wrong `--text-field`; every "
        "document of a job failed",
        InputError,
    ),
    ExitCode(
        5,
        "missing dependency or device",
        "a missing optional dependency or device, e.g. `--device cuda` without a GPU or onnxruntime-gpu (the "
        "message says what to install)",
        BackendUnavailable,
    ),
    ExitCode(
        6,
        "export",
        "export: unreadable model directory, a hub id instead of a directory, fp32 parity failure",
        ExportError,
    ),
    ExitCode(
        7,
        "export refused a variant",
        "export wrote the bundle but left out a variant that failed its parity gate",
        VariantsRefused,
    ),
    ExitCode(
        8,
        "a file cannot be written",
        "a file cannot be written: a batch job's output, an export's bundle folder (not a directory, read-only, "
        "disk full)",
        OutputError,
    ),
    ExitCode(9, "address in use", "the server cannot listen: its address is in use", AddressInUse),
    ExitCode(130, "interrupted", "interrupted (Ctrl-C, `serve` included; SIGTERM stops `serve` gracefully with 0)"),
    ExitCode(143, "job terminated", "a batch job stopped by SIGTERM (cleanly: rerun to resume)"),
)
EXIT_CODES: dict[type[LongvecError], int] = {e.error: e.code for e in TABLE if e.error is not None}
USAGE = 2
BUG = 1
INTERRUPTED = 130


def exit_code(error: LongvecError) -> int:
    """The code of the most specific class in the table (VariantsRefused before ExportError)."""
    return next((EXIT_CODES[t] for t in type(error).__mro__ if t in EXIT_CODES), BUG)


def help_line() -> str:
    return "Exit codes: " + ", ".join(f"{e.code} {e.short}" for e in TABLE) + "."


def markdown_rows() -> list[str]:
    """The README's table, row by row."""
    return ["| code | meaning |", "|---|---|", *(f"| {e.code} | {e.meaning} |" for e in TABLE)]
