"""`longvec index` + `longvec query` (LanceDB, the `index` extra): the library's hits from disk, a killed build
resumed with every document exactly once, and a query with another model refused."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from longvec.runtime import Embedder
from longvec.runtime.cli.main import main
from longvec.runtime.errors import ModelMismatch
from longvec.runtime.jobs.lance_index import Index
from longvec.runtime.jobs.local import PAUSE_ENV

lancedb = pytest.importorskip("lancedb", reason="the index extra: pip install 'longvec[index]'")

TOPICS = [
    "Lighthouses were lit with wood, then coal, then whale oil. The Fresnel lens of 1822 bent the light into a beam "
    "seen from twenty miles. Keepers trimmed the wicks every four hours through the night.",
    "The honey bee dances to tell its sisters where flowers are. A waggle run points along the sun's direction; its "
    "length says how far to fly. Drones do not forage, and the queen lays up to two thousand eggs a day.",
    "Tides rise and fall twice a day because the moon pulls the oceans. Spring tides come at new and full moon, neap "
    "tides at the quarters, when the sun and the moon pull at right angles.",
    "Bread rises because yeast eats sugar and breathes out carbon dioxide. Kneading builds gluten, which traps the "
    "gas; an oven's heat kills the yeast and sets the crumb.",
]
DOCS = [{"id": f"doc-{i}", "text": (TOPICS[i % 4] + " ") * (2 + i % 3)} for i in range(8)]
QUERIES = ["How often were the wicks trimmed?", "why does bread rise", "neap tides", "queen eggs per day"]


def write_corpus(path: Path) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in DOCS), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def index_db(tmp_path_factory: pytest.TempPathFactory, bundle_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("index")
    source = write_corpus(root / "in.jsonl")
    argv = ["index", str(bundle_dir), str(source), str(root / "db"), "--chunk-tokens", "32", "--threads", "1"]
    assert main(argv) == 0
    return root / "db"


def test_query_gives_the_library_hits(index_db: Path, embedder: Embedder) -> None:
    texts = [d["text"] for d in DOCS]
    for hybrid in (True, False):
        want = embedder.search(QUERIES, texts, top_k=5, chunk_tokens=32, hybrid=hybrid)
        got = dict(Index(index_db).search(embedder, QUERIES, top_k=5, hybrid=hybrid))
        for qi, hits in enumerate(want):
            assert [(doc_id, h.start, h.end, h.text) for h, doc_id in got[qi]] == [
                (DOCS[h.document]["id"], h.start, h.end, h.text) for h in hits
            ]
            assert np.allclose([h.score for h, _ in got[qi]], [h.score for h in hits], atol=1e-4)


def test_query_cli_prints_json_lines(index_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["query", str(index_db), *QUERIES[:2], "--top-k", "3", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 6 and {r["query"] for r in rows} == set(QUERIES[:2])
    texts = {d["id"]: d["text"] for d in DOCS}
    for r in rows:
        assert set(r) == {"query", "id", "start", "end", "score", "text"}
        assert texts[r["id"]][r["start"] : r["end"]] == r["text"]
    assert rows[0]["id"] in ("doc-0", "doc-4")


def test_the_index_records_its_model_and_refuses_another(
    index_db: Path, bundle_dir: Path, tiny_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    info = Index(index_db).info
    assert info.model == Embedder.load(bundle_dir).name and info.weights_sha256 and info.documents == len(DOCS)
    assert info.bundle == str(bundle_dir.resolve())
    code = main(["query", str(index_db), "bees", "--bundle", str(tiny_bundle)])
    assert code == 4
    assert "this index was built with" in capsys.readouterr().err
    with Embedder.load(tiny_bundle) as other, pytest.raises(ModelMismatch):
        info.check(other, "optimized")


def _gate(path: Path) -> Path:
    path.mkdir()
    os.mkfifo(path / "paused")
    os.mkfifo(path / "go")
    return path


def _blocking(fn, proc: subprocess.Popen[bytes], timeout: float = 180.0):  # type: ignore[no-untyped-def]
    """Run a blocking pipe operation, failing instead of hanging if the job exits first."""
    out: list[object] = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    t.join(timeout)
    if not out:
        proc.kill()
        raise AssertionError(f"the job never reached its gate (exit {proc.poll()})")
    return out[0]


def test_a_killed_index_resumes_with_every_document_exactly_once(
    tmp_path: Path, bundle_dir: Path, longvec_cli: list[str]
) -> None:
    source, db = write_corpus(tmp_path / "in.jsonl"), tmp_path / "db"
    gate = _gate(tmp_path / "gate")
    argv = [*longvec_cli, "index", str(bundle_dir), str(source), str(db), "--shard-size", "3", "--threads", "1"]
    env = dict(os.environ, **{PAUSE_ENV: str(gate)})
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert _blocking(lambda: (gate / "paused").read_text(), proc).strip() == "0"
    _blocking(lambda: (gate / "go").write_text("go\n"), proc)
    assert _blocking(lambda: (gate / "paused").read_text(), proc).strip() == "1"
    proc.kill()  # kill -9 with shard 1 written but not published
    proc.wait(timeout=30)
    assert not (db / "chunks.lance").exists()  # the tables come only from a finished job

    env.pop(PAUSE_ENV)
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "resuming: 1 shards (3 documents) already done" in done.stdout
    conn = lancedb.connect(str(db))
    docs = conn.open_table("documents").to_arrow()
    chunks = conn.open_table("chunks").to_arrow()
    assert sorted(docs["id"].to_pylist()) == sorted(d["id"] for d in DOCS)  # every document, exactly once
    keys = list(zip(chunks["id"].to_pylist(), chunks["chunk_index"].to_pylist()))
    assert len(set(keys)) == len(keys) and {k[0] for k in keys} == {d["id"] for d in DOCS}
    # and building again (a rerun of a finished job) rewrites the same tables, nothing twice
    again = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert again.returncode == 0, again.stderr
    assert lancedb.connect(str(db)).open_table("chunks").count_rows() == len(keys)


def test_from_shards_indexes_a_finished_embed_job(
    tmp_path: Path, bundle_dir: Path, embedder: Embedder, index_db: Path
) -> None:
    source = write_corpus(tmp_path / "in.jsonl")
    out = tmp_path / "out"
    assert main(["embed", str(bundle_dir), str(source), str(out), "--chunk-tokens", "32", "--threads", "1"]) == 0
    db = tmp_path / "db"
    assert main(["index", "--from-shards", str(out), str(db), "--input", str(source)]) == 0
    a = dict(Index(db).search(embedder, QUERIES, top_k=4))
    b = dict(Index(index_db).search(embedder, QUERIES, top_k=4))
    for qi in a:  # a job without --sparse gets the same BM25 weights from the text at indexing
        assert [(d, h.start) for h, d in a[qi]] == [(d, h.start) for h, d in b[qi]]
