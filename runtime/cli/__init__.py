"""The `longvec` command: `main` dispatches to one module per subcommand."""

from longvec.runtime.cli.main import main

__all__ = ["main"]
