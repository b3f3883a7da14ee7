"""The `longvec` command. Errors map to exit codes in one table; tracebacks are for bugs only.

exit 0  success
exit 1  unexpected error (a bug: traceback printed)
exit 2  usage error (argparse: unknown flag, a value not among the choices, a bad log level)
exit 3  bundle error (missing file, checksum, schema, unsafe path, unknown variant)
exit 4  input error (bad text, span or option; an input file missing or not UTF-8; every document of a job failed)
exit 5  backend unavailable (an optional dependency is not installed)
exit 6  export error (unreadable model directory, a hub id instead of a directory, fp32 parity failure)
exit 7  export wrote the bundle but refused a variant that failed its parity gate (the message names it)
exit 8  a file cannot be written (a batch job's output, an export's bundle): not a directory, read-only, disk full
exit 9  the server cannot listen (address in use)
exit 130 interrupted
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from longvec.runtime.core.chunking import CHUNKINGS as LIBRARY_CHUNKINGS
from longvec.runtime.embedder import DEFAULT_CHUNKING, MODES  # noqa: F401 (the subcommand modules take them from here)
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

EXIT_CODES: dict[type[LongvecError], int] = {
    BundleError: 3,
    InputError: 4,
    BackendUnavailable: 5,
    ExportError: 6,
    VariantsRefused: 7,
    OutputError: 8,
    AddressInUse: 9,
}
# The variant names `longvec export` writes; --variant takes one of them (a bundle may hold fewer).
VARIANT_NAMES: tuple[str, ...] = ("fp32", "optimized", "int8", "fp16")
# The library's own modes and default chunking (`search` and `embed` share them); caller spans are library-only.
CHUNKINGS: tuple[str, ...] = tuple(c for c in LIBRARY_CHUNKINGS if c != "spans")

Command = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Command]] = {}


def command(name: str, add_args: Callable[[argparse.ArgumentParser], None]) -> Callable[[Command], Command]:
    def register(fn: Command) -> Command:
        COMMANDS[name] = (add_args, fn)
        return fn

    return register


def exit_code(error: LongvecError) -> int:
    """The code of the most specific class in the table (VariantsRefused before ExportError)."""
    return next((EXIT_CODES[t] for t in type(error).__mro__ if t in EXIT_CODES), 1)


def read_text_file(path: Path) -> str:
    """A UTF-8 text file, or an InputError that says which of the usual mistakes it is."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a text file") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); convert it, e.g. with iconv") from None


def add_prompt_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--prompt-name",
        default=None,
        help="a prompt of the bundle by name, e.g. query (see `longvec inspect`); default: the bundle's default "
        "prompt, if it has one",
    )
    p.add_argument(
        "--prompt",
        default=None,
        help="literal text put before every text, e.g. 'query: '; --prompt '' turns the bundle's default prompt "
        "off (default: none)",
    )


def _export_args(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Export a local Hugging Face / sentence-transformers model directory to a bundle. Nothing is downloaded: "
        "get the directory first (e.g. `hf download ORG/MODEL --local-dir DIR` on a machine with network access)."
    )
    p.add_argument("model_dir", type=Path, nargs="?", help="local Hugging Face / sentence-transformers model directory")
    p.add_argument(
        "bundle_dir", type=Path, nargs="?", help="where to write the bundle (new or empty, or use --overwrite)"
    )
    p.add_argument(
        "--add-pooled",
        type=Path,
        metavar="BUNDLE",
        help="give an existing bundle the pooled graph of every variant (no torch needed), instead of exporting "
        "(default: off)",
    )
    p.add_argument(
        "--variants",
        default=None,
        help="comma-separated from optimized,int8,fp16; fp32 is always written (default: optimized)",
    )
    p.add_argument(
        "--name",
        default=None,
        help="the model's name in the bundle, served and shown by inspect (default: the id its model card gives, "
        "else the model directory's name)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle directory (default: off)")
    p.add_argument(
        "--verbose",
        action="store_true",
        help="keep the progress bars and warnings of transformers and onnxruntime (default: off)",
    )


@command("export", _export_args)
def _export(args: argparse.Namespace) -> int:
    """Export a local model directory to a bundle (needs the export extra: torch)."""
    if args.add_pooled is not None:
        if args.model_dir is not None:
            raise InputError("--add-pooled BUNDLE takes no MODEL_DIR / BUNDLE_DIR")
        try:
            from longvec.export.pooled import add_pooled
        except ImportError as e:
            raise BackendUnavailable(f"--add-pooled needs onnx: pip install onnx ({e})") from e
        manifest = add_pooled(args.add_pooled, log=print)
        print(f"{args.add_pooled}: pooled graphs {', '.join(str(v.pooled_file) for v in manifest.variants)}")
        return 0
    if args.model_dir is None or args.bundle_dir is None:
        raise InputError("export needs MODEL_DIR and BUNDLE_DIR (or --add-pooled BUNDLE)")
    try:
        from longvec.export import DEFAULT_VARIANTS, export_bundle
    except ImportError as e:
        raise BackendUnavailable(f"export needs torch: pip install 'longvec[export]' ({e})") from e
    variants = tuple(v for v in args.variants.split(",") if v) if args.variants else DEFAULT_VARIANTS
    manifest = export_bundle(
        args.model_dir, args.bundle_dir, variants, args.overwrite, log=print, name=args.name, quiet=not args.verbose
    )
    print(f"wrote {args.bundle_dir}: {manifest.name} ({', '.join(v.name for v in manifest.variants)})")
    return 0


