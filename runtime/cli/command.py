"""What a subcommand is: its name, its arguments and what it runs. The table of them is `main.COMMANDS`, written
out by hand, so every subcommand module is an ordinary import that tools (import-linter, grep) see."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn


@dataclass(frozen=True)
class Command:
    name: str
    summary: str  # one line, shown in `longvec --help`
    add_args: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def usage_error(args: argparse.Namespace, message: str) -> NoReturn:
    """A usage mistake the parser could not see (arguments that go together): the parser's own one line and exit 2,
    pointing at the subcommand's help."""
    parser: argparse.ArgumentParser = args.parser
    parser.error(message)
