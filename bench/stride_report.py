"""Markdown tables for bench/stride.py: per set, one row per (mode, stride), each scorer's mean and its paired
bootstrap interval against the best row of that scorer; then the cheapest row the tie rule allows."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SCORERS = {
    "firsthit_answer": "first-hit nDCG@10, answer gold",
    "firsthit_passage": "first-hit nDCG@10, paragraph gold",
    "overlap_answer": "quality.py nDCG@10, answer gold",
    "overlap_passage": "quality.py nDCG@10, paragraph gold",
    "top1_doc_best_chunk": "top chunk in the right document (passkey accuracy)",
    "doc_ndcg_doc_vector": "document nDCG@10 by the document vector",
}
MODE_ORDER = {"naive": 0, "late": 1, "blend": 2, "window_mean": 3}


def _set_name(row: dict) -> str:
    return "passkey" if row["set"].startswith("passkey-") else row["set"]


def merge(saved: list[dict]) -> dict[str, dict[tuple[str, str], dict]]:
    """set -> (mode, label) -> {cost, stride, scores: {scorer: per-query array}}; passkey lengths are pooled
    (their queries concatenated in length order), with the cost averaged over lengths weighted by tokens."""
    out: dict[str, dict[tuple[str, str], dict]] = {}
    for run in saved:
        for row in run["rows"]:
            key = (row["mode"], row["label"])
            entry = out.setdefault(_set_name(row), {}).setdefault(
                key, {"stride": row["stride"], "costs": [], "scores": {}, "parts": []}
            )
            entry["costs"].append(row["cost"])
            entry["parts"].append(row["set"])
            for scorer, values in row["per_query"].items():
                entry["scores"].setdefault(scorer, []).extend(values)
    for configs in out.values():
        for entry in configs.values():
            entry["cost"] = float(np.mean(entry["costs"]))
            entry["scores"] = {k: np.asarray(v) for k, v in entry["scores"].items()}
    return out


def _tied(diff: tuple[float, float, float]) -> bool:
    return diff[1] <= 0 <= diff[2]


def _cell(mean: float, diff: tuple[float, float, float] | None) -> str:
    if diff is None:
        return f"**{mean:.3f}** (best)"
    d, lo, hi = diff
    tie = "" if _tied(diff) else " ✗"
    return f"{mean:.3f} ({d:+.3f} [{lo:+.3f}, {hi:+.3f}]){tie}"


def set_table(name: str, configs: dict[tuple[str, str], dict], bootstrap: int, seed: int = 0) -> list[str]:
    scorers = [s for s in SCORERS if any(s in e["scores"] for e in configs.values())]
    n = {len(v) for e in configs.values() for v in e["scores"].values()}
    assert len(n) == 1, f"{name}: rows disagree on the number of queries {n}"
    n_queries = n.pop()
    idx = np.random.default_rng(seed).integers(0, n_queries, size=(bootstrap, n_queries))
    best = {}
    for s in scorers:
        have = {k: e["scores"][s].mean() for k, e in configs.items() if s in e["scores"]}
        best[s] = max(have, key=lambda k: have[k])
    keys = sorted(configs, key=lambda k: (MODE_ORDER.get(k[0], 9), configs[k]["stride"] or 0))
    parts = sorted(set(p for e in configs.values() for p in e["parts"]))
    lines = [
        f"### {name} ({n_queries} queries{'; ' + ', '.join(parts) if len(parts) > 1 else ''})",
        "",
        "| mode | stride | encoder tokens per text token | " + " | ".join(SCORERS[s] for s in scorers) + " |",
        "|---|---|---|" + "---|" * len(scorers),
    ]
    for k in keys:
        e = configs[k]
        cells = []
        for s in scorers:
            if s not in e["scores"]:
                cells.append("—")
                continue
            ref = configs[best[s]]["scores"][s]
            diff = None if k == best[s] else paired_interval(e["scores"][s], ref, idx)
            cells.append(_cell(float(e["scores"][s].mean()), diff))
        stride = "—" if e["stride"] is None else f"{k[1]} ({e['stride']})"
        lines.append(f"| {k[0]} | {stride} | {e['cost']:.2f} | " + " | ".join(cells) + " |")
    lines += ["", "Cheapest row tied with the best (interval includes 0), per scorer:", ""]
    for s in scorers:
        tied = []
        for k, e in configs.items():
            if s not in e["scores"]:
                continue
            ref = configs[best[s]]["scores"][s]
            if k == best[s] or _tied(paired_interval(e["scores"][s], ref, idx)):
                tied.append((e["cost"], k))
        cost, k = min(tied)
        lines.append(f"- {SCORERS[s]}: best {best[s][0]} {best[s][1]}; cheapest tied: **{k[0]} {k[1]}** ({cost:.2f})")
    return lines


def paired_interval(a: np.ndarray, best: np.ndarray, idx: np.ndarray) -> tuple[float, float, float]:
    d = a - best
    means = d[idx].mean(axis=1)
    return float(d.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


SUMMARY = ("firsthit_answer", "firsthit_passage")


def summary_table(merged: dict[str, dict[tuple[str, str], dict]], bootstrap: int, seed: int = 0) -> list[str]:
    """One column per set and first-hit scorer, one row per chunk-level configuration: difference to that
    column's best row with its interval; the rows tied in every column are the candidates of the tie rule."""
    columns = [
        (name, s)
        for name, configs in merged.items()
        for s in SUMMARY
        if any(s in e["scores"] for e in configs.values())
    ]
    keys = sorted(
        {k for configs in merged.values() for k, e in configs.items() if "firsthit_answer" in e["scores"]},
        key=lambda k: (MODE_ORDER.get(k[0], 9), FRACTION_ORDER.get(k[1], 0)),
    )
    head = [
        "mode",
        "stride",
        *(f"{name}: {SCORERS[s].split(',')[1].strip()}" for name, s in columns),
        "tied: decision sets",
        "tied: also all SQuAD questions",
    ]
    lines = [_row_md(head), _row_md(["---"] * len(head))]
    cost_cells: dict[tuple[str, str], list[float]] = {}
    cells: dict[tuple[str, str], list[str]] = {k: [] for k in keys}
    tied_all = {k: True for k in keys}
    tied_primary = {k: True for k in keys}
    for name, s in columns:
        configs = merged[name]
        n = len(next(iter(configs.values()))["scores"][s])
        idx = np.random.default_rng(seed).integers(0, n, size=(bootstrap, n))
        best = max((k for k in configs if s in configs[k]["scores"]), key=lambda k: configs[k]["scores"][s].mean())
        for k in keys:
            e = configs[k]
            cost_cells.setdefault(k, []).append(e["cost"])
            if k == best:
                cells[k].append(f"**{e['scores'][s].mean():.3f}** best")
                continue
            d, lo, hi = paired_interval(e["scores"][s], configs[best]["scores"][s], idx)
            tied_all[k] &= lo <= 0 <= hi
            if CHECK_ONLY not in name:
                tied_primary[k] &= lo <= 0 <= hi
            cells[k].append(f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]" + ("" if lo <= 0 <= hi else " ✗"))
    for k in keys:
        cost = np.mean(cost_cells[k])
        lines.append(
            _row_md([k[0], f"{k[1]} ({cost:.2f} enc./text tok.)", *cells[k], _yes(tied_primary[k]), _yes(tied_all[k])])
        )
    return lines


