"""Batch-job traps refused up front or reported, each with one line and its exit code: a wrong --text-field, a job
where every document failed, duplicate ids, an output folder inside the input, file-system errors, a folder of
another job (--overwrite), and no `_lock` left behind by a refused start."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from longvec.runtime.cli.main import main
from longvec.runtime.jobs import shards

TEXTS = [
    "The lighthouse keeper climbed the stairs every night to trim the wick.",
    "Rivers carry sand to the sea, where waves sort it into beaches.",
    "Embeddings map text to vectors; similar meanings end up close together.",
]


def jsonl(path: Path, docs: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    return path


def embed(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main(["embed", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line(err: str) -> bool:
    return err.count("\n") == 1 and err.startswith("longvec: error: ")


def test_a_wrong_text_field_fails_before_anything_is_embedded(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = jsonl(tmp_path / "in.jsonl", [{"id": i, "body": t} for i, t in enumerate(TEXTS)])
    code, _, err = embed(capsys, tiny_bundle, source, tmp_path / "out")
    assert code == 4 and one_line(err), err
    assert "'text' (--text-field)" in err and "fields found: body, id" in err
    assert not (tmp_path / "out").exists()
    code, _, err = embed(capsys, tiny_bundle, source, tmp_path / "out", "--text-field", "body", "--id-field", "key")
    assert code == 4 and "'key' (--id-field)" in err
    assert embed(capsys, tiny_bundle, source, tmp_path / "out", "--text-field", "body")[0] == 0


def test_a_job_where_every_document_failed_exits_4(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = jsonl(tmp_path / "in.jsonl", [{"id": i, "text": "   "} for i in range(3)])
    code, out, err = embed(capsys, tiny_bundle, source, tmp_path / "out")
    assert code == 4 and one_line(err), err
    assert "every document failed (3)" in err and "text is empty" in err
    assert "3 documents could not be embedded" in out


def test_duplicate_ids_go_to_the_errors_file_and_are_counted(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """1 and "1" are one id; so is an id found again in another file of the input (here a Parquet file)."""
    folder = tmp_path / "in"
    jsonl(folder / "a.jsonl", [{"id": 1, "text": TEXTS[0]}, {"id": "1", "text": TEXTS[1]}, {"id": 2, "text": TEXTS[2]}])
    pq.write_table(pa.table({"id": ["2", "3"], "text": [TEXTS[0], TEXTS[1]]}), folder / "b.parquet")
    code, out, err = embed(capsys, tiny_bundle, folder, tmp_path / "out")
    assert code == 0, err
    ids = pq.read_table(tmp_path / "out" / "documents").column("id").to_pylist()
    assert sorted(ids) == ["1", "2", "3"]
    errors = [json.loads(line) for line in (tmp_path / "out" / "errors.jsonl").read_text().splitlines()]
    assert [(e["id"], e["source"], e["reason"]) for e in errors] == [
        ("1", "a.jsonl:2", "duplicate id '1' (first at a.jsonl:1)"),
        ("2", "b.parquet:row 0", "duplicate id '2' (first at a.jsonl:3)"),
    ]
    assert "2 documents could not be embedded, 2 of them for a duplicate id" in out
    # the model's name (the tiny bundle's: its model directory's, "bert") in the progress log and the metadata
    assert "embedding 5 documents with bert" in out
    assert pq.read_schema(tmp_path / "out" / "documents" / "part-00000.parquet").metadata[b"longvec.model"] == b"bert"


def test_an_output_folder_inside_the_input_is_refused(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jsonl(tmp_path / "in" / "a.jsonl", [{"id": 1, "text": TEXTS[0]}])
    code, _, err = embed(capsys, tiny_bundle, tmp_path / "in", tmp_path / "in" / "out")
    assert code == 4 and one_line(err) and "inside the input directory" in err, err
    assert not (tmp_path / "in" / "out").exists()


def test_an_output_path_that_is_a_file_exits_8(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = jsonl(tmp_path / "in.jsonl", [{"id": 1, "text": TEXTS[0]}])
    (tmp_path / "out").write_text("not a folder")
    code, _, err = embed(capsys, tiny_bundle, source, tmp_path / "out")
    assert code == 8 and one_line(err) and "not a directory" in err, err
    code, _, err = embed(capsys, tiny_bundle, source, tmp_path / "out" / "below")  # its parent is a file
    assert code == 8 and one_line(err) and "cannot write" in err, err


@pytest.mark.parametrize(
    ("where", "error"),
    [("publish", errno.ENOSPC), ("write_atomic", errno.EROFS)],  # disk full mid-job; a read-only folder
)
def test_file_system_errors_while_writing_exit_8(
    where: str,
    error: int,
    tiny_bundle: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Simulated: the tests run as root, which no permission stops, and a full disk cannot be made safely here."""
    source = jsonl(tmp_path / "in.jsonl", [{"id": i, "text": t} for i, t in enumerate(TEXTS)])

    def fail(*args: Any, **kwargs: Any) -> None:
        raise OSError(error, os.strerror(error), str(tmp_path / "out" / "x"))

    monkeypatch.setattr(shards, where, fail)
    code, _, err = embed(capsys, tiny_bundle, source, tmp_path / "out")
    assert code == 8 and one_line(err), err
    assert os.strerror(error) in err and "Traceback" not in err


def test_another_jobs_folder_is_refused_naming_overwrite_which_starts_it_over(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = jsonl(tmp_path / "in.jsonl", [{"id": i, "text": t} for i, t in enumerate(TEXTS)])
    out = tmp_path / "out"
    assert embed(capsys, tiny_bundle, source, out, "--chunk-tokens", "8")[0] == 0
    code, _, err = embed(capsys, tiny_bundle, source, out, "--chunk-tokens", "16")
    assert code == 4 and one_line(err) and "chunk_tokens: 8 -> 16" in err and "--overwrite" in err, err
    code, _, err = embed(capsys, tiny_bundle, source, out, "--chunk-tokens", "16", "--overwrite")
    assert code == 0, err
    progress = json.loads((out / "_progress.json").read_text())
    assert progress["options"]["chunk_tokens"] == 16 and progress["complete"]
    assert pq.read_table(out / "documents").num_rows == 3  # started over: not 6


def test_a_refused_start_leaves_no_lock_behind(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = jsonl(tmp_path / "in.jsonl", [{"id": 1, "text": TEXTS[0]}])
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("someone else's file")
    for extra in ((), ("--overwrite",)):  # --overwrite never starts over a folder that is not a longvec output
        code, _, err = embed(capsys, tiny_bundle, source, out, *extra)
        assert code == 4 and one_line(err) and "not a longvec output" in err, err
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
