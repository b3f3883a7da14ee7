"""Batch jobs on the local engine: formats, vectors, resume after kill -9 and Ctrl-C, refusals, bad files."""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from longvec.runtime import Embedder
from longvec.runtime.cli.main import main
from longvec.runtime.jobs.corpus import Fields, check_record, parse_json_line
from longvec.runtime.jobs.local import PAUSE_ENV, JobOptions, run_local
from longvec.runtime.jobs.progress import Progress

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "lighthouses.txt"


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


def _start(
    longvec: list[str], bundle_dir: Path, source: Path, out: Path, gate: Gate | None = None
) -> subprocess.Popen[bytes]:
    args = [*longvec, "embed", str(bundle_dir), str(source), str(out), "--shard-size", "3", "--threads", "1"]
    env = {k: v for k, v in os.environ.items() if k != PAUSE_ENV}
    if gate is not None:
        env[PAUSE_ENV] = str(gate.path)
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


class Gate:
    """The job's pause hook (runtime/jobs/local.py, PAUSE_ENV): before publishing each shard the job writes the
    shard's index to the pipe `paused` and waits for a line on the pipe `go`. `wait` returns that index once the
    job has reached the gate; then the test lets it go on, or stops it at exactly that point. Nothing is timed:
    the pipes are the synchronization."""

    def __init__(self, path: Path) -> None:
        path.mkdir()
        os.mkfifo(path / "paused")
        os.mkfifo(path / "go")
        self.path = path

    def wait(self, proc: subprocess.Popen[bytes]) -> int:
        """Block until the job reports it is at its gate; returns the index of the shard it holds back."""
        return int(_with_watchdog(proc, self.path / "paused", lambda: (self.path / "paused").read_text()))

    def release(self, proc: subprocess.Popen[bytes]) -> None:
        """Let the job publish that shard and go on (to its next gate)."""
        _with_watchdog(proc, self.path / "go", lambda: (self.path / "go").write_text("go\n"))


def _with_watchdog(proc: subprocess.Popen[bytes], pipe: Path, use: Callable[[], Any], timeout: float = 120.0) -> Any:
    """Run `use` (which opens `pipe` and blocks until the job opens the other end) in a thread; fail, instead of
    hanging, if the job exits or `timeout` passes first."""
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(use()), daemon=True)
    worker.start()
    deadline = time.monotonic() + timeout
    while worker.is_alive() and proc.poll() is None and time.monotonic() < deadline:
        worker.join(timeout=0.5)  # a watchdog for a job that dies before its gate, not a delay
    worker.join(timeout=0.5)  # the job may have opened the pipe just as it exited
    if not result:
        # open the other end ourselves so the blocked thread returns, then report
        fd = os.open(pipe, (os.O_WRONLY if pipe.name == "paused" else os.O_RDONLY) | os.O_NONBLOCK)
        worker.join()
        os.close(fd)
        stderr = proc.stderr.read().decode() if proc.poll() is not None and proc.stderr else ""
        raise AssertionError(f"the job never reached its gate (exit {proc.poll()}): {stderr}")
    return result[0]


def _shards(out: Path) -> list[int]:
    return sorted(map(int, json.loads((out / "_progress.json").read_text())["shards"]))


def test_ctrl_c_then_kill_9_then_rerun_gives_every_document_exactly_once(
    tmp_path: Path, bundle_dir: Path, longvec_cli: list[str]
) -> None:
    docs = good_docs()
    source = write_jsonl(tmp_path / "in.jsonl", docs, bad=True)
    out = tmp_path / "out"
    n_shards = -(-(len(docs) + len(BAD_LINES)) // 3)
    gate = Gate(tmp_path / "gate")

    # Ctrl-C while shard 1 is written but not yet published: exit 130, its temporaries removed, shard 0 kept
    proc = _start(longvec_cli, bundle_dir, source, out, gate)
    assert gate.wait(proc) == 0
    gate.release(proc)
    assert gate.wait(proc) == 1
    assert _shards(out) == [0] and list(out.rglob(".part-00001.*.tmp"))
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr.decode()
    assert "Traceback" not in stderr.decode()
    state = json.loads((out / "_progress.json").read_text())
    assert list(state["shards"]) == ["0"] and not state["complete"]
    assert not list(out.rglob("*.tmp"))
    for table in ("documents", "chunks"):
        assert (out / table / "part-00000.parquet").is_file()
        assert not (out / table / "part-00001.parquet").exists()

    # kill -9 while shard 2 is written but not published: the resumed run did shard 1, left shard 2's temporaries
    proc = _start(longvec_cli, bundle_dir, source, out, gate)
    assert gate.wait(proc) == 1
    gate.release(proc)
    assert gate.wait(proc) == 2
    proc.kill()
    proc.wait(timeout=30)
    assert _shards(out) == [0, 1] and not json.loads((out / "_progress.json").read_text())["complete"]
    assert list(out.rglob(".part-00002.*.tmp"))  # what a killed job leaves; the rerun removes it

    # rerun: resumes and finishes
    proc = _start(longvec_cli, bundle_dir, source, out)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr.decode()
    assert "resuming: 2 shards (6 documents) already done" in stdout.decode()
    assert f"shard {n_shards - 1:05d}:" in stdout.decode()
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
    reasons = {e["id"]: e["reason"] for e in errors if e["id"] is not None}
    assert reasons == {
        "bad-empty": "text is empty or whitespace only; there is nothing to embed",
        "bad-type": "text is int, expected a string",
        "bad-missing": "missing text field 'text'",
        "bad-notokens": "text has no tokens for this model's tokenizer",
    }
    assert [e["position"] for e in errors] == sorted(e["position"] for e in errors)

    # a rerun with other options refuses clearly instead of mixing outputs
    code = main(["embed", str(bundle_dir), str(source), str(out), "--shard-size", "3", "--chunk-tokens", "64"])
    assert code == 4
    # and a rerun with the same options has nothing left to do
    proc = _start(longvec_cli, bundle_dir, source, out)
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
    (tmp_path / "notes.docx").write_text("x")
    cases = {
        "truncated.jsonl.gz": "truncated or corrupt",
        "no-text.parquet": "no column 'text' (columns: id, body)",
        "int-text.parquet": "column 'text' is int64, expected string",
        "fake.parquet": "not a readable Parquet file",
        "notes.docx": "not a corpus file",
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
    surrogate = parse_json_line('{"id": 1, "text": "a\\ud800"}', fields, 0, "f:1").error
    assert surrogate == "text is not valid Unicode (lone surrogate at 1)"
    assert check_record(0, "s", 1.5, "t", fields).error == "id is float, expected a string or integer"
    assert check_record(0, "s", True, "t", fields).error == "id is bool, expected a string or integer"
    assert check_record(0, "s", "a", None, Fields(text="body")).error == "missing text field 'body'"
    assert check_record(0, "s", "a", 3, fields).error == "text is int, expected a string"


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
