"""The `longvec` command: the table of subcommands, the parser, and `main`, which maps errors to the exit codes of
runtime/cli/codes.py (tracebacks are for bugs only)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from longvec.runtime.cli import bench, build_engine, embed, export, index, inspect_bundle, query, search, serve
from longvec.runtime.cli.codes import EXIT_CODES, INTERRUPTED, exit_code, help_line
from longvec.runtime.cli.command import Command
from longvec.runtime.cli.inputs import read_text_file
from longvec.runtime.errors import LongvecError, OutputError

__all__ = ["COMMANDS", "EXIT_CODES", "build_parser", "exit_code", "main", "read_text_file"]


# Every subcommand, in the order `longvec --help` lists them.
COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        export.COMMAND,
        inspect_bundle.COMMAND,
        search.COMMAND,
        serve.COMMAND,
        embed.COMMAND,
        bench.COMMAND,
        build_engine.COMMAND,
        index.COMMAND,
        query.COMMAND,
    )
}


class _HelpFormatter(argparse.HelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=110)

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if isinstance(action, argparse._SubParsersAction):
            # argparse measures subcommand names one indent short, so the longest (build-engine) would wrap
            self._action_max_length += 2


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (what was wrong and where to look), exit 2, instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("longvec")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="longvec",
        description="Embed documents of any length: export a model once, then embed, search, serve and benchmark "
        f"it without torch. {help_line()}",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"longvec {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.summary, description=command.summary, formatter_class=_HelpFormatter)
        command.add_args(p)
        p.set_defaults(run=command.run, parser=p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, extra = build_parser().parse_known_args(argv)
    if extra:  # said by the subcommand's parser, so the message points at `longvec COMMAND --help`
        args.parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.argv = argv
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:  # `longvec inspect B | head`: the reader left, which is not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 0
    except LongvecError as e:
        print(f"longvec: error: {e}", file=sys.stderr)
        return exit_code(e)
    except OSError as e:  # the file system refused (read-only, disk full, permissions): not a bug of ours
        where = f"{e.filename}: " if e.filename else ""
        print(f"longvec: error: {where}{e.strerror or e}", file=sys.stderr)
        return EXIT_CODES[OutputError]
