"""Turn benchmark samples into medians, percentiles, ratios and target checks, and print them as markdown."""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.markdown import table

REFERENCE = "sentence-transformers"
LONG = ("doc-",)


def _stats(case: dict[str, Any], runs: list[list[float]]) -> dict[str, Any]:
    totals = [sum(r) for r in runs]
    calls = [s for r in runs for s in r]
    median = float(np.median(totals))
    p50, p95, p99 = (float(x) * 1000 for x in np.percentile(calls, [50, 95, 99]))
    return {
        "n": len(totals),
        "median_s": median,
        "tokens_per_s": case["tokens"] / median,
        "docs_per_s": case["texts"] / median,
        "encoder_tokens_per_s": case["encoder_tokens"] / median,
        "p50_ms": p50,
        "p95_ms": p95,
        "p99_ms": p99,
    }


def flops_per_token(model: dict[str, Any], seq: float) -> float:
    """Matmul FLOPs of one token through the encoder: QKV + output projections and the feed-forward (2 FLOPs per
    multiply-add), plus attention scores and the weighted sum over `seq` positions."""
    layers, h, inter = model["layers"], model["hidden"], model["intermediate"]
    return layers * (2 * (4 * h * h + 2 * h * inter) + 4 * seq * h)


def summarize(results: dict[str, Any], labels: list[str]) -> dict[str, Any]:
    cases = results["cases"]
    stats = {
        label: {name: _stats(cases[name], runs) for name, runs in by_case.items() if runs}
        for label, by_case in results["samples"].items()
    }
    ratios: dict[str, dict[str, float]] = {}
    for label in labels:
        if label == REFERENCE or REFERENCE not in stats:
            continue
        ratios[label] = {
            name: s["tokens_per_s"] / stats[REFERENCE][name]["tokens_per_s"]
            for name, s in stats[label].items()
            if name in stats[REFERENCE]
        }
    overhead: dict[str, dict[str, float]] = {}
    vs_fastembed: dict[str, dict[str, float]] = {}
    for label in labels:
        system, _, variant = label.partition("/")
        if system != "longvec":
            continue
        for other, into in ((f"bare-ort/{variant}", overhead), (f"fastembed/{variant}", vs_fastembed)):
            if other not in stats:
                continue
            into[variant] = {}
            for name, s in stats[label].items():
                o = stats[other].get(name)
                if o is None:
                    continue
                if other.startswith("bare"):
                    into[variant][name] = 100.0 * (1.0 - o["median_s"] / s["median_s"])
                else:
                    into[variant][name] = s["tokens_per_s"] / o["tokens_per_s"]
    # the same overhead measured inside each longvec call: 1 - time in the encoder backend / the call's time
    in_call = {
        label.partition("/")[2]: {
            name: 100.0
            * float(np.median([1.0 - sum(e) / sum(t) for e, t in zip(runs, results["samples"][label][name])]))
            for name, runs in by_case.items()
            if runs
        }
        for label, by_case in results.get("encoder_samples", {}).items()
    }
    out: dict[str, Any] = {
        "overhead_in_call_pct": in_call,
        "stats": stats,
        "ratios_vs_st": ratios,
        "overhead_pct": overhead,
        "vs_fastembed": vs_fastembed,
    }
    out["floor_fraction"] = _floor_fraction(results, stats)
    out["cold_start_median"] = {
        label: {
            "seconds": float(np.median(c["seconds"])),
            "peak_rss_mb": float(np.median(c["peak_rss_mb"])),
            "process_seconds": float(np.median(c["process_seconds"])),
            "n": len(c["seconds"]),
        }
        for label, c in results.get("cold_start", {}).items()
        if c["seconds"]
    }
    out["targets"] = _targets(results, out)
    return out


def _floor_fraction(results: dict[str, Any], stats: dict[str, Any]) -> dict[str, dict[str, float]]:
    floor = results.get("floor") or {}
    if "model" not in floor:
        return {}
    out: dict[str, dict[str, float]] = {}
    for label, by_case in stats.items():
        system, _, variant = label.partition("/")
        if system != "longvec":
            continue
        rate = floor["int8_gops"] if variant == "int8" else floor["fp32_gflops"]
        out[variant] = {
            name: s["encoder_tokens_per_s"]
            * flops_per_token(floor["model"], results["cases"][name]["encoder_seq"])
            / (rate * 1e9)
            for name, s in by_case.items()
        }
    return out


def _check(name: str, value: float | None, limit: float, higher_is_better: bool) -> dict[str, Any]:
    ok = None if value is None else (value >= limit if higher_is_better else value <= limit)
    return {"target": name, "value": value, "limit": limit, "holds": ok}


