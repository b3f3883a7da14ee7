"""What a batch job's output says about itself: every resolved option and the longvec version in each shard and in
`_progress.json` (enough to re-create the vectors with the library), kept input fields, and folders of text files."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from longvec.runtime import Embedder
from longvec.runtime.cli.main import main
from longvec.runtime.errors import InputError
from longvec.runtime.jobs.corpus import Fields
from longvec.runtime.jobs.local import JobOptions, run_local

TEXTS = [
    "The keeper trimmed the wick. He wound the clock. Fog rolled in before dawn and the bell rang out. " * 4,
    "Sand drifts along the coast. Waves sort it into bars and spits.",
    "Embeddings map text to vectors; similar meanings end up close together. " * 6,
]
# every key a shard records, each with a value (defaults included, never left out)
OPTION_KEYS = {
    "model", "weights", "variant", "window", "chunking", "chunk_tokens", "mode", "mode_resolved", "stride", "stitch",
    "prompt_name", "prompt", "normalize", "dimensions", "sparse", "text_field", "id_field", "keep_fields",
    "shard_size", "offsets",
}  # fmt: skip


def jsonl(path: Path, docs: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    return path


def matrix(column: pa.ChunkedArray) -> np.ndarray:
    """The README's recipe for a fixed_size_list<float32>[dim] column."""
    flat = column.combine_chunks().flatten().to_numpy()
    return flat.reshape(len(column), -1)


@pytest.fixture
def named_bundle(bundle: Path, edit_manifest: Any) -> Path:
    """The tiny bundle under a model name of its own (not its weights'), with a default prompt."""

    def change(raw: dict[str, Any]) -> None:
        raw["name"] = "acme/tiny-embedder"
        raw["prompts"] = {"query": "query: ", "passage": "passage: "}
        raw["default_prompt"] = "passage"

    edit_manifest(bundle, change)
    return bundle


def test_every_shard_and_the_progress_file_record_the_resolved_options_and_re_create_the_vectors(
    named_bundle: Path, tmp_path: Path
) -> None:
    source = jsonl(tmp_path / "in.jsonl", [{"id": f"d{i}", "text": t} for i, t in enumerate(TEXTS)])
    out = tmp_path / "out"
    run_local(named_bundle, source, out, JobOptions(chunk_tokens=16, shard_size=2, threads=1, sparse=True))

    progress = json.loads((out / "_progress.json").read_text())
    assert progress["longvec"] == metadata.version("longvec") and progress["format"] == 2
    recorded = progress["options"]
    assert set(recorded) == OPTION_KEYS
    assert recorded["model"] == "acme/tiny-embedder"  # the model's own name, not its base weights'
    assert (recorded["mode"], recorded["chunking"], recorded["prompt_name"], recorded["prompt"]) == (
        "auto",
        "tokens",
        "passage",
        "passage: ",
    )
    assert recorded["mode_resolved"] in ("late", "naive", "window_mean", "truncate", "blend")
    assert isinstance(recorded["stride"], int) and isinstance(recorded["window"], int)
    assert recorded["sparse"] == {"k1": 1.2, "b": 0.75, "avg_len": 256.0, "terms": 1}

    shards = sorted((out / "documents").glob("part-*.parquet")) + sorted((out / "chunks").glob("part-*.parquet"))
    assert len(shards) == 4
    for path in shards:
        meta = pq.read_schema(path).metadata
        made = json.loads(meta[b"longvec.options"])
        assert meta[b"longvec.version"].decode() == made["longvec"] == metadata.version("longvec")
        assert meta[b"longvec.model"] == b"acme/tiny-embedder"
        assert {k: made[k] for k in OPTION_KEYS} == recorded, path
        assert made["device"] == "cpu" and "CPUExecutionProvider" in made["provider"]

    # the library, given only what a shard recorded, gives the same vectors and spans
    made = json.loads(pq.read_schema(shards[0]).metadata[b"longvec.options"])
    docs = pq.read_table(out / "documents")
    chunks = pq.read_table(out / "chunks")
    with Embedder.load(named_bundle, variant=made["variant"], window=made["window"], threads=1) as emb:
        want = emb.embed_documents(
            TEXTS,
            chunking=made["chunking"],
            chunk_tokens=made["chunk_tokens"],
            mode=made["mode_resolved"],
            stride=made["stride"],
            prompt=made["prompt"] or "",
            normalize=made["normalize"],
            dimensions=made["dimensions"],
            sparse=made["sparse"] is not None,
        )
        other_prompt = emb.embed_documents(TEXTS, chunk_tokens=16, prompt_name="query")
    assert docs["id"].to_pylist() == ["d0", "d1", "d2"]
    np.testing.assert_allclose(matrix(docs["vector"]), np.stack([w.vector for w in want]), atol=1e-6)
    np.testing.assert_allclose(matrix(chunks["vector"]), np.concatenate([w.chunk_vectors for w in want]), atol=1e-6)
    spans = np.stack([chunks["char_start"].to_numpy(), chunks["char_end"].to_numpy()], axis=1)
    np.testing.assert_array_equal(spans, np.concatenate([w.chunk_spans for w in want]))
    got_sparse = chunks["sparse_indices"].to_pylist()
    assert got_sparse == [v.indices.tolist() for w in want for v in w.chunk_sparse or []]
    assert not np.allclose(matrix(docs["vector"]), np.stack([w.vector for w in other_prompt]), atol=1e-4)

    # a resume whose resolved options differ is refused, naming the option
    with pytest.raises(InputError, match=r"prompt_name: 'passage' -> 'query'"):
        run_local(
            named_bundle, source, out, JobOptions(chunk_tokens=16, shard_size=2, sparse=True, prompt_name="query")
        )
    with pytest.raises(InputError, match=r"mode: 'auto' -> "):
        run_local(
            named_bundle,
            source,
            out,
            JobOptions(chunk_tokens=16, shard_size=2, sparse=True, mode=recorded["mode_resolved"]),
        )


