"""bench/ holds scripts and the repository-only harness (bench/harness/): tests import them as the scripts do,
with bench/ on sys.path."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))
