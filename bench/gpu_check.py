"""Times what the library runs, on every path this machine has, and writes one JSON (under $OUT when set).

    python bench/gpu_check.py --bundle BUNDLE [--paths cpu:optimized,cuda:fp32,...] [--docs 50] [--repeats 3]

A path is a device and a variant the bundle holds (`trt-provider:fp32` is onnxruntime's TensorRT provider on the
unfused graph). Each path is `Embedder.load(bundle, variant, device=...)`, the very object users get: its backend,
its batching (Batching.for_backend) and its pipeline; the timed call is `embed_documents` on documents of several
windows each, the encoder's own time measured inside that call by the bench's TimedBackend put in front of the
same backend (`Embedder.with_backend`). Every model figure (hidden size, window, framing) comes from the bundle.
Parity: document and chunk vectors of each path against the CPU fp32 path (min cosine).

By default every path this machine can run: CPU fp32 and optimized; with onnxruntime's CUDA provider the same on
"cuda"; with its TensorRT provider `trt-provider:fp32`; every TensorRT plan the bundle holds (`longvec
build-engine`) on "cuda". A path that cannot run is recorded with the typed error it raised.

`--random-model CONFIG_DIR --model-out DIR` first writes a model directory with the configuration, tokenizer and
sentence-transformers files of CONFIG_DIR and random weights of its shape (speed does not depend on the weights,
parity between engines does not either): for a machine that has no model weights (bench/gpu_device_check.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "lighthouses.txt"


def versions() -> dict[str, Any]:
    out: dict[str, Any] = {"python": sys.version.split()[0], "machine": platform.machine(), "cpus": os.cpu_count()}
    import importlib.metadata as md

    for dist in ("longvec", "numpy", "onnxruntime", "onnxruntime-gpu", "tensorrt", "cuda-python", "cuda-bindings"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = None
    from longvec.runtime.backends.ort_gpu import gpu_identity, runtime_report

    out["onnxruntime_runtime"] = runtime_report()
    try:
        identity = gpu_identity()
        out["gpu"] = None if identity is None else {"name": identity.name, "capability": identity.compute_capability}
    except Exception as e:  # no driver: recorded, not fatal
        out["gpu"] = f"{type(e).__name__}: {e}"
    return out


def random_model(config_dir: Path, out: Path, seed: int = 0) -> Path:
    """`config_dir`'s every file but its weights, plus random weights of its shape (torch + transformers)."""
    import torch
    from transformers import AutoConfig, AutoModel

    out.mkdir(parents=True, exist_ok=True)
    for f in config_dir.rglob("*"):
        if f.is_file() and f.suffix not in (".safetensors", ".bin", ".onnx", ".h5", ".msgpack"):
            (out / f.relative_to(config_dir)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, out / f.relative_to(config_dir))
    torch.manual_seed(seed)
    AutoModel.from_config(AutoConfig.from_pretrained(config_dir)).save_pretrained(out)
    return out


def default_paths(bundle: Path) -> list[str]:
    import onnxruntime as ort

    from longvec.runtime.bundle.reader import Bundle

    b = Bundle.open(bundle, verify=False)
    names = b.variant_names()
    onnx_variants = [n for n in ("fp32", "optimized") if n in names]
    paths = [f"cpu:{n}" for n in onnx_variants]
    providers = ort.get_available_providers()
    if "CUDAExecutionProvider" in providers:
        paths += [f"cuda:{n}" for n in onnx_variants]
    if "TensorrtExecutionProvider" in providers and "fp32" in names:
        paths.append("trt-provider:fp32")
    paths += [f"cuda:{v.name}" for v in b.manifest.variants if v.engine == "tensorrt"]
    return paths


def documents(n: int, tokens_each: int, count: Callable[[list[str]], list[int]]) -> list[str]:
    """`n` documents of at least `tokens_each` content tokens, cut from the example text (rotated per document)."""
    paragraphs = [p for p in EXAMPLE.read_text(encoding="utf-8").split("\n\n") if p.strip()]
    docs = []
    for i in range(n):
        parts: list[str] = []
        j = i
        while not parts or count([" ".join(parts)])[0] < tokens_each:
            parts.append(paragraphs[j % len(paragraphs)])
            j += 1
        docs.append(" ".join(parts))
    return docs


