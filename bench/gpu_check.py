"""One GPU check for whatever this machine has; prints a table and writes JSON (under $OUT when set).

    python bench/gpu_check.py [--bundle bundles/all-MiniLM-L6-v2] [--out gpu_check.json] [--repeats 20]

1. Device probe: GPU (torch / cuda-python), onnxruntime build and providers, TensorRT, cuda-python.
2. Pooled graph vs token-state path on CPU onnxruntime: max |diff| of pooled sums for the same windows and weights.
3. With onnxruntime-gpu: CUDA provider throughput, pooled outputs vs token-state outputs (IO binding, copy share =
   time binding inputs + copying outputs back / total), and torch fp16 SDPA on the same windows (pooled on the
   device vs states to host), MiniLM shape at 256 x 256 and 64 x 512 windows; CUDA vs CPU pooled max |diff|.
4. With TensorRT: a plan of the pooled graph (profiles for 256 and 512), parity vs CPU fp32 pooled, same rows.

Without a bundle it exports a randomly initialised MiniLM-shaped BERT (needs torch + transformers + onnx): speed
does not depend on the weights, and parity between engines does not either. Every step it cannot run is listed
under "skipped" with the reason. Meant to finish in under 8 minutes on one H100.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from timing import median_seconds

SHAPES = ((256, 256), (64, 512))  # windows x tokens
ROWS = 5  # pool rows per window: its own pooling, the document, ~3 chunk spans (128-token chunks, 256 windows)


def probe() -> dict[str, Any]:
    out: dict[str, Any] = {"python": sys.version.split()[0], "machine": platform.machine(), "cpus": os.cpu_count()}
    try:
        import onnxruntime as ort

        if hasattr(ort, "preload_dlls") and "CUDAExecutionProvider" in ort.get_available_providers():
            ort.preload_dlls()  # CUDA/cuDNN from pip packages
        out["onnxruntime"] = {"version": ort.__version__, "providers": ort.get_available_providers()}
    except ImportError as e:
        out["onnxruntime"] = f"not importable: {e}"
    try:
        import torch

        out["torch"] = {"version": torch.__version__, "cuda": torch.cuda.is_available()}
        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            out["gpu"] = {"name": p.name, "capability": f"{p.major}.{p.minor}", "memory_gb": p.total_memory / 2**30}
    except ImportError as e:
        out["torch"] = f"not importable: {e}"
    for name in ("tensorrt", "cuda.bindings", "cupy"):
        try:
            module = __import__(name, fromlist=["_"])
            out[name] = str(getattr(module, "__version__", "importable"))
        except ImportError as e:
            out[name] = f"not importable: {e}"
    return out


def random_minilm(work: Path) -> tuple[Path, Path, Any]:
    """A MiniLM-shaped BERT with random weights, exported with longvec's exporter: (states graph, pooled, model)."""
    import torch
    from transformers import BertConfig, BertModel

    from longvec.export.graph import export_onnx
    from longvec.export.pooled import add_pool_head

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536
    )
    config._attn_implementation = "eager"  # as longvec's exporter loads models (export/graph.py)
    model = BertModel(config, add_pooling_layer=False).eval()
    states = work / "model.onnx"
    export_onnx(model, states, ("input_ids", "attention_mask", "token_type_ids"))
    add_pool_head(states, work / "model.pooled.onnx", 384)
    return states, work / "model.pooled.onnx", model


def from_bundle(bundle: Path, variant: str) -> tuple[Path, Path]:
    from longvec.runtime.bundle.reader import Bundle

    b = Bundle.open(bundle)
    v = b.variant(variant)
    if v.pooled_file is None:
        raise SystemExit(f"{bundle}: variant {variant} has no pooled graph; run `longvec export --add-pooled {bundle}`")
    return b.path(v.file), b.path(v.pooled_file)