def _targets(results: dict[str, Any], s: dict[str, Any]) -> list[dict[str, Any]]:
    checks = []
    for variant, limit in (("optimized", 1.15), ("int8", 2.2)):
        r = s["ratios_vs_st"].get(f"longvec/{variant}", {})
        for name, ratio in r.items():
            if name.startswith(LONG) or name == "8x512":
                checks.append(_check(f"{variant} tokens/s vs sentence-transformers, {name}", ratio, limit, True))
    for variant, by_case in s["overhead_pct"].items():
        if "query" in by_case:  # issue 24: a single query within 5% of the bare loop on the same graph
            checks.append(_check(f"runtime overhead on query, {variant} (%)", by_case["query"], 5.0, False))
        if "doc-8k" in by_case:
            checks.append(_check(f"runtime overhead on doc-8k, {variant} (%)", by_case["doc-8k"], 5.0, False))
    for variant, by_case in s.get("overhead_in_call_pct", {}).items():
        if "doc-8k" in by_case:
            checks.append(
                _check(f"runtime overhead on doc-8k within the call, {variant} (%)", by_case["doc-8k"], 5.0, False)
            )
    for variant, by_case in s["vs_fastembed"].items():
        for name, ratio in by_case.items():
            limit = 1.3 if name.startswith("mixed") else 1.0  # mixed lengths: where token-budget batching should win
            checks.append(_check(f"{variant} tokens/s vs fastembed (same ONNX), {name}", ratio, limit, True))
    for variant, seconds, mb in (("optimized", 0.6, 250.0), ("int8", 0.4, 150.0)):
        c = s["cold_start_median"].get(f"longvec/{variant}")
        if c:
            checks.append(_check(f"cold start {variant} (s)", c["seconds"], seconds, False))
            checks.append(_check(f"cold start {variant} peak RSS (MB)", c["peak_rss_mb"], mb, False))
    span = results.get("span_pooling") or {}
    if "ratio" in span:
        checks.append(_check("span_mean 128k x 384 into 1000 spans / one states.sum() read", span["ratio"], 2.0, False))
    return checks


SMOKE_NOTE = (
    "Smoke run (--quick): sizes and repeats too small to measure anything, so no ratios, overheads or targets "
    "are shown; run without --quick for those."
)
_MEASURED_ONLY = ("ratios_vs_st", "vs_fastembed", "overhead_pct", "overhead_in_call_pct", "floor_fraction")


def _load_line(results: dict[str, Any]) -> str:
    load = results.get("load_average", {})

    def fmt(xs: list[float]) -> str:
        return "/".join(f"{x:.1f}" for x in xs)

    per_repeat = results.get("config", {}).get("load_per_repeat") or []
    return (
        f"Load average (1/5/15 min): {fmt(load.get('before', []))} before, {fmt(load.get('after', []))} after; "
        f"after each repeat: {', '.join(f'{x:.1f}' for x in per_repeat)} "
        f"(on {results.get('machine', {}).get('cores', '?')} cores; `query-loaded` ran beside busy processes)"
    )


def old_vs_new_default(results: dict[str, Any]) -> list[str]:
    """Long documents: text tokens/s of the default (mode="auto") against the default before it (late, stride
    content/2), same run, longvec only."""
    rows = []
    for label, by_case in results["stats"].items():
        if not label.startswith("longvec/"):
            continue
        for name, old in by_case.items():
            if not name.endswith("-late-half") or name[: -len("-late-half")] not in by_case:
                continue
            new_name = name[: -len("-late-half")]
            new = by_case[new_name]
            cost = {n: results["cases"][n]["encoder_tokens"] / results["cases"][n]["tokens"] for n in (name, new_name)}
            rows.append(
                [
                    new_name,
                    label,
                    f"{old['tokens_per_s']:.0f} ({cost[name]:.2f})",
                    f"{new['tokens_per_s']:.0f} ({cost[new_name]:.2f})",
                    f"{new['tokens_per_s'] / old['tokens_per_s']:.2f}x",
                    f"{cost[name] / cost[new_name]:.2f}x",
                ]
            )
    if not rows:
        return []
    head = ["case", "system", "old default: text tokens/s (enc. tok/text tok)", "new default", "new / old", "expected"]
    title = "### Long documents: the new default (mode=auto) against the old one (late, stride content/2), same run"
    return ["", title, "", *table(head, rows)]


