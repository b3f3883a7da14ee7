"""Batch jobs on the local engine: formats, vectors, resume after kill -9 and Ctrl-C, refusals, bad files."""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from longvec.runtime import Embedder
from longvec.runtime.cli.main import main
from longvec.runtime.jobs.corpus import Fields, check_record, parse_json_line
from longvec.runtime.jobs.local import JobOptions, run_local
from longvec.runtime.jobs.progress import Progress

LONGVEC = [sys.executable, "-c", "import sys; from longvec.runtime.cli.main import main; sys.exit(main())"]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "lighthouses.txt"


def good_docs() -> list[dict[str, Any]]:
    """Paragraphs of the example, short and long, and a document several windows long (an int id)."""
    text = EXAMPLE.read_text(encoding="utf-8")
    paragraphs = [p for p in text.split("\n\n") if p.strip()][:13]
    return [{"id": f"p{i}", "text": p} for i, p in enumerate(paragraphs)] + [{"id": 1000, "text": text[:2600]}]


BAD_LINES = [
    ("this line is not JSON", None),
    (json.dumps({"id": "bad-empty", "text": "  \n"}), "bad-empty"),
    (json.dumps({"id": "bad-type", "text": 42}), "bad-type"),
    (json.dumps({"text": "a document without an id"}), None),
    (json.dumps({"id": "bad-missing"}), "bad-missing"),
    (json.dumps({"id": "bad-notokens", "text": "\u200b\u200b"}), "bad-notokens"),
]


def write_jsonl(path: Path, docs: list[dict[str, Any]], bad: bool = False) -> Path:
    lines = [json.dumps(d) for d in docs]
    if bad:  # spread the bad documents through the input, so they land in different shards
        for k, (line, _) in enumerate(BAD_LINES):
            lines.insert(3 + 5 * k, line)
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def read_output(out: Path) -> tuple[pa.Table, pa.Table]:
    docs = pq.read_table(out / "documents").sort_by("id")
    chunks = pq.read_table(out / "chunks").sort_by([("id", "ascending"), ("chunk_index", "ascending")])
    return docs, chunks


def vectors(column: pa.ChunkedArray) -> np.ndarray:
    return np.stack(column.to_numpy(zero_copy_only=False))


def errors_of(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]


def test_jsonl_gzip_and_parquet_give_identical_outputs_equal_to_the_library(
    tmp_path: Path, bundle_dir: Path, embedder: Embedder
) -> None:
    docs = good_docs()
    inputs = {
        "jsonl": write_jsonl(tmp_path / "in.jsonl", docs),
        "gz": write_jsonl(tmp_path / "in.jsonl.gz", docs),
        "parquet": tmp_path / "in.parquet",
    }
    pq.write_table(pa.table({"id": [str(d["id"]) for d in docs], "text": [d["text"] for d in docs]}), inputs["parquet"])
    options = JobOptions(chunk_tokens=64, shard_size=10, threads=2)
    outputs = {}
    for name, path in inputs.items():
        summary = run_local(bundle_dir, path, tmp_path / f"out-{name}", options)
        assert (summary.documents, summary.errors, summary.shards_written) == (len(docs), 0, 2)
        outputs[name] = read_output(tmp_path / f"out-{name}")
    ref_docs, ref_chunks = outputs["jsonl"]
    for name in ("gz", "parquet"):
        got_docs, got_chunks = outputs[name]
        assert got_docs.column_names == ["id", "n_tokens", "vector"]
        assert got_chunks.column_names == ["id", "chunk_index", "char_start", "char_end", "vector"]
        for ref, got in ((ref_docs, got_docs), (ref_chunks, got_chunks)):
            for column in ref.column_names:
                if column != "vector":
                    assert got[column].equals(ref[column]), (name, column)
            np.testing.assert_allclose(vectors(got["vector"]), vectors(ref["vector"]), atol=1e-6)
    assert pq.read_schema(tmp_path / "out-jsonl" / "documents" / "part-00000.parquet").field("vector").type == (
        pa.list_(pa.float32(), embedder.dim)
    )

    # vectors and spans equal what the library gives for the same text
    lib = embedder.embed_documents([d["text"] for d in docs], chunk_tokens=64)
    by_id = {str(d["id"]): r for d, r in zip(docs, lib)}
    chunk_vecs = vectors(ref_chunks["vector"])
    for i, doc_id in enumerate(ref_docs["id"].to_pylist()):
        result = by_id[doc_id]
        assert ref_docs["n_tokens"][i].as_py() == result.n_tokens
        assert float(vectors(ref_docs["vector"][i : i + 1])[0] @ result.vector) >= 0.99999
        rows = np.flatnonzero(np.array(ref_chunks["id"].to_pylist()) == doc_id)
        spans = np.stack([ref_chunks["char_start"].to_numpy()[rows], ref_chunks["char_end"].to_numpy()[rows]], 1)
        np.testing.assert_array_equal(spans, result.chunk_spans)
        cos = np.sum(chunk_vecs[rows] * result.chunk_vectors, axis=1)
        assert cos.min() >= 0.99999, doc_id
    assert max(r.n_windows for r in lib) > 1  # the long document really went through several windows