def windows(batch: int, seq: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, 29000, (batch, seq)).astype(np.int64)
    ids[:, 0], ids[:, -1] = 101, 102
    mask = np.ones_like(ids)
    weights = rng.random((batch, ROWS, seq)).astype(np.float32)
    return ids, mask, weights / weights.sum(axis=2, keepdims=True)


def feeds_for(session: Any, ids: np.ndarray, mask: np.ndarray, weights: np.ndarray | None) -> dict[str, np.ndarray]:
    from longvec.runtime.bundle.feeds import encoder_feeds

    return encoder_feeds([i.name for i in session.get_inputs()], ids, mask, weights)


def cpu_parity(states_graph: Path, pooled_graph: Path) -> dict[str, Any]:
    import onnxruntime as ort

    s = ort.InferenceSession(str(states_graph), providers=["CPUExecutionProvider"])
    p = ort.InferenceSession(str(pooled_graph), providers=["CPUExecutionProvider"])
    ids, mask, weights = windows(4, 256)
    host = np.matmul(weights, s.run(None, feeds_for(s, ids, mask, None))[0].astype(np.float32))
    got = p.run(None, feeds_for(p, ids, mask, weights))[0]
    return {"windows": "4 x 256", "rows": ROWS, "max_abs_diff": float(np.abs(got - host).max())}


def median_ms(fn: Callable[[], Any], repeats: int) -> float:
    return 1000 * median_seconds(fn, repeats)


def ort_cuda_rows(states_graph: Path, pooled_graph: Path, repeats: int) -> tuple[list[dict[str, Any]], float]:
    """IO binding: inputs bound from host (copied at bind), output on the device, then copied back."""
    import onnxruntime as ort

    from longvec.runtime.backends.ort_gpu import cuda_provider_options

    providers = [("CUDAExecutionProvider", cuda_provider_options()), "CPUExecutionProvider"]
    rows = []
    sessions = {
        "token states to host": ort.InferenceSession(str(states_graph), providers=providers),
        "pooled sums to host": ort.InferenceSession(str(pooled_graph), providers=providers),
    }
    for s in sessions.values():
        if s.get_providers()[0] != "CUDAExecutionProvider":
            raise RuntimeError(f"the CUDA provider did not start (session runs on {s.get_providers()})")
    cpu = ort.InferenceSession(str(pooled_graph), providers=["CPUExecutionProvider"])
    ids, mask, weights = windows(8, 256)
    pooled = sessions["pooled sums to host"]
    on_gpu = pooled.run(None, feeds_for(pooled, ids, mask, weights))[0]
    diff = float(np.abs(on_gpu - cpu.run(None, feeds_for(cpu, ids, mask, weights))[0]).max())
    for batch, seq in SHAPES:
        ids, mask, weights = windows(batch, seq)
        for label, s in sessions.items():
            feeds = feeds_for(s, ids, mask, weights if "pooled" in label else None)
            parts = {"bind": [], "run": [], "copy": []}
            for r in range(repeats + 1):
                t0 = time.perf_counter()
                binding = s.io_binding()
                for name, value in feeds.items():
                    binding.bind_cpu_input(name, value)
                binding.bind_output(s.get_outputs()[0].name, "cuda", 0)
                t1 = time.perf_counter()
                s.run_with_iobinding(binding)
                t2 = time.perf_counter()
                binding.copy_outputs_to_cpu()
                t3 = time.perf_counter()
                if r:  # the first is a warm-up
                    for k, v in zip(parts, (t1 - t0, t2 - t1, t3 - t2)):
                        parts[k].append(v)
            med = {k: float(np.median(v)) for k, v in parts.items()}
            total = sum(med.values())
            rows.append(
                {
                    "engine": f"onnxruntime CUDA, {label}",
                    "windows": f"{batch} x {seq}",
                    "tokens_per_s": batch * seq / total,
                    "copy_share": (med["bind"] + med["copy"]) / total,
                    "ms": 1000 * total,
                }
            )
    return rows, diff