# The set of all SQuAD questions (up to ~5 per paragraph, so queries are clustered and a per-query bootstrap is too
# narrow) is a check, not a decision set; the 300-question sample has at most one question per paragraph.
CHECK_ONLY = "all 4,968 questions"


def _yes(x: bool) -> str:
    return "**yes**" if x else "no"


FRACTION_ORDER = {"—": 0, "content/2": 1, "5/8": 2, "3/4": 3, "7/8": 4, "1": 5}


def _row_md(cells: list) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def markdown(saved: list[dict], bootstrap: int, summary: bool = False) -> str:
    metas = [s["meta"] for s in saved]
    lines = [
        "",
        'Rows: chunk vectors of `embed_documents(chunking="tokens", chunk_tokens=C, mode=M, stride=S)`, all chunks of '
        "all documents ranked per query. Cells: mean (difference to the best row of that column "
        f"[paired bootstrap 95% interval over queries, {bootstrap} resamples]); ✗: the interval excludes 0. "
        "`window_mean` differs from `late` only in its document vector.",
        "",
    ]
    for m in metas:
        lines.append(
            f"- `{m['command']}`: {m['bundle']} ({m['variant']}), window {m['window']} (content {m['content']}), "
            f"C={m['chunk_tokens']}, {m['seconds']} s, {m['date']}, commit {m['commit']}"
        )
    lines.append("")
    merged = merge(saved)
    if summary:
        return "\n".join(summary_table(merged, bootstrap))
    for name, configs in merged.items():
        lines += [*set_table(name, configs, bootstrap), ""]
    return "\n".join(lines)


def replace_section(path: Path, text: str, section: str, end: str) -> None:
    """Replace (or append) the block from `section` to `end` in `path`."""
    old = path.read_text() if path.exists() else ""
    block = f"{section}\n{text}\n{end}\n"
    if section in old and end in old:
        head, rest = old.split(section, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        new = head + block + ("\n" + tail if tail else "")
    else:
        new = old.rstrip("\n") + "\n\n" + block
    path.write_text(new)
