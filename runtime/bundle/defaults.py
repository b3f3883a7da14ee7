"""Which mode, window and stride a model's documents get by default (`mode="auto"`, `stride=None`).

The export writes the rule's choice into the manifest (`default_mode`, `default_window`,
`default_stride_fraction`); a bundle without those fields (exported before they existed) gets the same rule at
load time, and a caller's `mode=` / `window=` / `stride=` overrides either. The rule looks only at the length the
model was trained on:

- short-context models (trained on fewer than LONG_CONTEXT tokens, e.g. all-MiniLM-L6-v2 at 256): the window is
  the trained length (longer windows measurably hurt, ../shared/FINDINGS.md), and mode and stride are the
  cheapest setting whose paired bootstrap interval against the best setting includes zero on every evaluation set
  of bench/stride.py (bench/RESULTS.md, "Stride x mode");
- long-context models (trained on LONG_CONTEXT tokens or more): `late` with half-overlapping windows of the trained
  length, where late chunking is reported to help (Günther et al. 2024, Jina v2 at 8k). Not measured here: no
  long-context model installs on this machine. A documented rule, to be replaced by a measurement
  (`bench/stride.py --bundle`).
"""

from __future__ import annotations

from dataclasses import dataclass

from longvec.runtime.bundle.manifest import Manifest

LONG_CONTEXT = 1024  # trained tokens from which a model counts as long-context
SHORT_CONTEXT_MODE = "blend"
SHORT_CONTEXT_STRIDE = 0.75
LONG_CONTEXT_MODE = "late"
LONG_CONTEXT_STRIDE = 0.5


@dataclass(frozen=True)
class Defaults:
    mode: str
    window: int  # positions, framing and prompt included
    stride_fraction: float  # stride = max(1, floor(content x fraction)); 1.0 = windows do not overlap
    source: str  # "bundle" when the manifest recorded them, else "rule"

    def stride(self, content: int) -> int:
        return max(1, int(content * self.stride_fraction + 1e-9))  # 1e-9: 0.1 * 10 is 1.0, not 0.999…


def rule(max_positions: int, trained_max_tokens: int) -> Defaults:
    window = min(max_positions, trained_max_tokens)
    if trained_max_tokens >= LONG_CONTEXT:
        return Defaults(LONG_CONTEXT_MODE, window, float(LONG_CONTEXT_STRIDE), "rule")
    return Defaults(SHORT_CONTEXT_MODE, window, float(SHORT_CONTEXT_STRIDE), "rule")


def resolve(m: Manifest) -> Defaults:
    """The manifest's recorded defaults, each missing one from the rule."""
    r = rule(m.max_positions, m.trained_max_tokens)
    recorded = (m.default_mode, m.default_window, m.default_stride_fraction)
    return Defaults(
        m.default_mode or r.mode,
        m.default_window or r.window,
        m.default_stride_fraction or r.stride_fraction,
        "bundle" if all(x is not None for x in recorded) else "rule",
    )
