"""`longvec bench`: the repository's harness (bench/harness/) end to end on the real bundle (quick sizes, longvec +
bare onnxruntime only), run through the installed command's pointer; the workload it builds (every system is given
the same windows); and the wheel boundary: nothing installed reaches into bench/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from harness.workloads import build_cases, read_corpus

from longvec.runtime import Embedder

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("LONGVEC_DATA", "/work/shared/data")) / "squad-longdoc-dev"
CORPUS = [
    "The Amazon rainforest covers most of the Amazon basin of South America. " * 30,
    "Normans were the people who in the 10th and 11th centuries gave their name to Normandy. " * 30,
]


def test_bench_quick_writes_valid_json(bundle_dir: Path, tmp_path: Path, longvec_cli: list[str]) -> None:
    corpus = tmp_path / "docs.jsonl"
    paragraphs = "\n\n".join(" ".join(["keeper lamp dusk ships"] * (5 + 3 * k)) for k in range(8))  # 20-104 words
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in [*CORPUS, paragraphs]))
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps({"text": q}) + "\n" for q in ("who were the normans?", "amazon basin")))
    out = tmp_path / "out"
    cmd = [*longvec_cli, "bench", str(bundle_dir), "--quick", "--variants", "optimized"]
    cmd += ["--systems", "longvec,bare-ort", "--extras", "none", "--out", str(out)]
    cmd += ["--corpus", str(corpus), "--queries", str(queries)]
    # at the checkout's root, as a user runs it: the pointer finds ./bench/harness
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    labels = {"longvec/optimized", "bare-ort/optimized"}
    assert set(results["stats"]) == labels
    names = {"query", "query-loaded", "2x64", "mixed-8", "doc-600", "doc-600-late-half"}
    assert set(results["cases"]) == names
    for label in labels:
        for name, st in results["stats"][label].items():
            assert st["n"] == 2, (label, name)
            assert st["median_s"] > 0 and st["tokens_per_s"] > 0
            assert st["p50_ms"] <= st["p95_ms"] <= st["p99_ms"]
    assert set(results["overhead_pct"]["optimized"]) == names
    in_call = results["overhead_in_call_pct"]["optimized"]  # time outside the encoder within longvec's own calls
    assert set(in_call) == names and all(0.0 < v < 100.0 for v in in_call.values())
    assert len(results["config"]["load_per_repeat"]) == 2 and done.stdout.splitlines()[2].startswith("Load average")
    # old vs new default is a ratio: not printed for a smoke run, but built from the same results
    assert "the new default (mode=auto) against" not in done.stdout
    from harness.report import old_vs_new_default

    assert any(line.startswith("| doc-600 | longvec/optimized |") for line in old_vs_new_default(results))
    cold = results["cold_start_median"]["longvec/optimized"]
    assert cold["n"] == 1 and cold["seconds"] > 0 and cold["peak_rss_mb"] > 50
    assert results["machine"]["cores"] >= 1 and "onnxruntime" in results["versions"]["longvec/optimized"]
    overheads = [t["target"] for t in results["targets"] if t["target"].startswith("runtime overhead on")]
    assert overheads == ["runtime overhead on query, optimized (%)"]  # no doc-8k here
    assert "| doc-600 | longvec/optimized |" in done.stdout
    assert not (out / "workload.pkl").exists()
    # a smoke run is not a measurement: no ratios, overheads or target verdicts, and no empty headings
    assert done.stdout.startswith("Smoke run (--quick)")
    for absent in ("vs ST", "vs fastembed", "### Targets", "### Runtime overhead", "holds"):
        assert absent not in done.stdout, absent
    headings = [i for i, line in enumerate(done.stdout.splitlines()) if line.startswith("###")]
    lines = done.stdout.splitlines()
    assert all(any(x.startswith("|") for x in lines[i + 1 : i + 4]) for i in headings), done.stdout


def test_report_says_why_the_plot_is_missing() -> None:
    from harness.report import markdown

    results = json.loads(json.dumps(_MINIMAL))
    assert "Plot: skipped, matplotlib is not installed (pip install matplotlib)." in markdown(
        {**results, "plot": {"error": "ModuleNotFoundError: No module named 'matplotlib'"}}
    )
    assert "Plot: out/throughput.png" in markdown({**results, "plot": {"plot": "out/throughput.png"}})
    no_plot = markdown({**results, "config": {"extras": ["floor"]}})
    assert "Plot" not in no_plot and "### Targets" not in no_plot  # no targets, no heading


_MINIMAL = {
    "config": {"extras": ["plot"]},
    "cases": {"query": {}},
    "stats": {
        "longvec/optimized": {
            "query": {
                "n": 2,
                "median_s": 0.01,
                "tokens_per_s": 1.0,
                "docs_per_s": 1.0,
                "p50_ms": 1.0,
                "p95_ms": 1.0,
                "p99_ms": 1.0,
            }
        }
    },
    "ratios_vs_st": {},
    "vs_fastembed": {},
    "overhead_pct": {},
    "overhead_in_call_pct": {},
    "cold_start_median": {},
    "targets": [],
    "unavailable": {},
}


def test_bench_without_data_is_an_input_error_naming_the_flag_and_the_variable(
    bundle_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.__main__ import main

    from longvec.runtime.cli.main import EXIT_CODES
    from longvec.runtime.errors import InputError

    monkeypatch.delenv("LONGVEC_DATA", raising=False)
    assert main([str(bundle_dir), "--quick", "--variants", "optimized"]) == EXIT_CODES[InputError]
    err = capsys.readouterr().err
    assert "--data DIR" in err and "LONGVEC_DATA" in err and "--corpus" in err
    monkeypatch.setenv("LONGVEC_DATA", str(tmp_path))  # a root without the set: the missing file is named
    assert main([str(bundle_dir), "--quick", "--variants", "optimized"]) == EXIT_CODES[InputError]
    assert f"{tmp_path}/squad-longdoc-dev/documents.jsonl: no such file" in capsys.readouterr().err


def test_workload_gives_every_system_the_same_windows(embedder: Embedder) -> None:
    corpus = read_corpus(DATA / "documents.jsonl") if (DATA / "documents.jsonl").is_file() else CORPUS * 20
    cases = build_cases(embedder.tokenizer, embedder.manifest, corpus, ["a query"], [(3, 64)], [2048])
    query, loaded, batch, doc, old = cases
    assert [c.name for c in cases] == ["query", "query-loaded", "3x64", "doc-2k", "doc-2k-late-half"]
    assert loaded.loaded and not query.loaded and loaded.calls == query.calls
    assert old.only == ("longvec", "bare-ort") and old.options == {"mode": "late", "stride": plan_half(embedder)}
    # passages framed to exactly 64 positions, one call, no splitting
    assert [len(t) + 2 for t in embedder.tokenizer.encode(batch.calls[0])] == [64, 64, 64]
    (ids, mask), *more = batch.encoder_calls[0]
    assert not more and ids.shape == (3, 64) and mask.all()
    # the document: exactly 2048 tokens; the bare loop sees longvec's windows, peers get the text of each one
    assert embedder.count_tokens(doc.calls[0]) == [2048]
    # the old default (late, half-overlapping windows): the windows alone
    plan = embedder.plan(stride=plan_half(embedder))
    n_windows = plan.n_windows(2048)
    assert sum(b[0].shape[0] for b in old.encoder_calls[0]) == n_windows == len(old.peer_calls[0])
    assert all(b[0].shape[1] == plan.window for b in old.encoder_calls[0])
    lengths = embedder.count_tokens(old.peer_calls[0])
    assert abs(np.mean(lengths) - plan.content) <= 2  # re-tokenizing a window's text gives (about) its tokens
    # the default: its windows, and for naive or blend every chunk encoded alone too, by longvec and the peers
    [res] = embedder.embed_documents(doc.calls[0])
    stride = embedder.defaults.stride(embedder.plan().content)
    windows = 0 if res.mode == "naive" else embedder.plan(stride=stride).n_windows(2048)
    alone = len(res.chunk_spans) if res.mode in ("naive", "blend") else 0
    assert sum(b[0].shape[0] for b in doc.encoder_calls[0]) == windows + alone == len(doc.peer_calls[0])
    assert query.encoder_calls[0][0][0].shape == (1, len(embedder.tokenizer.encode(["a query"])[0]) + 2)


def plan_half(embedder: Embedder) -> int:
    return embedder.plan().content // 2


@pytest.mark.slow
def test_bench_quick_with_peers(bundle_dir: Path, tmp_path: Path, longvec_cli: list[str]) -> None:
    """sentence-transformers and fastembed workers (fastembed from a private install, see bench/peers.py)."""
    out = tmp_path / "out"
    cmd = [*longvec_cli, "bench", str(bundle_dir), "--quick", "--variants", "optimized"]
    cmd += ["--bench-dir", str(REPO / "bench"), "--peer-path", str(REPO / ".bench" / "fastembed-site")]
    cmd += ["--extras", "floor,span", "--out", str(out), "--data", str(DATA.parent)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert not results["unavailable"], results["unavailable"]
    assert set(results["ratios_vs_st"]) == {"longvec/optimized", "bare-ort/optimized", "fastembed/optimized"}
    peer_cases = {n for n in results["cases"] if not n.endswith("-late-half")}  # old-default rows: longvec only
    assert set(results["vs_fastembed"]["optimized"]) == peer_cases
    assert results["floor"]["fp32_gflops"] > 0 and results["span_pooling"]["ratio"] > 0
    assert {"longvec/optimized", "sentence-transformers", "fastembed/optimized"} <= set(results["cold_start_median"])


def test_bench_outside_a_checkout_says_where_the_harness_is(tmp_path: Path, longvec_cli: list[str]) -> None:
    done = subprocess.run(
        [*longvec_cli, "bench", "some-bundle", "--quick"], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 5, done.stderr
    assert done.stderr.count("\n") == 1 and "bench/harness/" in done.stderr and "--bench-dir" in done.stderr


def test_nothing_installed_reaches_into_the_repository() -> None:
    """The wheel holds no harness, no project targets and no loader of repository files."""
    import longvec

    installed = Path(longvec.__file__).parent
    assert not (installed / "runtime" / "bench").exists()
    for path in installed.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for reach in ("spec_from_file_location", "import harness", "from harness", "peers.py", "def _targets("):
            assert reach not in text, f"{path.relative_to(installed)}: {reach}"


def test_a_stage_line_says_how_the_stage_ended(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`bench --quick` printed `compute floor` and `span pooling` with nothing under them."""
    from harness.runner import BenchConfig, _stage

    cfg = BenchConfig(tmp_path, [], [], 1, 1, tmp_path, tmp_path, tmp_path, None)
    assert "error" in _stage("compute floor", cfg, "no-such-script.py", [])
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("compute floor: not measured: needs the repository's bench/no-such-script.py"), line


@pytest.mark.parametrize("script", ["fastembed_anchor.py", "quality.py"])
def test_bench_scripts_answer_help_and_write_nothing_into_the_checkout_by_default(script: str, tmp_path: Path) -> None:
    """fastembed_anchor.py --help ended in a traceback (fastembed is not a dependency); quality.py wrote its results
    under bench/out of the checkout whatever the current folder."""
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    text = " ".join(done.stdout.split())
    assert "--out" in text and "current folder" in text
    source = (REPO / "bench" / script).read_text(encoding="utf-8")
    assert 'parent / "out"' not in source
