"""`longvec build-engine BUNDLE`: TensorRT plans of the bundle's pooled graph, built on this machine's GPU."""

from __future__ import annotations

import argparse
from pathlib import Path

from longvec.runtime.bundle.engines import GPU_MAX_BATCH
from longvec.runtime.cli.command import Command
from longvec.runtime.errors import BackendUnavailable, InputError


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle_dir", type=Path, help="a bundle with pooled graphs (`longvec export`, or --add-pooled)")
    p.add_argument(
        "--windows", default=None, help="comma-separated window lengths to build a profile for (default: the bundle's)"
    )
    p.add_argument(
        "--max-batch",
        type=int,
        default=GPU_MAX_BATCH,
        help=f"largest batch (windows) of every profile (default: {GPU_MAX_BATCH})",
    )
    p.add_argument("--cache-dir", type=Path, default=None, help="timing caches and plans (default: ~/.cache/longvec)")


def _build_engine(args: argparse.Namespace) -> int:
    try:
        windows = [int(w) for w in args.windows.split(",") if w] if args.windows else None
    except ValueError as e:
        raise InputError(f"--windows must be comma-separated integers ({e})") from e
    if args.max_batch < 1:
        raise InputError("--max-batch must be >= 1")
    try:
        from longvec.export.tensorrt import build_engine, import_tensorrt
    except ImportError as e:
        raise BackendUnavailable(f"build-engine needs the export extra: pip install 'longvec[export]' ({e})") from e
    from longvec.runtime.backends.ort_gpu import gpu_identity
    from longvec.runtime.backends.tensorrt import TensorRTBackend

    trt = import_tensorrt()  # first: its error names NVIDIA's index
    identity = gpu_identity()
    if identity is None:
        raise BackendUnavailable("build-engine needs cuda-python to identify the GPU: pip install cuda-python")
    gpu = (identity.name, identity.compute_capability)
    manifest = build_engine(
        args.bundle_dir, gpu, TensorRTBackend, windows, args.max_batch, args.cache_dir, log=print, trt=trt
    )
    built = [v for v in manifest.variants if v.engine == "tensorrt"]
    print(f"{args.bundle_dir}: TensorRT variants {', '.join(v.name for v in built)}")
    return 0


COMMAND = Command(
    "build-engine",
    "Build TensorRT plans (one profile per window length, fp16), gate them against CPU fp32, add to the bundle.",
    _args,
    _build_engine,
)