def _inspect_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle_dir", type=Path, nargs="?", help="a bundle written by `longvec export`")
    p.add_argument("--json", action="store_true", help="print manifest.json as is (default: a summary)")
    p.add_argument(
        "--runtime",
        action="store_true",
        help="print the onnxruntime build, version and providers, GPU or CPU (default: off)",
    )
    p.add_argument(
        "--device",
        choices=("cpu", "cuda", "auto"),
        default=None,
        help="with a bundle: load it on this device and say what runs (default: do not load)",
    )


@command("inspect", _inspect_args)
def _inspect(args: argparse.Namespace) -> int:
    """Print a bundle's model, dimensions, window, framing, pooling, prompts and variants with their parity."""
    from longvec.runtime.bundle.defaults import resolve as resolve_defaults
    from longvec.runtime.bundle.reader import Bundle

    if args.runtime:
        _print_runtime()
    if args.bundle_dir is None:
        if not args.runtime:  # a usage error, as when argparse itself refuses the arguments (exit 2)
            print(
                "usage: longvec inspect BUNDLE_DIR [--json] [--device D] | longvec inspect --runtime", file=sys.stderr
            )
            raise SystemExit(2)
        return 0
    bundle = Bundle.open(args.bundle_dir)
    m = bundle.manifest
    if args.json:
        print(m.to_json(), end="")
        return 0
    framing = f"{list(m.framing.prefix_ids)} … {list(m.framing.suffix_ids)}"
    weights = f"weights {m.source.name}, " if m.source.name != bundle.model_name else ""
    prompts = ", ".join(f"{k}={v!r}" for k, v in m.prompts.items()) or "none"
    print(f"model        {bundle.model_name}  ({weights}sha256 {m.source.revision[:12]})")
    print(f"architecture {m.architecture}, hidden size {m.hidden_size}, inputs {', '.join(m.input_names)}")
    print(f"window       {m.max_positions} positions (trained on {m.trained_max_tokens}), framing {framing}")
    print(f"pooling      {m.pooling.mode}, normalize={m.pooling.normalize}, include_prompt={m.pooling.include_prompt}")
    print(f"prompts      {prompts}; default {m.default_prompt or 'none'}")
    d = resolve_defaults(m)
    print(
        f"defaults     mode {d.mode}, window {d.window}, stride {d.stride_fraction:g} x content "
        f"({'recorded in the bundle' if d.source == 'bundle' else 'by rule from the trained length'}; "
        "embed_documents(mode=..., window=..., stride=...) overrides)"
    )
    print("variants")
    for v in m.variants:
        p = v.parity
        print(
            f"  {v.name:<10} {v.file:<24} {v.precision:<5} vs {p.reference}: max|diff| {p.max_abs_diff:.1e}, "
            f"min cos {p.min_cosine:.6f} ({p.n_texts} texts)  {v.notes}"
        )
        if v.pooled_file:
            print(f"  {'':<10} {v.pooled_file:<24} pooled graph (pool_weights -> pooled_sums)")
        if v.tensorrt:
            t = v.tensorrt
            windows = sorted({p.max_seq for p in t.profiles})
            print(
                f"  {'':<10} built on {t.gpu} (sm {t.compute_capability}), TensorRT {t.tensorrt_version}, "
                f"{len(t.profiles)} profiles up to {windows[-1]} tokens x {t.profiles[-1].max_batch}"
            )
    if args.device:
        from longvec.runtime import Embedder

        with Embedder.load(args.bundle_dir, device=args.device) as emb:
            print(f"runs on      {emb.provider}")
    return 0


def _print_runtime() -> None:
    try:
        from longvec.runtime.backends.ort_gpu import runtime_report
    except ImportError as e:
        raise BackendUnavailable(f"onnxruntime is not installed: pip install longvec ({e})") from e
    report = runtime_report()
    print(f"onnxruntime  {report['build']} {report['version']} ({report['path']})")
    print(f"providers    {', '.join(report['providers'])}")
    if "hint" in report:
        print(f"hint         {report['hint']}")


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
    _load_optional_commands()
    parser = _Parser(
        prog="longvec",
        description="Embed documents of any length: export a model once, then embed, search, serve and benchmark "
        "it without torch. Exit codes: 0 ok, 2 usage, 3 bundle, 4 input, 5 missing dependency, 6 export, "
        "7 export refused a variant, 8 a file cannot be written, 130 interrupted.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"longvec {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for name, (add_args, fn) in COMMANDS.items():
        summary = (fn.__doc__ or "").strip().split("\n")[0] or None
        p = sub.add_parser(name, help=summary, description=summary, formatter_class=_HelpFormatter)
        add_args(p)
        p.set_defaults(run=fn)
    return parser


def _load_optional_commands() -> None:
    """Subcommands that live next to their feature register themselves on import."""
    import importlib

    for module in (
        "longvec.runtime.cli.search",
        "longvec.runtime.cli.index",
        "longvec.runtime.cli.query",
        "longvec.runtime.cli.serve",
        "longvec.runtime.cli.embed",
        "longvec.runtime.cli.bench",
        "longvec.runtime.cli.build_engine",
    ):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
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