def run_path(
    bundle: Path, path: str, docs: list[str], repeats: int, chunk_tokens: int, reference: list[Any] | None
) -> tuple[dict[str, Any], list[Any]]:
    from longvec.runtime import Embedder
    from longvec.runtime.bench.wrappers import TimedBackend

    device, _, variant = path.partition(":")
    provider_trt = device == "trt-provider"
    row: dict[str, Any] = {"path": path, "variant": variant, "device": "cuda" if provider_trt else device}
    started = time.perf_counter()
    loaded = Embedder.load(bundle, variant=variant, device=row["device"], tensorrt_provider=provider_trt)
    row["load_seconds"] = time.perf_counter() - started
    timed = TimedBackend(loaded.backend)
    emb = loaded.with_backend(timed)  # the same backend object, the same batching policy
    try:
        row["provider"] = emb.provider
        row["batching"] = {"max_tokens": emb.batching.max_tokens, "max_batch": emb.batching.max_batch}
        row["window"] = emb.window
        results = emb.embed_documents(docs, chunk_tokens=chunk_tokens)  # warm-up, and the vectors compared
        seconds, encoder = [], []
        for _ in range(repeats):
            timed.seconds = 0.0
            t0 = time.perf_counter()
            emb.embed_documents(docs, chunk_tokens=chunk_tokens)
            seconds.append(time.perf_counter() - t0)
            encoder.append(timed.seconds)
        tokens = sum(r.n_tokens for r in results)
        row["tokens"] = tokens
        row["seconds_median"] = float(np.median(seconds))
        row["tokens_per_s"] = tokens / row["seconds_median"]
        row["encoder_share"] = float(np.median(encoder)) / row["seconds_median"]
        if reference is not None:
            docs_cos = [float(a.vector @ b.vector) for a, b in zip(results, reference)]
            chunk_cos = [
                float(np.einsum("nd,nd->n", a.chunk_vectors, b.chunk_vectors).min()) for a, b in zip(results, reference)
            ]
            row["parity_vs_cpu_fp32"] = {"min_cosine_documents": min(docs_cos), "min_cosine_chunks": min(chunk_cos)}
        return row, results
    finally:
        loaded.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bundle", type=Path, help="a bundle (`longvec export`)")
    p.add_argument("--paths", default=None, help="comma-separated device:variant (default: every runnable path)")
    p.add_argument("--docs", type=int, default=50, help="documents per timed call")
    p.add_argument("--windows-per-doc", type=int, default=3, help="each document's length, in windows")
    p.add_argument("--chunk-tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--random-model", type=Path, default=None, help="write a random-weight model of this config first")
    p.add_argument("--model-out", type=Path, default=None, help="where --random-model writes it")
    default_out = Path(os.environ["OUT"]) / "gpu_check.json" if os.environ.get("OUT") else Path("gpu_check.json")
    p.add_argument("--out", type=Path, default=default_out)
    args = p.parse_args(argv)
    if args.random_model is not None:
        if args.model_out is None:
            p.error("--random-model needs --model-out")
        print(f"wrote {random_model(args.random_model, args.model_out)}")
        if args.bundle is None:
            return 0
    if args.bundle is None:
        p.error("--bundle is required")
    began = time.time()
    report: dict[str, Any] = {"started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(began))}
    report["load_average"] = list(os.getloadavg())
    report["versions"] = versions()
    report["bundle"] = str(args.bundle)
    paths = args.paths.split(",") if args.paths else default_paths(args.bundle)
    from longvec.runtime import Embedder
    from longvec.runtime.errors import LongvecError

    with Embedder.load(args.bundle, variant="fp32", threads=None) as ref:
        docs = documents(args.docs, args.windows_per_doc * ref.plan().content, ref.count_tokens)
        report["workload"] = {
            "documents": len(docs),
            "tokens": sum(ref.count_tokens(docs)),
            "window": ref.window,
            "hidden_size": ref.dim,
            "chunk_tokens": args.chunk_tokens,
        }
    report["paths"] = []
    reference = None
    for path in ["cpu:fp32", *(x for x in paths if x != "cpu:fp32")]:
        try:
            row, results = run_path(args.bundle, path, docs, args.repeats, args.chunk_tokens, reference)
            if path == "cpu:fp32":
                reference = results
                if path not in paths:
                    continue
        except LongvecError as e:  # a path this machine cannot run: the typed error says why
            row = {"path": path, "error": f"{type(e).__name__}: {e}"}
        report["paths"].append(row)
        shown = row.get("tokens_per_s")
        parity = row.get("parity_vs_cpu_fp32", {}).get("min_cosine_chunks")
        print(
            f"{path:<40} "
            + (f"{shown / 1e3:9.1f} k tokens/s  parity {parity}  {row['provider']}" if shown else row["error"])
        )
    report["seconds"] = time.time() - began
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
