"""Which onnxruntime session options to ship (runtime/backends/onnx.py), chosen on measurements.

Each option set runs in a fresh interpreter (so load time and peak RSS are its own): create the session, then time
the encoder on longvec's shapes: 16 windows x 256 tokens (long documents), 4 x 512 and single short queries.
Option sets are interleaved over repeats and medians reported, as a markdown table and JSON.

    python bench/ort_options.py bundles/all-MiniLM-L6-v2 --variant optimized --threads 2 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from harness.machine import machine
from harness.markdown import table
from timing import median_seconds, timing_args

# name -> changes from the baseline: longvec's options before this study (intra-op = threads, inter-op 1,
# sequential, ORT_ENABLE_ALL, arena and memory pattern on, spinning on). longvec now ships "no-spinning".
OPTION_SETS: dict[str, dict] = {
    "baseline": {},
    "level=extended": {"level": "ORT_ENABLE_EXTENDED"},
    "level=basic": {"level": "ORT_ENABLE_BASIC"},
    "level=disabled": {"level": "ORT_DISABLE_ALL"},
    "no-arena": {"arena": False},
    "no-mem-pattern": {"mem_pattern": False},
    "no-spinning": {"config": {"session.intra_op.allow_spinning": "0"}},
    "no-prepacking": {"config": {"session.disable_prepacking": "1"}},
    "parallel-mode": {"parallel": True},
    "io-binding": {"io_binding": True},
    # issue 24 (the CPU in front of it): flush denormals to zero in MLAS; finer work blocks for the thread pool
    "denormal-as-zero": {"config": {"session.set_denormal_as_zero": "1"}},
    "dynamic-block-base=4": {"config": {"session.dynamic_block_base": "4"}},
    "threads=1": {"threads": 1},
    "threads=4": {"threads": 4},
}

SHAPES = {"16x256": (16, 256, 3), "4x512": (4, 512, 3), "query": (1, 12, 20)}  # batch, seq, timed runs


def child(graph: str, spec: dict, threads: int) -> dict:
    import resource

    import onnxruntime as ort

    from longvec.runtime.bundle.feeds import encoder_feeds

    t0 = time.perf_counter()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = spec.get("threads", threads)
    opts.inter_op_num_threads = 2 if spec.get("parallel") else 1
    opts.execution_mode = ort.ExecutionMode.ORT_PARALLEL if spec.get("parallel") else ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, spec.get("level", "ORT_ENABLE_ALL"))
    opts.enable_cpu_mem_arena = spec.get("arena", True)
    opts.enable_mem_pattern = spec.get("mem_pattern", True)
    for key, value in spec.get("config", {}).items():
        opts.add_session_config_entry(key, value)
    sess = ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
    load = time.perf_counter() - t0
    names = [i.name for i in sess.get_inputs()]
    out: dict = {"load_s": load}
    rng = np.random.default_rng(0)
    for shape_name, (batch, seq, runs) in SHAPES.items():
        ids = rng.integers(1000, 20000, (batch, seq)).astype(np.int64)
        feeds = encoder_feeds(names, ids, np.ones_like(ids))
        if spec.get("io_binding"):
            binding = sess.io_binding()
            for k, v in feeds.items():
                binding.bind_cpu_input(k, v)
            binding.bind_output(sess.get_outputs()[0].name, "cpu")

            def step(binding=binding) -> None:
                sess.run_with_iobinding(binding)
                binding.copy_outputs_to_cpu()
        else:

            def step(feeds=feeds) -> None:
                sess.run(None, feeds)

        seconds = median_seconds(step, runs)
        out[shape_name] = batch * seq / seconds  # tokens/s
        out[f"{shape_name}_ms"] = 1000 * seconds
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("bundle", type=Path)
    p.add_argument("--variant", default="optimized")
    timing_args(p, repeats=5)
    p.add_argument("--sets", default=",".join(OPTION_SETS))
    p.add_argument("--out", type=Path, default=Path("bench/out/ort_options.json"))
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    manifest = json.loads((args.bundle / "manifest.json").read_text())
    graph = str(args.bundle / next(v["file"] for v in manifest["variants"] if v["name"] == args.variant))
    if args.child:
        print(json.dumps(child(graph, OPTION_SETS[args.child], args.threads)))
        return 0
    sets = args.sets.split(",")
    runs: dict[str, list[dict]] = {s: [] for s in sets}
    for r in range(args.repeats):
        for s in sets[r % len(sets) :] + sets[: r % len(sets)]:
            cmd = [
                sys.executable,
                __file__,
                str(args.bundle),
                "--variant",
                args.variant,
                "--threads",
                str(args.threads),
            ]
            done = subprocess.run([*cmd, "--child", s], capture_output=True, text=True, check=True)
            runs[s].append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"repeat {r + 1}/{args.repeats} (load {os.getloadavg()[0]:.1f})", file=sys.stderr)
    keys = ["16x256", "4x512", "query_ms", "load_s", "peak_rss_mb"]
    medians = {s: {k: float(np.median([x[k] for x in runs[s]])) for k in keys} for s in sets}
    base = medians.get("baseline")
    print(f"variant {args.variant}, {args.threads} threads, median of {args.repeats}; tokens/s (ratio vs baseline)\n")
    rows = []
    for s, m in medians.items():
        rel = (lambda k, m=m: f" ({m[k] / base[k]:.2f})") if base else (lambda k: "")
        rows.append(
            [
                s,
                f"{m['16x256']:.0f}{rel('16x256')}",
                f"{m['4x512']:.0f}{rel('4x512')}",
                f"{m['query_ms']:.1f}{rel('query_ms')}",
                f"{m['load_s']:.2f}",
                f"{m['peak_rss_mb']:.0f}",
            ]
        )
    header = ["options", "16x256 tok/s", "4x512 tok/s", "query ms", "load s", "peak RSS MB"]
    print("\n".join(table(header, rows)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = {"variant": args.variant, "threads": args.threads, "machine": machine(), "medians": medians}
    args.out.write_text(json.dumps({**results, "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
