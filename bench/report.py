"""Markdown tables for bench/quality.py, and the splice into bench/RESULTS.md (only our own section)."""

from __future__ import annotations

from pathlib import Path

from harness.markdown import replace_section as markdown_section
from harness.markdown import table

SECTION = "## Retrieval quality"
END = "<!-- end of generated retrieval-quality tables -->"
MODE_ORDER = {"late": 0, "blend": 1, "naive": 2, "window_mean": 3, "truncate": 4, "bm25": 5}


def brief(row: dict) -> str:
    return (
        f"hit@1 {row['para_hit@1']:.3f} nDCG@10 {row['para_ndcg@10']:.3f} answer {row['answer_ndcg@10']:.3f} "
        f"doc(vec) {row.get('doc_ndcg@10_doc_vector', float('nan')):.3f} "
        f"doc(best) {row['doc_ndcg@10_best_chunk']:.3f} acc(vec/best) {row.get('doc_acc_doc_vector', float('nan')):.2f}"
        f"/{row['doc_acc_best_chunk']:.2f} ({row.get('seconds', 0):.0f} s)"
    )


def _f(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def _w(row: dict) -> str:
    if row["mode"] == "naive":
        return "— (alone)"
    return "—" if row["window"] is None else str(row["window"])


def _key(row: dict) -> tuple:
    return (MODE_ORDER.get(row["mode"], 9), row["chunk_tokens"], row["window"] or 0)


def squad_table(rows: list[dict]) -> list[str]:
    header = ["mode", "chunk tokens", "window", "hit@1", "hit@10", "MRR@10", "nDCG@10", "nDCG@10 answer gold"]
    out = []
    for r in sorted(rows, key=_key):
        # window_mean's chunk vectors are the late ones; truncate with chunks longer than the window has none
        chunk_level = r["mode"] != "window_mean" and r.get("n_chunks", 1) > 0
        cells = [r["para_hit@1"], r["para_hit@10"], r["para_mrr@10"], r["para_ndcg@10"], r["answer_ndcg@10"]]
        cells = cells if chunk_level else [None] * 5
        doc = [r.get("doc_ndcg@10_doc_vector"), r["doc_ndcg@10_best_chunk"] if chunk_level else None]
        c = "—" if r["mode"] == "window_mean" else r["chunk_tokens"]
        out.append([r["mode"], c, _w(r), *(_f(x) for x in cells + doc)])
    return table([*header, "doc nDCG@10 (doc vector)", "doc nDCG@10 (best chunk)"], out)


def hybrid_table(dense: list[dict], sparse: list[dict], hybrid: list[dict]) -> tuple[list[str], dict]:
    bm25 = {r["chunk_tokens"]: r for r in sparse}
    fused: dict[tuple, dict[str, dict]] = {}
    for r in hybrid:
        fused.setdefault((r["mode"], r["chunk_tokens"], r["window"]), {})[r["fusion"]] = r
    out = []
    best: dict = {"dense": None, "bm25": None, "fixed": None, "tuned": None}
    per_c: dict[int, dict[str, float]] = {}

    def better(slot: str, value: float, label: str, key: tuple = ()) -> None:
        if best[slot] is None or value > best[slot][0]:
            best[slot] = (value, label, key)

    for r in sorted(dense, key=_key):
        key = (r["mode"], r["chunk_tokens"], r["window"])
        if key not in fused:
            continue
        f, b = fused[key], bm25[r["chunk_tokens"]]
        convexes = {k: v for k, v in f.items() if k.startswith("convex")}
        tuned = max(convexes.items(), key=lambda kv: kv[1]["answer_ndcg@10"])
        label = f"{r['mode']} C={r['chunk_tokens']} W={_w(r)}"
        better("dense", r["answer_ndcg@10"], label)
        better("bm25", b["answer_ndcg@10"], f"bm25 C={r['chunk_tokens']}")
        for name in ("rrf", "convex0.5"):
            better("fixed", f[name]["answer_ndcg@10"], f"{label} + bm25, {name}", key)
        better("tuned", tuned[1]["answer_ndcg@10"], f"{label} + bm25, convex α={tuned[0][6:]}")
        c = per_c.setdefault(r["chunk_tokens"], {"dense": 0.0, "bm25": b["answer_ndcg@10"], "hybrid": 0.0})
        c["dense"] = max(c["dense"], r["answer_ndcg@10"])
        c["hybrid"] = max(c["hybrid"], f["rrf"]["answer_ndcg@10"], f["convex0.5"]["answer_ndcg@10"])
        cells = [
            f"{c['answer_ndcg@10']:.3f} / {c['para_ndcg@10']:.3f}" for c in (r, b, f["rrf"], f["convex0.5"], tuned[1])
        ]
        out.append([r["mode"], r["chunk_tokens"], _w(r), *cells, tuned[0][6:]])
    best["per_c"] = per_c
    header = ["dense row", "C", "W", "dense", "BM25", "RRF", "convex α=0.5", "convex, best α", "best α"]
    return table(header, out), best


def sweep_table(hybrid: list[dict], key: tuple) -> list[str]:
    rows = sorted(
        (r for r in hybrid if (r["mode"], r["chunk_tokens"], r["window"]) == key and r["fusion"].startswith("convex")),
        key=lambda r: float(r["fusion"][6:]),
    )
    return table(
        ["α (dense weight)", *(r["fusion"][6:] for r in rows)],
        [
            ["nDCG@10 answer gold", *(f"{r['answer_ndcg@10']:.3f}" for r in rows)],
            ["nDCG@10 paragraph gold", *(f"{r['para_ndcg@10']:.3f}" for r in rows)],
        ],
    )


def passkey_table(rows: list[dict]) -> list[str]:
    lengths = sorted({r["length"] for r in rows})
    configs: dict[tuple, dict[int, dict]] = {}
    for r in rows:
        configs.setdefault((r["kind"], r["mode"], r["chunk_tokens"], r["window"], r.get("fusion")), {})[r["length"]] = r
    out = []
    order = {"dense": 0, "sparse": 1, "hybrid": 2}
    for (kind, mode, c, w, fusion), by_len in sorted(
        configs.items(), key=lambda kv: (order[kv[0][0]], MODE_ORDER.get(kv[0][1], 9), kv[0][2], kv[0][3] or 0)
    ):
        if fusion not in (None, "rrf", "convex0.5"):
            continue
        targets = [("doc vector", "doc_acc_doc_vector")] if kind == "dense" else []
        if mode != "window_mean" and all(r.get("n_chunks", 1) > 0 for r in by_len.values()):
            label = "best chunk" if kind == "dense" else f"best chunk ({mode if kind == 'sparse' else fusion})"
            targets.append((label, "doc_acc_best_chunk"))
        for label, field in targets:
            accs = [by_len[n].get(field) for n in lengths]
            shown = [f"{a:.2f}" if a is not None else "—" for a in accs]
            low = min((a for a in accs if a is not None), default=None)
            what = "bm25" if kind == "sparse" else mode
            wcell = "— (alone)" if mode == "naive" else ("—" if w is None else str(w))
            out.append([label, what, c, wcell, *shown, _f(low)])
    return table(["retrieval", "mode", "C", "W", *lengths, "min"], out)


def markdown(meta: dict, rows: list[dict]) -> str:
    lines = [SECTION, ""]
    lines.append(
        f"Produced by `{meta['command']}` ({meta['bundle']}, {meta['variant']} variant, {meta['threads']} threads, "
        f"{meta['date']}, commit {meta.get('commit', '?')}, {meta['seconds']:.0f} s; "
        f"the encoder ran {meta['encoded_tokens']:,} of "
        f"{meta['requested_tokens']:,} requested tokens, the rest were memoized repeats)."
    )
    squad = [r for r in rows if r["set"] == "squad-longdoc-dev"]
    if squad:
        dense = [r for r in squad if r["kind"] == "dense"]
        sparse = [r for r in squad if r["kind"] == "sparse"]
        hybrid = [r for r in squad if r["kind"] == "hybrid"]
        lines += ["", "### squad-longdoc-dev: dense and BM25 rows", ""]
        lines += [
            "All chunks of all articles ranked per question. Chunk metrics use the answer's paragraph as gold "
            "(a chunk counts when it overlaps it); *answer gold* counts a chunk when it overlaps the answer span. "
            "Document nDCG@10 ranks the articles by their document vector or by their best chunk. "
            "`window_mean` differs from `late` only in the document vector (mean of the windows' own poolings). "
            "`truncate` keeps only the chunks inside the first window. BM25 is longvec's `chunk_sparse` with IDF "
            "over the chunk collection.",
            "",
        ]
        lines += squad_table(dense + sparse)
        if hybrid:
            table, best = hybrid_table(dense, sparse, hybrid)
            lines += ["", "### squad-longdoc-dev: hybrid (dense + BM25 over the same chunks)", ""]
            lines += ["Each cell: nDCG@10 answer gold / nDCG@10 paragraph gold. RRF k=60 over each top 100.", ""]
            lines += table
            d, b, fx, tu = best["dense"], best["bm25"], best["fixed"], best["tuned"]
            margin = fx[0] - max(d[0], b[0])
            lines += [
                "",
                f"- best dense: {d[1]} {d[0]:.4f}; best BM25: {b[1]} {b[0]:.4f} (answer-gold nDCG@10)",
                f"- best hybrid with a fixed fusion (RRF or α=0.5, no tuning): {fx[1]} {fx[0]:.4f}, margin "
                f"{margin:+.4f} over the better of the two (done-line: +0.02) — "
                f"{'met' if margin >= 0.02 else 'NOT met'}",
                f"- best hybrid with α tuned on these same queries (optimistic): {tu[1]} {tu[0]:.4f}, margin "
                f"{tu[0] - max(d[0], b[0]):+.4f}",
                "- per chunk size, best fixed-fusion hybrid vs the better of the best dense row and BM25 at that size: "
                + "; ".join(
                    f"C={c}: {v['hybrid']:.3f} vs {max(v['dense'], v['bm25']):.3f} "
                    f"({v['hybrid'] - max(v['dense'], v['bm25']):+.3f})"
                    for c, v in sorted(best["per_c"].items())
                ),
            ]
            lines += ["", f"Convex-combination sweep for {fx[1].split(' + ')[0]} + BM25:", ""]
            lines += sweep_table(hybrid, fx[2])
    pk = [r for r in rows if r["set"].startswith("passkey")]
    if pk:
        n = sorted({(r["n_docs"], r["n_queries"]) for r in pk})
        lines += ["", "### passkey: accuracy (nDCG@1) per length in tokens", ""]
        lines += [
            f"Documents per length / queries: {', '.join(f'{a} / {b}' for a, b in n)} (the queried documents first; "
            "the others are distractors with their own needles). *doc vector*: documents ranked by one vector; "
            "*best chunk*: by their best chunk.",
            "",
        ]
        lines += passkey_table(pk)
    lines += ["", END]
    return "\n".join(lines) + "\n"


def replace_section(path: Path, text: str) -> None:
    """Replace our generated section (up to the END marker) or append it; other sections stay as they are."""
    markdown_section(path, SECTION, text, END)
