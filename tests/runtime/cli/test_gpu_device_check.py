"""bench/gpu_device_check.sh --dry-run: every step of the GPU device check is printed in order, the CPU-only steps
run here (the bundle, the 50 documents, the CPU paths of gpu_check, whose JSON is written), the GPU steps are
printed only. The real run needs a GPU machine (NOT YET RUN on one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "bench" / "gpu_device_check.sh"
STEPS = [
    ("install", "gpu"),
    ("preload", "gpu"),
    ("bundle", "cpu"),
    ("docs", "cpu"),
    ("load", "gpu"),
    ("serve", "gpu"),
    ("ray", "gpu"),
    ("trt", "gpu"),
    ("check", "gpu"),
    ("check-cpu", "cpu"),
]


def dry_run(tmp_path: Path, bundle: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "OUT": str(tmp_path / "out"),
        "WORK": str(tmp_path),
        "BUNDLE": str(bundle),
        "PY": sys.executable,
    }
    return subprocess.run(
        ["bash", str(SCRIPT), "--dry-run"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False
    )


def test_dry_run_prints_every_step_and_runs_the_cpu_ones(tmp_path: Path, bundle_dir: Path) -> None:
    done = dry_run(tmp_path, bundle_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    headers = [line.split()[1:3] for line in lines if line.startswith("== ")]
    assert headers == [[name, f"[{kind}]"] for name, kind in STEPS]
    for name, kind in STEPS:
        after = lines[lines.index(next(x for x in lines if x.startswith(f"== {name} "))) + 1]
        assert after.strip().startswith("dry run: not run" if kind == "gpu" else "ok"), (name, after)
    assert "longvec serve" not in done.stdout or "--device cuda" in done.stdout
    assert len((tmp_path / "docs.jsonl").read_text().splitlines()) == 50
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    [row] = report["paths"]
    assert row["path"] == "cpu:optimized" and row["tokens_per_s"] > 0
    assert row["parity_vs_cpu_fp32"]["min_cosine_chunks"] > 0.9999
    from longvec.runtime.bundle.reader import Bundle

    assert (
        report["workload"]["hidden_size"] == Bundle.open(bundle_dir).manifest.hidden_size
        and report["versions"]["onnxruntime"]
    )
    assert "steps failed: none" in done.stdout and "steps skipped: none" in done.stdout


def test_a_failing_step_fails_the_check_and_is_named(tmp_path: Path) -> None:
    done = dry_run(tmp_path, tmp_path / "no-such-bundle")
    assert done.returncode != 0
    assert "steps failed: docs check-cpu" in done.stdout
