"""Memory does not grow with document length: bench/memory.py in fresh subprocesses, fake encoder, real tokenizer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[3] / "bench" / "memory.py"


def test_peak_rss_of_10k_and_200k_token_documents_differs_by_less_than_100_mb(bundle_dir: Path, tmp_path: Path) -> None:
    # the documents API does everything embed() does plus 128-token late chunks
    out = tmp_path / "memory.json"
    cmd = [sys.executable, str(BENCH), "--backend", "fake", "--text", "synthetic", "--api", "documents"]
    cmd += ["--sizes", "10000,200000", "--bundle", str(bundle_dir), "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ.copy(), timeout=300)
    report = json.loads(out.read_text())
    small, large = report["rows"]
    assert (small["tokens"], large["tokens"]) == (10_000, 200_000)
    assert large["windows"] > 750 and large["chunks"] > 1500
    # one (tokens x hidden) float32 array of the large document alone would be 293 MB
    assert large["peak_mb"] - small["peak_mb"] < 100, report