def torch_rows(model: Any, repeats: int) -> list[dict[str, Any]]:
    model = model.half().cuda().eval()
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("sdpa")
    else:
        model.config._attn_implementation = "sdpa"
    return [row for batch, seq in SHAPES for row in _torch_shape(model, batch, seq, repeats)]


def _torch_shape(model: Any, batch: int, seq: int, repeats: int) -> list[dict[str, Any]]:
    import torch

    ids, mask, weights = windows(batch, seq)
    t_ids, t_mask = torch.from_numpy(ids).pin_memory(), torch.from_numpy(mask).pin_memory()
    t_w = torch.from_numpy(weights).pin_memory()

    def forward() -> Any:
        with torch.inference_mode():
            return model(
                input_ids=t_ids.cuda(non_blocking=True), attention_mask=t_mask.cuda(non_blocking=True)
            ).last_hidden_state

    def states_to_host() -> Any:
        out = forward().float().cpu()
        torch.cuda.synchronize()
        return out

    def pooled_to_host() -> Any:
        out = torch.bmm(t_w.cuda(non_blocking=True), forward().float()).cpu()
        torch.cuda.synchronize()
        return out

    def compute_only() -> Any:
        out = forward()
        torch.cuda.synchronize()
        return out

    base = median_ms(compute_only, repeats)
    rows = []
    for label, fn in (("token states to host", states_to_host), ("pooled sums to host", pooled_to_host)):
        ms = median_ms(fn, repeats)
        rows.append(
            {
                "engine": f"torch fp16 SDPA, {label}",
                "windows": f"{batch} x {seq}",
                "tokens_per_s": batch * seq / (ms / 1000),
                "copy_share": max(0.0, 1 - base / ms),
                "ms": ms,
            }
        )
    return rows


