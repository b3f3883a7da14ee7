"""Batch jobs on Ray Data: the same rows as the local engine; EmbedActor on its own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from longvec.runtime import Embedder
from longvec.runtime.jobs.local import JobOptions, run_local
from longvec.runtime.jobs.ray_actor import EmbedActor

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "lighthouses.txt"


def corpus(tmp_path: Path) -> Path:
    """Two files of two formats, a few bad documents among them."""
    paragraphs = [p for p in EXAMPLE.read_text(encoding="utf-8").split("\n\n") if p.strip()]
    lines = [json.dumps({"id": f"p{i}", "text": p}) for i, p in enumerate(paragraphs[:8])]
    lines[3:3] = ["not json at all", json.dumps({"id": "bad-empty", "text": ""})]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text("\n".join(lines) + "\n")
    table = pa.table({"id": [f"q{i}" for i in range(6)] + ["bad-null"], "text": [*paragraphs[8:14], None]})
    pq.write_table(table, tmp_path / "in" / "b.parquet")
    return tmp_path / "in"


def rows(out: Path) -> tuple[pa.Table, pa.Table, list[tuple[str | None, str]]]:
    docs = pq.read_table(out / "documents").sort_by("id")
    chunks = pq.read_table(out / "chunks").sort_by([("id", "ascending"), ("chunk_index", "ascending")])
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    return docs, chunks, sorted(((e["id"], e["reason"]) for e in errors), key=str)


def test_ray_engine_gives_the_same_rows_as_the_local_engine(tmp_path: Path, bundle_dir: Path) -> None:
    import ray

    from longvec.runtime.jobs.ray_engine import run_ray

    source = corpus(tmp_path)
    options = JobOptions(chunk_tokens=64, shard_size=5, threads=1, sparse=True)
    local = run_local(bundle_dir, source, tmp_path / "local", options)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = run_ray(bundle_dir, source, tmp_path / "ray", options)
    finally:
        ray.shutdown()
    assert (summary.documents, summary.errors) == (local.documents, local.errors) == (14, 3)
    local_docs, local_chunks, local_errors = rows(tmp_path / "local")
    ray_docs, ray_chunks, ray_errors = rows(tmp_path / "ray")
    assert ray_errors == local_errors
    assert "sparse_values" in ray_chunks.column_names
    for ours, theirs in ((local_docs, ray_docs), (local_chunks, ray_chunks)):
        assert theirs.schema.equals(ours.schema)
        for column in ours.column_names:
            if column != "vector":
                assert theirs[column].equals(ours[column]), column
        a = np.stack(ours["vector"].to_numpy(zero_copy_only=False))
        b = np.stack(theirs["vector"].to_numpy(zero_copy_only=False))
        assert np.sum(a * b, axis=1).min() >= 0.99999
    assert json.loads((tmp_path / "ray" / "_progress.json").read_text())["complete"]
    assert not (tmp_path / "ray" / "_staging").exists()


def test_embed_actor_works_on_arrow_batches_without_ray(bundle_dir: Path, embedder: Embedder) -> None:
    texts = ["The keeper trimmed the wick at dusk.", "", "Fog signals sounded every thirty seconds. " * 40]
    actor = EmbedActor(str(bundle_dir), threads=1, chunk_tokens=32, text_field="body", id_field="key", sparse=True)
    out = actor(pa.table({"key": [1, 2, 3], "body": texts}))
    assert out.column_names == ["id", "n_tokens", "vector", "chunks", "error", "source"]
    assert out["id"].to_pylist() == ["1", "2", "3"]
    assert out["error"].to_pylist()[1] == "text is empty or whitespace only; there is nothing to embed"
    assert out["vector"][1].as_py() is None and out["chunks"][1].as_py() is None
    lib = embedder.embed_documents([texts[0], texts[2]], chunk_tokens=32, sparse=True)
    for row, result in zip((0, 2), lib):
        assert out["n_tokens"][row].as_py() == result.n_tokens
        assert float(np.asarray(out["vector"][row].as_py()) @ result.vector) >= 0.99999
        chunks = out["chunks"][row].as_py()
        assert [[c["char_start"], c["char_end"]] for c in chunks] == result.chunk_spans.tolist()
        got = np.array([c["vector"] for c in chunks])
        assert np.sum(got * result.chunk_vectors, axis=1).min() >= 0.99999
        assert result.chunk_sparse is not None
        assert [c["sparse_indices"] for c in chunks] == [v.indices.tolist() for v in result.chunk_sparse]
        np.testing.assert_allclose(
            np.concatenate([c["sparse_values"] for c in chunks]),
            np.concatenate([v.values for v in result.chunk_sparse]),
        )
    assert len(out["chunks"][2].as_py()) > 1
    # a dict of columns, as Ray's "numpy" batch format gives, works too
    assert actor({"key": np.array([5]), "body": np.array(["Lamp oil."], dtype=object)})["id"].to_pylist() == ["5"]


def test_the_ray_driver_loads_the_bundle_on_the_jobs_device(
    tmp_path: Path, tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--engine ray --device cuda` with a TensorRT variant: the driver opened it for device "cpu" and failed
    before any work started. It now opens it as the actors do."""
    from longvec.runtime.jobs import ray_engine

    seen: list[dict[str, object]] = []

    class Stop(Exception):
        pass

    def load(bundle: Path, **kwargs: object) -> Embedder:
        seen.append(kwargs)
        raise Stop

    monkeypatch.setattr(ray_engine.Embedder, "load", load)
    source = corpus(tmp_path)
    with pytest.raises(Stop):
        ray_engine.run_ray(tiny_bundle, source, tmp_path / "out", JobOptions(device="cuda", variant="tensorrt-x"))
    assert seen == [{"variant": "tensorrt-x", "threads": 1, "window": None, "device": "cuda"}]


def test_gpu_actors_are_one_per_gpu_and_never_more_than_the_cluster_has() -> None:
    from longvec.runtime import BackendUnavailable, InputError
    from longvec.runtime.jobs.ray_engine import actor_pool

    assert actor_pool(16.0, 2, "cuda", 1, None) == (2, 1.0, {"num_gpus": 1})
    assert actor_pool(4.0, 0, "cpu", 1, None)[:2] == (4, 0.875)
    with pytest.raises(BackendUnavailable, match="no GPU"):
        actor_pool(16.0, 0, "cuda", 1, None)
    with pytest.raises(InputError, match="--ray-actors 3 with --device cuda: the Ray cluster has 2 GPU"):
        actor_pool(16.0, 2, "cuda", 1, 3)  # a fixed pool of 3 GPU actors would wait forever for the third GPU
