"""`longvec export MODEL_DIR BUNDLE_DIR` and `longvec export --add-pooled BUNDLE`: the export side (torch, onnx) is
imported only when the command runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from longvec.runtime.cli.command import Command, usage_error
from longvec.runtime.errors import BackendUnavailable


def _args(p: argparse.ArgumentParser) -> None:
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


def _run(args: argparse.Namespace) -> int:
    if args.add_pooled is not None:
        if args.model_dir is not None:
            usage_error(args, "--add-pooled BUNDLE takes no MODEL_DIR / BUNDLE_DIR")
        try:
            from longvec.export.pooled import add_pooled
        except ImportError as e:
            raise BackendUnavailable(f"--add-pooled needs onnx: pip install onnx ({e})") from e
        manifest = add_pooled(args.add_pooled, log=print)
        print(f"{args.add_pooled}: pooled graphs {', '.join(str(v.pooled_file) for v in manifest.variants)}")
        return 0
    if args.model_dir is None or args.bundle_dir is None:
        # two optional positionals (for --add-pooled), so argparse cannot see this one: a usage error all the same
        usage_error(args, "export needs MODEL_DIR and BUNDLE_DIR (or --add-pooled BUNDLE)")
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


COMMAND = Command("export", "Export a local model directory to a bundle (needs the export extra: torch).", _args, _run)
