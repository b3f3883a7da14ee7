"""Plot of `longvec bench` results: tokens/s against document length, one line per system (log-x).

python bench/plot.py bench/out/results.json bench/out/throughput.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = json.loads(Path(argv[0]).read_text())
    docs = [n for n, c in results["cases"].items() if c["kind"] == "document"]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for label, by_case in results["stats"].items():
        points = [(results["cases"][n]["tokens"], by_case[n]["tokens_per_s"]) for n in docs if n in by_case]
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o", label=label, linestyle="--" if label.startswith("bare-ort") else "-")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("document length (tokens)")
    ax.set_ylabel("document tokens / s")
    m = results["machine"]
    ax.set_title(f"{m.get('cpu', '?')}, {results['config']['threads']} threads", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(argv[1])
    print(json.dumps({"plot": argv[1]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