def test_an_output_of_the_previous_format_is_refused_by_version(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = jsonl(tmp_path / "in.jsonl", [{"id": 1, "text": TEXTS[1]}])
    out = tmp_path / "out"
    assert main(["embed", str(tiny_bundle), str(source), str(out)]) == 0
    state = json.loads((out / "_progress.json").read_text())
    (out / "_progress.json").write_text(json.dumps({**state, "format": 1}))
    capsys.readouterr()
    assert main(["embed", str(tiny_bundle), str(source), str(out)]) == 4
    assert "output format 1, this one writes 2" in capsys.readouterr().err


def test_keep_fields_copies_text_and_input_fields_as_strings(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = [
        {"id": "a", "text": TEXTS[0], "title": "Keepers", "year": 1890, "tags": ["sea", "light"]},
        {"id": "b", "text": TEXTS[1], "title": "Sand"},  # no year, no tags: null
        {"id": "c", "text": "  "},  # fails: never in documents/
    ]
    source = jsonl(tmp_path / "in.jsonl", docs)
    out = tmp_path / "out"
    argv = ["embed", str(tiny_bundle), str(source), str(out), "--keep-fields", "text,title,year,tags"]
    assert main(argv) == 0
    table = pq.read_table(out / "documents")
    assert table.column_names == ["id", "n_tokens", "vector", "text", "title", "year", "tags"]
    assert table.schema.field("year").type == pa.string()
    assert table.select(["id", "text", "title", "year", "tags"]).to_pylist() == [
        {"id": "a", "text": TEXTS[0], "title": "Keepers", "year": "1890", "tags": '["sea", "light"]'},
        {"id": "b", "text": TEXTS[1], "title": "Sand", "year": None, "tags": None},
    ]
    assert json.loads((out / "_progress.json").read_text())["options"]["keep_fields"] == [
        "text",
        "title",
        "year",
        "tags",
    ]

    # Parquet input: the same columns, a column the file lacks is null
    pq.write_table(pa.table({"id": ["p"], "text": [TEXTS[2]], "title": ["Vectors"]}), tmp_path / "in.parquet")
    capsys.readouterr()
    assert (
        main(
            [
                "embed",
                str(tiny_bundle),
                str(tmp_path / "in.parquet"),
                str(tmp_path / "pq"),
                "--keep-fields",
                "title,year",
            ]
        )
        == 0
    )
    assert pq.read_table(tmp_path / "pq" / "documents").select(["title", "year"]).to_pylist() == [
        {"title": "Vectors", "year": None}
    ]
    for bad in ("vector", "title,title", "title,"):
        capsys.readouterr()
        assert main([*argv[:3], str(tmp_path / "bad"), "--keep-fields", bad]) == 4
        assert "--keep-fields" in capsys.readouterr().err
    with pytest.raises(InputError, match="--keep-fields"):
        Fields(keep=("n_tokens",))


def test_a_folder_of_text_files_is_one_document_per_file_named_by_its_path(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "notes"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text(TEXTS[0], encoding="utf-8")
    (folder / "sub" / "b.md").write_text("# Sand\n\n" + TEXTS[1], encoding="utf-8")
    (folder / "sub" / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (folder / "_skipped.txt").write_text("not read")
    out = tmp_path / "out"
    assert (
        main(["embed", str(tiny_bundle), str(folder), str(out), "--chunk-tokens", "16", "--keep-fields", "text"]) == 0
    )
    table = pq.read_table(out / "documents")
    assert table["id"].to_pylist() == ["a.txt", "sub/b.md"]
    with Embedder.load(tiny_bundle, threads=1) as emb:
        want = emb.embed_documents([TEXTS[0], "# Sand\n\n" + TEXTS[1]], chunk_tokens=16)
    np.testing.assert_allclose(matrix(table["vector"]), np.stack([w.vector for w in want]), atol=1e-6)
    assert table["text"].to_pylist()[1] == "# Sand\n\n" + TEXTS[1]
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [(e["id"], e["source"]) for e in errors] == [("sub/latin1.txt", "sub/latin1.txt")]
    assert errors[0]["reason"].startswith("file is not UTF-8")

    # one kind per folder: a README.md beside JSONL is not a document
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    jsonl(mixed / "docs.jsonl", [{"id": 1, "text": TEXTS[1]}])
    (mixed / "README.md").write_text("about this corpus")
    capsys.readouterr()
    assert main(["embed", str(tiny_bundle), str(mixed), str(tmp_path / "out-mixed")]) == 4
    assert "both record files" in capsys.readouterr().err


def test_offsets_utf16_give_spans_a_javascript_client_can_slice(tiny_bundle: Path, tmp_path: Path) -> None:
    text = "Rockets \U0001f680 and lamps \U0001f4a1 lit the coast. " * 6 + "The keeper slept at dawn."
    source = jsonl(tmp_path / "in.jsonl", [{"id": "emoji", "text": text}])
    for unit in ("codepoints", "utf16"):
        argv = ["embed", str(tiny_bundle), str(source), str(tmp_path / unit), "--chunk-tokens", "8"]
        assert main([*argv, "--offsets", unit]) == 0
    points = pq.read_table(tmp_path / "codepoints" / "chunks")
    units = pq.read_table(tmp_path / "utf16" / "chunks")
    encoded = text.encode("utf-16-le")
    assert units.num_rows == points.num_rows > 2
    starts, ends = points["char_start"].to_pylist(), points["char_end"].to_pylist()
    for start, end, u_start, u_end in zip(starts, ends, units["char_start"].to_pylist(), units["char_end"].to_pylist()):
        assert encoded[2 * u_start : 2 * u_end].decode("utf-16-le") == text[start:end]  # JavaScript's slice
    assert units["char_end"].to_pylist()[-1] == len(encoded) // 2 > len(text) == ends[-1]
    assert json.loads((tmp_path / "utf16" / "_progress.json").read_text())["options"]["offsets"] == "utf16"


def test_the_readme_output_table_names_the_columns_the_job_writes() -> None:
    """README "Batch jobs": the documents/ and chunks/ rows list exactly the columns of `schemas` (with --sparse)."""
    import re

    from longvec.runtime.jobs.shards import schemas

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8").splitlines()

    def listed(folder: str) -> list[str]:
        row = next(line for line in readme if line.startswith(f"| `out/{folder}/part-00000.parquet` |"))
        contents = row.split("|")[2].split("(`fixed_size_list")[0]  # the vector's type is not a column
        return re.findall(r"`([a-z_]+)`", contents)

    documents, chunks = schemas(384, sparse=True)
    assert listed("documents") == documents.names
    assert listed("chunks") == chunks.names