def tensorrt_rows(pooled_graph: Path, work: Path, repeats: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    import onnxruntime as ort
    import tensorrt as trt

    from longvec.export.tensorrt import build_plan, pooled_parity
    from longvec.runtime.backends.tensorrt import TensorRTBackend
    from longvec.runtime.bundle.engines import window_profiles

    profiles = window_profiles([256, 512], max_batch=256)
    names = ("input_ids", "attention_mask", "token_type_ids", "pool_weights")
    cpu = ort.InferenceSession(str(pooled_graph), providers=["CPUExecutionProvider"])
    graph_names = {i.name for i in cpu.get_inputs()}
    t0 = time.perf_counter()
    plan = build_plan(trt, pooled_graph, profiles, tuple(n for n in names if n in graph_names), work / "timing.cache")
    build_s = time.perf_counter() - t0
    (work / "model.plan").write_bytes(plan)
    backend = TensorRTBackend(work / "model.plan", 384)

    def reference(ids: np.ndarray, mask: np.ndarray, w: np.ndarray) -> np.ndarray:
        return cpu.run(None, feeds_for(cpu, ids, mask, w))[0]

    batches = [windows(8, 256, seed=1)[:2], windows(4, 512, seed=2)[:2]]
    parity = pooled_parity(reference, backend.run_pooled, batches, "cpu fp32 pooled graph")
    rows = []
    for batch, seq in SHAPES:
        ids, mask, weights = windows(batch, seq)
        ms = median_ms(lambda: backend.run_pooled(ids, mask, weights), repeats)  # noqa: B023
        rows.append(
            {
                "engine": "TensorRT plan, pooled sums to host",
                "windows": f"{batch} x {seq}",
                "ms": ms,
                "tokens_per_s": batch * seq / (ms / 1000),
                "copy_share": None,
            }
        )
    backend.close()
    return rows, {
        "build_seconds": build_s,
        "tensorrt": trt.__version__,
        "min_cosine": parity.min_cosine,
        "max_abs_diff": parity.max_abs_diff,
        "profiles": len(profiles),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bundle", type=Path, default=None, help="default: a random MiniLM-shaped model")
    p.add_argument("--variant", default="fp32", help="bundle variant (fp32 = unfused, what TensorRT parses)")
    p.add_argument("--repeats", type=int, default=20)
    default_out = Path(os.environ["OUT"]) / "gpu_check.json" if os.environ.get("OUT") else Path("gpu_check.json")
    p.add_argument("--out", type=Path, default=default_out)
    args = p.parse_args()
    started = time.time()
    report: dict[str, Any] = {"started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))}
    report["probe"] = probe()
    report["load_average"] = list(os.getloadavg())
    skipped: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    work = Path(tempfile.mkdtemp(prefix="gpu_check."))
    model = None
    try:
        if args.bundle is not None:
            states_graph, pooled_graph = from_bundle(args.bundle, args.variant)
            report["model"] = f"{args.bundle} ({args.variant})"
        else:
            states_graph, pooled_graph, model = random_minilm(work)
            report["model"] = "random MiniLM-shaped BERT (384 hidden, 6 layers), fp32 ONNX"
    except ImportError as e:
        skipped["everything"] = f"no --bundle and cannot build a random model ({e})"
        states_graph = pooled_graph = None
    ort_info = report["probe"].get("onnxruntime")
    has_cuda = isinstance(ort_info, dict) and "CUDAExecutionProvider" in ort_info["providers"]
    has_torch_gpu = bool(report["probe"].get("gpu"))
    steps: list[tuple[str, bool, str, Callable[[], None]]] = []
    if states_graph is not None and pooled_graph is not None:
        sg, pg = states_graph, pooled_graph

        def do_cpu() -> None:
            report["cpu_pooled_vs_states"] = cpu_parity(sg, pg)

        def do_cuda() -> None:
            cuda_rows, diff = ort_cuda_rows(sg, pg, args.repeats)
            rows.extend(cuda_rows)
            report["cuda_vs_cpu_pooled_max_abs_diff"] = diff

        def do_torch() -> None:
            rows.extend(torch_rows(model, args.repeats))

        def do_trt() -> None:
            trt_rows, info = tensorrt_rows(pg, work, args.repeats)
            rows.extend(trt_rows)
            report["tensorrt"] = info

        steps = [
            ("cpu pooled vs states", True, "", do_cpu),
            ("onnxruntime CUDA rows", has_cuda, "onnxruntime has no CUDAExecutionProvider (CPU build)", do_cuda),
            (
                "torch fp16 SDPA rows",
                has_torch_gpu and model is not None,
                "no CUDA GPU in torch" if not has_torch_gpu else "needs the random model (run without --bundle)",
                do_torch,
            ),
            (
                "TensorRT build + parity + rows",
                isinstance(report["probe"].get("tensorrt"), str)
                and not str(report["probe"]["tensorrt"]).startswith("not importable")
                and has_torch_gpu,
                "tensorrt not importable or no GPU",
                do_trt,
            ),
        ]
    for name, runnable, why, fn in steps:
        if not runnable:
            skipped[name] = why
            continue
        try:
            fn()
        except Exception as e:  # one step failing must not lose the others' figures
            skipped[name] = f"failed: {e!r}"
            report.setdefault("tracebacks", {})[name] = traceback.format_exc()
    report["rows"] = rows
    report["skipped"] = skipped
    report["seconds"] = time.time() - started
    print(json.dumps(report["probe"], indent=1))
    if "cpu_pooled_vs_states" in report:
        diff = report["cpu_pooled_vs_states"]["max_abs_diff"]
        print(f"CPU pooled graph vs token states + host pooling: max|diff| {diff:.2e}")
    for r in rows:
        share = "" if r["copy_share"] is None else f"  copy {100 * r['copy_share']:.1f}%"
        print(f"{r['engine']:<48} {r['windows']:>9}  {r['tokens_per_s'] / 1e6:7.2f} M tokens/s{share}")
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {args.out} ({report['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