def markdown(results: dict[str, Any], smoke: bool = False) -> str:
    """The tables of a run. A smoke run (`--quick`) shows only what was timed: no ratios, no targets."""
    if smoke:
        results = {**results, **{key: {} for key in _MEASURED_ONLY}, "floor": {}, "span_pooling": {}, "targets": []}
    names = list(results["cases"])
    ratios = bool(results["ratios_vs_st"] or results["vs_fastembed"])
    lines = [*([SMOKE_NOTE, ""] if smoke else []), _load_line(results), ""]
    m = results.get("machine", {})
    if m.get("cpu"):  # the encoder's speed depends on the CPU's kernels: recorded with every run
        lines += [f"CPU: {m['cpu']}; flags: {' '.join(m.get('cpu_flags', [])) or 'not recorded'}", ""]
    providers = {k: v for k, v in results.get("providers", {}).items() if v}
    if providers:  # which engine ran each system: a CPU and a GPU run must never be confused
        lines += ["Runs on: " + "; ".join(f"{k}: {v}" for k, v in providers.items()), ""]
    header = ["case", "system", "n", "median s", "tokens/s", "docs/s", "p50 ms", "p95 ms", "p99 ms"]
    rows = []
    for name in names:
        for label, by_case in results["stats"].items():
            st = by_case.get(name)
            if st is None:
                continue
            system, _, variant = label.partition("/")
            vs_st = results["ratios_vs_st"].get(label, {}).get(name)
            vs_fe = results["vs_fastembed"].get(variant, {}).get(name) if system == "longvec" else None
            rows.append(
                [
                    name,
                    label,
                    st["n"],
                    f"{st['median_s']:.3f}",
                    f"{st['tokens_per_s']:.0f}",
                    f"{st['docs_per_s']:.2f}",
                    f"{st['p50_ms']:.1f}",
                    f"{st['p95_ms']:.1f}",
                    f"{st['p99_ms']:.1f}",
                    *([_x(vs_st), _x(vs_fe)] if ratios else []),
                ]
            )
    if rows:
        lines += ["### Throughput and latency (median of n interleaved repeats)", ""]
        lines += table([*header, *(["vs ST", "vs fastembed"] if ratios else [])], rows)
    else:
        lines += ["No system produced timings (see Unavailable below)."]
    if results["overhead_pct"]:
        lines += ["", "### Runtime overhead: 1 - bare onnxruntime loop / longvec end to end, same windows", ""]
        lines += _per_case(names, results["overhead_pct"], "{:.1f}%")
    if results.get("overhead_in_call_pct"):
        lines += ["", "### Runtime overhead within each call: 1 - time inside the encoder backend / end to end", ""]
        lines += _per_case(names, results["overhead_in_call_pct"], "{:.1f}%")
    if results["cold_start_median"]:
        lines += ["", "### Cold start: import + load + first embedding in a fresh interpreter (median)", ""]
        lines += table(
            ["system", "n", "seconds", "process wall s", "peak RSS MB"],
            (
                [label, c["n"], f"{c['seconds']:.3f}", f"{c['process_seconds']:.3f}", f"{c['peak_rss_mb']:.0f}"]
                for label, c in results["cold_start_median"].items()
            ),
        )
    floor = results.get("floor") or {}
    if "fp32_gflops" in floor:
        lines += [
            "",
            f"### Compute floor: fp32 GEMM {floor['fp32_gflops']:.1f} GFLOP/s (NumPy), int8 "
            f"{floor['int8_gops']:.1f} GOP/s (onnxruntime {floor.get('int8_op', 'MatMulInteger')}), "
            f"{floor['threads']} threads; fraction of that rate the encoder reaches",
            "",
        ]
        lines += _per_case(names, results["floor_fraction"], "{:.0%}")
    if not smoke:
        lines += old_vs_new_default(results)
    span = results.get("span_pooling") or {}
    if "ratio" in span:
        lines += [
            "",
            f"### Span pooling: {span['tokens']} x {span['dim']} into {span['spans']} spans: span_mean "
            f"{span['span_mean_ms']:.1f} ms, states.sum() {span['sum_ms']:.1f} ms, ratio {span['ratio']:.2f}",
        ]
    if results["targets"]:
        lines += ["", "### Targets", ""]
        holds = {True: "yes", False: "**no**", None: "n/a"}
        lines += table(
            ["target", "measured", "limit", "holds"],
            (
                [t["target"], "" if t["value"] is None else f"{t['value']:.3g}", t["limit"], holds[t["holds"]]]
                for t in results["targets"]
            ),
        )
    if results["unavailable"]:
        lines += ["", "Unavailable: " + "; ".join(f"{k}: {v}" for k, v in results["unavailable"].items())]
    plot = _plot_line(results)
    if plot:
        lines += ["", plot]
    return "\n".join(lines)


def _plot_line(results: dict[str, Any]) -> str:
    """Where the plot went, or why there is none and what installs it."""
    if "plot" not in (results.get("config", {}).get("extras") or ()):
        return ""
    plot = results.get("plot")
    if not isinstance(plot, dict):
        return "Plot: skipped (the run ended before plotting)."
    if "plot" in plot:
        return f"Plot: {plot['plot']}"
    error = str(plot.get("error", "unknown reason"))
    if "matplotlib" in error:
        return "Plot: skipped, matplotlib is not installed (pip install matplotlib)."
    return f"Plot: skipped ({error})."


def _per_case(names: list[str], by_variant: dict[str, dict[str, float]], fmt: str) -> list[str]:
    """One row per variant, one column per case (empty where the case did not run)."""
    return table(
        ["variant", *names],
        (
            [variant, *(fmt.format(by_case[n]) if n in by_case else "" for n in names)]
            for variant, by_case in by_variant.items()
        ),
    )


def _x(ratio: float | None) -> str:
    return "" if ratio is None else f"{ratio:.2f}x"


if __name__ == "__main__":  # re-print the tables of a results.json: PYTHONPATH=bench python -m harness.report FILE
    import json
    import sys
    from pathlib import Path

    print(markdown(json.loads(Path(sys.argv[1]).read_text())))
