"""The `longvec` command. Errors map to exit codes in one table; tracebacks are for bugs only.

exit 0  success
exit 1  unexpected error (a bug: traceback printed)
exit 2  usage error (argparse)
exit 3  bundle error (missing file, checksum, schema, unsafe path, unknown variant)
exit 4  input error (bad text, span or option)
exit 5  backend unavailable
exit 6  export error (including parity failures)
exit 130 interrupted
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from longvec.runtime.errors import BackendUnavailable, BundleError, ExportError, InputError, LongvecError

EXIT_CODES: dict[type[LongvecError], int] = {
    BundleError: 3,
    InputError: 4,
    BackendUnavailable: 5,
    ExportError: 6,
}

Command = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Command]] = {}


def command(name: str, add_args: Callable[[argparse.ArgumentParser], None]) -> Callable[[Command], Command]:
    def register(fn: Command) -> Command:
        COMMANDS[name] = (add_args, fn)
        return fn

    return register


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model_dir", type=Path, help="local Hugging Face / sentence-transformers directory")
    p.add_argument("bundle_dir", type=Path)
    p.add_argument(
        "--variants",
        default=None,
        help="comma-separated from optimized,int8,fp16 (default: optimized; fp32 is always written)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle directory")


@command("export", _export_args)
def _export(args: argparse.Namespace) -> int:
    try:
        from longvec.export import DEFAULT_VARIANTS, export_bundle
    except ImportError as e:
        raise BackendUnavailable(f"export needs torch: pip install 'longvec[export]' ({e})") from e
    variants = tuple(v for v in args.variants.split(",") if v) if args.variants else DEFAULT_VARIANTS
    manifest = export_bundle(args.model_dir, args.bundle_dir, variants, args.overwrite, log=print)
    print(f"wrote {args.bundle_dir} ({', '.join(v.name for v in manifest.variants)})")
    return 0


def _inspect_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle_dir", type=Path)
    p.add_argument("--json", action="store_true", help="print manifest.json as is")


@command("inspect", _inspect_args)
def _inspect(args: argparse.Namespace) -> int:
    from longvec.runtime.bundle.defaults import resolve as resolve_defaults
    from longvec.runtime.bundle.reader import Bundle

    m = Bundle.open(args.bundle_dir).manifest
    if args.json:
        print(m.to_json(), end="")
        return 0
    framing = f"{list(m.framing.prefix_ids)} … {list(m.framing.suffix_ids)}"
    print(f"model        {m.source.name}  (weights sha256 {m.source.revision[:12]})")
    print(f"architecture {m.architecture}, hidden size {m.hidden_size}, inputs {', '.join(m.input_names)}")
    print(f"window       {m.max_positions} positions (trained on {m.trained_max_tokens}), framing {framing}")
    print(f"pooling      {m.pooling.mode}, normalize={m.pooling.normalize}, prompts {dict(m.prompts) or 'none'}")
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
    return 0


def _search_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle_dir", type=Path)
    p.add_argument("file", type=Path, help="a UTF-8 text file of any length")
    p.add_argument("query")
    p.add_argument("--top", type=int, default=3)
    p.add_argument("--chunk-tokens", type=int, default=128)
    p.add_argument("--chunking", default="sentences", help="tokens, sentences or paragraphs")
    p.add_argument("--mode", default=None, help="late, naive, blend, window_mean, truncate")
    p.add_argument("--variant", default="optimized")


@command("search", _search_args)
def _search(args: argparse.Namespace) -> int:
    """Embed one document and print its chunks that best match a query, with their character spans."""
    from longvec.runtime import Embedder
    from longvec.runtime.embedder import DEFAULT_MODE

    text = args.file.read_text(encoding="utf-8")
    with Embedder.load(args.bundle_dir, variant=args.variant) as emb:
        doc = emb.embed_documents(
            [text], chunking=args.chunking, chunk_tokens=args.chunk_tokens, mode=args.mode or DEFAULT_MODE
        )[0]
        query = emb.embed([args.query])[0]
    scores = doc.chunk_vectors @ query
    print(
        f"{args.file}: {len(text)} chars, {doc.n_tokens} tokens, {doc.n_windows} windows, "
        f"{len(doc.chunk_spans)} chunks ({doc.mode})"
    )
    for rank, i in enumerate(scores.argsort()[::-1][: args.top], 1):
        start, end = doc.chunk_spans[i].tolist()
        snippet = " ".join(text[start:end].split())
        print(
            f"{rank}. score {scores[i]:.3f}  chars {start}-{end}\n   {snippet[:300]}{'…' if len(snippet) > 300 else ''}"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    _load_optional_commands()
    parser = argparse.ArgumentParser(prog="longvec", description="Embed documents of any length.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (add_args, fn) in COMMANDS.items():
        p = sub.add_parser(name, help=(fn.__doc__ or "").strip().split("\n")[0] or None)
        add_args(p)
        p.set_defaults(run=fn)
    return parser


def _load_optional_commands() -> None:
    """Subcommands that live next to their feature register themselves on import."""
    import importlib

    for module in ("longvec.runtime.cli.serve", "longvec.runtime.cli.embed", "longvec.runtime.cli.bench"):
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
    except LongvecError as e:
        code = next((c for t, c in EXIT_CODES.items() if isinstance(e, t)), 1)
        print(f"longvec: error: {e}", file=sys.stderr)
        return code
