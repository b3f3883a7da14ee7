"""A batch job never calls an inconsistent output complete: an input changed while it is read stops the job, a
finished shard damaged since is embedded again, SIGTERM stops it like Ctrl-C (resumable), and names in the input
that are not regular files are reported, not skipped. A finished job leaves no `_lock`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from longvec.runtime.cli.main import main
from longvec.runtime.errors import InputError
from longvec.runtime.jobs import local
from longvec.runtime.jobs.local import PAUSE_ENV, JobOptions, run_local

N_DOCS = 300  # ~24 KB of JSONL: more than one read buffer, so a rewrite mid-job reaches the reader


def docs(prefix: str, n: int = N_DOCS) -> list[dict[str, Any]]:
    return [{"id": f"{prefix}{i}", "text": f"document {i} about lighthouses, keepers and the sea"} for i in range(n)]


def write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in rows), encoding="utf-8")
    return path


def progress(out: Path) -> dict[str, Any]:
    return dict(json.loads((out / "_progress.json").read_text()))


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        (lambda p: write(p, docs("X")), "other contents"),  # rewritten in place: other ids, same count
        (lambda p: p.open("a").write(json.dumps({"id": "new", "text": "appended"}) + "\n"), "more records"),
        (lambda p: write(p, docs("d", 100)), "read "),  # truncated
    ],
)
def test_an_input_changed_during_the_job_stops_it_and_it_is_not_complete(
    change: Any, detail: str, tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write(tmp_path / "in.jsonl", docs("d"))
    out = tmp_path / "out"
    embed_records = local.embed_records
    calls = []

    def embed_then_change(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:  # after the first group of the first shard was read
            change(source)
        return embed_records(*args, **kwargs)

    monkeypatch.setattr(local, "embed_records", embed_then_change)
    with pytest.raises(InputError, match="changed while the job was reading it") as caught:
        run_local(tiny_bundle, source, out, JobOptions(shard_size=40, threads=1))
    assert detail in str(caught.value) and "--overwrite" in str(caught.value)
    state = progress(out)
    assert not state["complete"] and len(state["shards"]) < -(-N_DOCS // 40)
    assert not list(out.rglob("*.tmp"))
    monkeypatch.setattr(local, "embed_records", embed_records)
    with pytest.raises(InputError, match="the input changed"):  # the rerun is refused, never mixed further
        run_local(tiny_bundle, source, out, JobOptions(shard_size=40, threads=1))


def test_a_parquet_input_rewritten_during_the_job_stops_it(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def table(prefix: str) -> pa.Table:
        return pa.Table.from_pylist(docs(prefix, 60))

    source = tmp_path / "in.parquet"
    pq.write_table(table("d"), source)
    embed_records = local.embed_records

    def embed_then_change(*args: Any, **kwargs: Any) -> Any:
        pq.write_table(table("X"), source)
        return embed_records(*args, **kwargs)

    monkeypatch.setattr(local, "embed_records", embed_then_change)
    with pytest.raises(InputError, match="changed while the job was reading it"):
        run_local(tiny_bundle, source, tmp_path / "out", JobOptions(shard_size=20, threads=1))
    assert not progress(tmp_path / "out")["complete"]


def test_names_that_are_not_regular_files_are_reported(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    write(folder / "a.jsonl", docs("d", 2))
    (folder / "b.jsonl").symlink_to(tmp_path / "gone.jsonl")
    assert main(["embed", str(tiny_bundle), str(folder), str(tmp_path / "out")]) == 4
    assert "b.jsonl: a dangling symlink" in capsys.readouterr().err
    (folder / "b.jsonl").unlink()
    os.mkfifo(folder / "b.jsonl")
    assert main(["embed", str(tiny_bundle), str(folder), str(tmp_path / "out")]) == 4
    assert "b.jsonl: not a regular file" in capsys.readouterr().err
    assert main(["embed", str(tiny_bundle), str(folder / "b.jsonl"), str(tmp_path / "out")]) == 4
    assert "b.jsonl: not a regular file or directory" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_damaged_finished_shard_is_embedded_again_and_no_lock_is_left(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write(tmp_path / "in.jsonl", docs("d", 30))
    out = tmp_path / "out"
    argv = ["embed", str(tiny_bundle), str(source), str(out), "--shard-size", "10", "--threads", "1"]
    assert main(argv) == 0
    assert not (out / "_lock").exists()  # a finished job leaves no lock behind
    whole = pq.read_table(out / "documents").sort_by("id")
    part = out / "chunks" / "part-00001.parquet"
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])  # truncated by a copy cut short
    (out / "documents" / "part-00002.parquet").unlink()
    capsys.readouterr()
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "shards 00001, 00002: files missing, truncated or not as recorded; embedding them again" in printed
    assert "2 shards written, 1 already done" in printed
    assert pq.read_table(out / "documents").sort_by("id").equals(whole)
    assert progress(out)["complete"] and not (out / "_lock").exists()


def _gate(path: Path) -> Path:
    path.mkdir()
    os.mkfifo(path / "paused")
    os.mkfifo(path / "go")
    return path


def _wait_at_gate(proc: subprocess.Popen[bytes], gate: Path) -> int:
    """The job's pause hook (local.PAUSE_ENV): the index of the shard it holds back, once it is at its gate."""
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append((gate / "paused").read_text()), daemon=True)
    reader.start()
    while reader.is_alive() and proc.poll() is None:
        reader.join(timeout=0.5)  # a watchdog for a job that dies before its gate, not a delay
    if not got:
        fd = os.open(gate / "paused", os.O_WRONLY | os.O_NONBLOCK)  # unblock the reader, then report
        reader.join()
        os.close(fd)
        raise AssertionError(f"the job exited before its gate: {proc.communicate()[1].decode()}")
    return int(got[0])


def test_sigterm_stops_a_job_like_ctrl_c_and_the_rerun_resumes(
    tiny_bundle: Path, tmp_path: Path, longvec_cli: list[str]
) -> None:
    source = write(tmp_path / "in.jsonl", docs("d", 30))
    out = tmp_path / "out"
    gate = _gate(tmp_path / "gate")
    argv = [*longvec_cli, "embed", str(tiny_bundle), str(source), str(out), "--shard-size", "10", "--threads", "1"]
    env = {**os.environ, PAUSE_ENV: str(gate)}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert _wait_at_gate(proc, gate) == 0  # shard 0 written to temporaries, not yet published
    assert list(out.rglob(".part-00000.*.tmp"))
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr.decode()
    assert "terminated (SIGTERM)" in stderr.decode() and "Traceback" not in stderr.decode()
    assert not list(out.rglob("*.tmp")) and not (out / "_lock").exists()
    assert progress(out)["shards"] == {} and not progress(out)["complete"]

    env.pop(PAUSE_ENV)
    done = subprocess.run(argv, capture_output=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    ids = pq.read_table(out / "documents")["id"].to_pylist()
    assert sorted(ids) == sorted(f"d{i}" for i in range(30))