def test_sparse_adds_bm25_columns_equal_to_the_library(tmp_path: Path, bundle_dir: Path, embedder: Embedder) -> None:
    docs = good_docs()[3:6]
    run_local(bundle_dir, write_jsonl(tmp_path / "in.jsonl", docs), tmp_path / "out", JobOptions(sparse=True))
    chunks = pq.read_table(tmp_path / "out" / "chunks")
    assert chunks.column_names[-2:] == ["sparse_indices", "sparse_values"]
    lib = embedder.embed_documents([d["text"] for d in docs], sparse=True)
    expected = [v for r in lib for v in r.chunk_sparse or []]
    assert chunks["sparse_indices"].to_pylist() == [v.indices.tolist() for v in expected]
    got = np.concatenate([np.asarray(v, np.float32) for v in chunks["sparse_values"].to_pylist()])
    np.testing.assert_allclose(got, np.concatenate([v.values for v in expected]), rtol=1e-6)


def _start(bundle_dir: Path, source: Path, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    args = [*LONGVEC, "embed", str(bundle_dir), str(source), str(out), "--shard-size", "3", "--threads", "1", *extra]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for_shards(proc: subprocess.Popen[bytes], out: Path, n: int, timeout: float = 60.0) -> int:
    """Poll the manifest until at least n shards are recorded; returns how many there were."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"job ended early ({proc.returncode}): {proc.stderr.read().decode()}")  # type: ignore[union-attr]
        try:
            done = len(json.loads((out / "_progress.json").read_text())["shards"])
        except (OSError, ValueError, KeyError):
            done = 0
        if done >= n:
            return done
        time.sleep(0.02)
    raise AssertionError("no shard finished in time")


def test_ctrl_c_then_kill_9_then_rerun_gives_every_document_exactly_once(tmp_path: Path, bundle_dir: Path) -> None:
    # Four copies (distinct ids): on an idle machine seven shards finished before the Ctrl-C arrived.
    docs = [
        {**d, "id": d["id"] + 10 * copy if isinstance(d["id"], int) else f"{d['id']}-{copy}"}
        for copy in range(4)
        for d in good_docs()
    ]
    source = write_jsonl(tmp_path / "in.jsonl", docs, bad=True)
    out = tmp_path / "out"
    n_shards = -(-(len(docs) + len(BAD_LINES)) // 3)

    # Ctrl-C: exit 130, no temporaries, a consistent manifest
    proc = _start(bundle_dir, source, out)
    _wait_for_shards(proc, out, 1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr.decode()
    assert "Traceback" not in stderr.decode()
    state = json.loads((out / "_progress.json").read_text())
    assert 1 <= len(state["shards"]) < n_shards and not state["complete"]
    assert not list(out.rglob("*.tmp"))
    for index in map(int, state["shards"]):
        for table in ("documents", "chunks"):
            assert (out / table / f"part-{index:05d}.parquet").is_file()

    # kill -9 in the middle of a later shard
    proc = _start(bundle_dir, source, out)
    before = len(state["shards"])
    _wait_for_shards(proc, out, before + 1)
    proc.kill()
    proc.wait(timeout=30)
    assert not json.loads((out / "_progress.json").read_text())["complete"]

    # rerun: resumes and finishes
    proc = _start(bundle_dir, source, out)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr.decode()
    assert "resuming" in stdout.decode() and "shard 000" in stdout.decode()
    state = json.loads((out / "_progress.json").read_text())
    assert state["complete"] and len(state["shards"]) == n_shards
    assert not list(out.rglob("*.tmp"))

    got_docs, got_chunks = read_output(out)
    ids = got_docs["id"].to_pylist()
    assert sorted(ids) == sorted(str(d["id"]) for d in docs)  # every good document, exactly once
    assert len(set(zip(got_chunks["id"].to_pylist(), got_chunks["chunk_index"].to_pylist()))) == got_chunks.num_rows
    assert set(got_chunks["id"].to_pylist()) == set(ids)
    errors = errors_of(out)
    assert sorted(str(e["id"]) for e in errors) == sorted(str(doc_id) for _, doc_id in BAD_LINES)
    assert all(e["reason"] and e["source"].startswith("in.jsonl:") for e in errors)
    reasons = {e["id"]: e["reason"] for e in errors}
    assert "empty" in reasons["bad-empty"] and "int" in reasons["bad-type"]
    assert "missing text field" in reasons["bad-missing"] and "no tokens" in reasons["bad-notokens"]
    assert [e["position"] for e in errors] == sorted(e["position"] for e in errors)

    # a rerun with other options refuses clearly instead of mixing outputs
    code = main(["embed", str(bundle_dir), str(source), str(out), "--shard-size", "3", "--chunk-tokens", "64"])
    assert code == 4
    # and a rerun with the same options has nothing left to do
    proc = _start(bundle_dir, source, out)
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and f"0 shards written, {n_shards} already done" in stdout.decode()


def test_other_options_or_input_are_refused(tmp_path: Path, bundle_dir: Path, capsys: pytest.CaptureFixture) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", good_docs()[:4])
    out = tmp_path / "out"
    assert main(["embed", str(bundle_dir), str(source), str(out), "--shard-size", "2"]) == 0
    capsys.readouterr()
    assert main(["embed", str(bundle_dir), str(source), str(out), "--shard-size", "3"]) == 4
    assert "other options (shard_size: 2 -> 3)" in capsys.readouterr().err
    write_jsonl(source, good_docs()[:5])
    assert main(["embed", str(bundle_dir), str(source), str(out), "--shard-size", "2"]) == 4
    assert "the input changed" in capsys.readouterr().err
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    assert main(["embed", str(bundle_dir), str(source), str(stranger)]) == 4
    assert "not empty" in capsys.readouterr().err


def test_bad_files_give_a_clear_error(tmp_path: Path, bundle_dir: Path, capsys: pytest.CaptureFixture) -> None:
    data = gzip.compress(("\n".join(json.dumps(d) for d in good_docs()) + "\n").encode())
    (tmp_path / "truncated.jsonl.gz").write_bytes(data[: len(data) // 2])
    pq.write_table(pa.table({"id": ["a"], "body": ["some text"]}), tmp_path / "no-text.parquet")
    pq.write_table(pa.table({"id": ["a"], "text": [3]}), tmp_path / "int-text.parquet")
    (tmp_path / "fake.parquet").write_bytes(b"PAR1 not really")
    (tmp_path / "notes.txt").write_text("x")
    cases = {
        "truncated.jsonl.gz": "truncated or corrupt",
        "no-text.parquet": "no column 'text' (columns: id, body)",
        "int-text.parquet": "column 'text' is int64, expected string",
        "fake.parquet": "not a readable Parquet file",
        "notes.txt": "not a corpus file",
        "missing.jsonl": "no such file or directory",
    }
    for name, message in cases.items():
        code = main(["embed", str(bundle_dir), str(tmp_path / name), str(tmp_path / f"out-{name}")])
        err = capsys.readouterr().err
        assert code == 4, (name, err)
        assert message in err and name in err and "Traceback" not in err, (name, err)
        assert not (tmp_path / f"out-{name}").exists()  # refused before anything was written


def test_record_checks_name_the_problem() -> None:
    fields = Fields()
    assert parse_json_line(b'{"id": 7, "text": "hi"}', fields, 0, "f:1").id == "7"
    assert "not JSON" in (parse_json_line(b"{oops", fields, 0, "f:1").error or "")
    assert "not UTF-8" in (parse_json_line(b'{"id": "\xff"}', fields, 0, "f:1").error or "")
    assert "expected an object" in (parse_json_line(b"[1, 2]", fields, 0, "f:1").error or "")
    assert "lone surrogate" in (parse_json_line('{"id": 1, "text": "a\\ud800"}', fields, 0, "f:1").error or "")
    assert "id is float" in (check_record(0, "s", 1.5, "t", fields).error or "")
    assert "id is bool" in (check_record(0, "s", True, "t", fields).error or "")
    assert "missing text field 'body'" in (check_record(0, "s", "a", None, Fields(text="body")).error or "")


def test_progress_bar_draws_on_a_terminal_and_stays_quiet_otherwise() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    shown = Terminal()
    bar = Progress(total=10, done=2, stream=shown)  # 2 resumed documents do not count toward the rate
    bar.update(5, 700)
    bar.close()
    assert "7/10 docs" in shown.getvalue() and "tok/s" in shown.getvalue() and "ETA" in shown.getvalue()
    quiet = io.StringIO()
    bar = Progress(total=10, stream=quiet)
    bar.update(5, 700)
    bar.close()
    assert quiet.getvalue() == ""
    bar.log("shard 00000: 5 documents")
    assert quiet.getvalue() == "shard 00000: 5 documents\n"


def test_job_modules_import_without_pyarrow_ray_or_torch() -> None:
    code = (
        "import sys, longvec.runtime.jobs.local, longvec.runtime.cli.embed, longvec.runtime.jobs.ray_actor, "
        "longvec.runtime.jobs.ray_engine, longvec.runtime.cli.main; "
        "bad = [m for m in ('pyarrow', 'ray', 'torch', 'pandas') if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy())
    assert result.returncode == 0, result.stdout + result.stderr


def test_chunking_mode_window_and_prompt_flags_reach_the_vectors(tiny_bundle: Path, tmp_path: Path) -> None:
    texts = [
        "The keeper trimmed the wick. He wound the clock. Fog rolled in before dawn and the bell rang out. " * 3,
        "Sand drifts along the coast. Waves sort it into bars and spits.",
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(texts)))
    flags = ["--chunking", "sentences", "--mode", "naive", "--window", "32", "--prompt-name", "query"]
    assert main(["embed", str(tiny_bundle), str(source), str(tmp_path / "out"), "--chunk-tokens", "12", *flags]) == 0
    docs, chunks = read_output(tmp_path / "out")
    with Embedder.load(tiny_bundle, window=32, threads=1) as emb:
        want = emb.embed_documents(texts, chunking="sentences", mode="naive", chunk_tokens=12, prompt_name="query")
        plain = emb.embed_documents(texts, chunk_tokens=12)
    np.testing.assert_allclose(vectors(docs["vector"]), np.stack([w.vector for w in want]), atol=1e-6)
    np.testing.assert_allclose(vectors(chunks["vector"]), np.concatenate([w.chunk_vectors for w in want]), atol=1e-6)
    assert not np.allclose(vectors(docs["vector"]), np.stack([p.vector for p in plain]), atol=1e-3)
    options = json.loads((tmp_path / "out" / "_progress.json").read_text())["options"]
    assert (options["chunking"], options["mode"], options["prompt"], options["window"]) == (
        "sentences",
        "naive",
        "query: ",
        32,
    )
