"""`longvec inspect BUNDLE`: what a bundle holds; with --device, what runs it here; `--runtime`: the onnxruntime
build."""

from __future__ import annotations

import argparse
from pathlib import Path

from longvec.runtime.backends.options import DEVICES
from longvec.runtime.cli.command import Command, usage_error
from longvec.runtime.cli.options import LOAD_DEFAULTS, add
from longvec.runtime.errors import BackendUnavailable


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle_dir", type=Path, nargs="?", help="a bundle written by `longvec export`")
    p.add_argument("--json", action="store_true", help="print manifest.json as is (default: a summary)")
    p.add_argument(
        "--runtime",
        action="store_true",
        help="print the onnxruntime build, version and providers, GPU or CPU (default: off)",
    )
    add(p, "--device", "with a bundle: load it on this device and say what runs", choices=DEVICES, shown="do not load")
    add(p, "--variant", "the variant --device loads (any the bundle holds)", default=LOAD_DEFAULTS["variant"])


def _run(args: argparse.Namespace) -> int:
    from longvec.runtime.bundle.defaults import resolve as resolve_defaults
    from longvec.runtime.bundle.reader import Bundle

    if args.runtime:
        _print_runtime()
    if args.bundle_dir is None:
        if not args.runtime:
            usage_error(args, "inspect needs BUNDLE_DIR (or --runtime)")
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

        with Embedder.load(args.bundle_dir, variant=args.variant, device=args.device) as emb:
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


COMMAND = Command(
    "inspect",
    "Print a bundle's model, dimensions, window, framing, pooling, prompts and variants with their parity.",
    _args,
    _run,
)
