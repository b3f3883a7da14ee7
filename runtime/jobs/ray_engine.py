"""The batch job on Ray Data: read -> map_batches(EmbedActor, an actor pool) -> write Parquet.

The input is scanned, fingerprinted and checked on the driver exactly as for the local engine, and the output
has the same layout, tables and rows (row order may differ). Ray retries failed tasks itself; write tasks put
their files in OUTPUT_DIR/_staging under names fixed by the task index (a retried task overwrites, never adds)
and the driver moves them into place and records them only once the whole dataset is written. There is no
resume across runs: an unfinished Ray job starts over.
"""

from __future__ import annotations

import itertools
import json
import shutil
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from longvec.runtime.core.sparse import require_stemmer
from longvec.runtime.embedder import Embedder
from longvec.runtime.errors import BackendUnavailable, InputError
from longvec.runtime.jobs.corpus import Corpus, Fields, Record, import_pyarrow, iter_records, scan
from longvec.runtime.jobs.local import JobOptions, Summary, check_paths, job_header, output_errors, table_metadata
from longvec.runtime.jobs.ray_actor import ERROR_COLUMN, SOURCE_COLUMN, EmbedActor, import_ray
from longvec.runtime.jobs.shards import TABLES, OutputDir, publish, schemas, temporary_name, write_atomic

ACTOR_CALL_DOCUMENTS = 64  # documents per EmbedActor call (what Ray Data calls the batch size of map_batches)
READ_ROWS = 256  # documents per read task and block: 4 actor calls
MAX_RANGES_PER_FILE = 64
STAGING = "_staging"
# Ray schedules by logical CPUs: actors holding all of them would starve the read and write tasks forever (a
# deadlock, not a slowdown). Reads and writes are light, so they share half a CPU and the actors get the rest.
IO_CPUS = 0.25


def run_ray(
    bundle: Path,
    source: Path,
    output_dir: Path,
    options: JobOptions,
    address: str | None = None,
    actors: int | None = None,
    overwrite: bool = False,
) -> Summary:
    ray = import_ray()
    if options.sparse:
        require_stemmer()
    check_paths(source, output_dir)
    corpus = scan(source, options.fields)
    # the driver opens the variant as the actors will (same device): a TensorRT plan or a CUDA-only setup fails
    # here, before any actor starts, and the job header and table metadata come from what really runs
    with Embedder.load(
        bundle, variant=options.variant, threads=1, window=options.window, device=options.device
    ) as embedder:
        header, dim = job_header("ray", corpus, embedder, options), embedder.dim
        metadata = table_metadata(embedder, options)
    with output_errors(output_dir):
        out = OutputDir.open(output_dir, header, overwrite=overwrite)
    started = time.monotonic()
    try:
        if out.complete:
            return _summary(out, 0, 0.0, 0)
        out.reset()
        staging = out.path / STAGING
        shutil.rmtree(staging, ignore_errors=True)
        owns_ray = not ray.is_initialized()
        if owns_ray:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        try:
            threads = options.threads or 1
            resources = ray.cluster_resources()
            n_actors, actor_cpus, gpu_args = actor_pool(
                float(resources.get("CPU", 1)), int(resources.get("GPU", 0)), options.device, threads, actors
            )
            on_gpu = bool(gpu_args)
            dataset = _read(ray, corpus, options.fields).map_batches(
                EmbedActor,
                fn_constructor_kwargs={
                    "bundle": str(Path(bundle).resolve()),
                    "variant": options.variant,
                    "threads": threads,
                    "chunk_tokens": options.chunk_tokens,
                    "sparse": options.sparse,
                    "window": options.window,
                    "embed_kwargs": options.embed_kwargs(),
                    "device": options.device,
                },
                batch_size=ACTOR_CALL_DOCUMENTS * 8 if on_gpu else ACTOR_CALL_DOCUMENTS,  # keep GPU batches full
                batch_format="pyarrow",
                compute=ray.data.ActorPoolStrategy(size=n_actors),
                num_cpus=actor_cpus,
                **gpu_args,
            )
            sink = make_sink(str(staging), dim, metadata, options.shard_size, options.sparse)
            dataset.write_datasink(sink, ray_remote_args={"num_cpus": IO_CPUS})
        finally:
            if owns_ray:
                ray.shutdown()
        tokens = _publish(out, staging)
        out.finish(complete=True)
        shutil.rmtree(staging, ignore_errors=True)
        return _summary(out, tokens, time.monotonic() - started, len(out.done))
    finally:
        out.close()


def actor_pool(
    cpus: float, gpus: int, device: str, threads: int, actors: int | None
) -> tuple[int, float, dict[str, int]]:
    """(actors, CPUs per actor, GPU resources per actor) for a cluster. On GPUs one actor per GPU (num_gpus=1):
    the encoder is the GPU's, the actor's CPU only feeds it. More GPU actors than GPUs would wait forever for a
    GPU (a fixed-size pool): refused here, as a cluster without a GPU is."""
    on_gpu = device == "cuda"
    if on_gpu and gpus < 1:
        raise BackendUnavailable("--device cuda with --engine ray: the Ray cluster has no GPU")
    if on_gpu and actors is not None and actors > gpus:
        raise InputError(f"--ray-actors {actors} with --device cuda: the Ray cluster has {gpus} GPU(s), one per actor")
    n_actors = actors or (gpus if on_gpu else max(1, int(cpus) // threads))
    actor_cpus = min(float(threads), max(0.1, (cpus - 2 * IO_CPUS) / n_actors))
    return n_actors, actor_cpus, {"num_gpus": 1} if on_gpu else {}


def _read(ray: Any, corpus: Corpus, fields: Fields) -> Any:
    """Normalized columns (id, text, error, source) from every input file, read by longvec's own reader, so
    parsing, checks and error reasons are those of the local engine. Ray's readers are not used: their
    file-listing tasks want a whole CPU, which an actor pool filling the cluster never leaves them (a
    deadlock on small clusters). Input paths must be visible to every node (a shared filesystem).

    Each read task reads a range of positions, so that blocks are small and spread over all actors (one block
    per file would feed one actor). A range re-reads its file from the start, skipping without parsing; ranges
    per file are capped so that this stays far cheaper than embedding."""
    items = []
    start = 0
    for f in corpus.files:
        step = max(READ_ROWS, -(-f.n_records // MAX_RANGES_PER_FILE))
        items += [
            {"start": a, "end": min(a + step, start + f.n_records)} for a in range(start, start + f.n_records, step)
        ]
        start += f.n_records
    return ray.data.from_items(items, override_num_blocks=max(1, len(items))).map_batches(
        _read_ranges,
        fn_kwargs={"corpus": corpus, "fields": fields},
        batch_size=1,
        batch_format="pyarrow",
        num_cpus=IO_CPUS,
    )


def _read_ranges(ranges: Any, corpus: Corpus, fields: Fields) -> Iterator[Any]:
    for start, end in zip(ranges["start"].to_pylist(), ranges["end"].to_pylist()):
        yield _normalized(_records_in(corpus, fields, range(start, end)))


def _records_in(corpus: Corpus, fields: Fields, wanted: range) -> list[Record]:
    records = iter_records(corpus, fields, wanted=wanted.__contains__)
    return list(itertools.takewhile(lambda r: r.position in wanted, records))  # stop reading at the range's end


def _normalized(records: list[Any]) -> Any:
    pa = import_pyarrow()
    return pa.table(
        {
            "id": pa.array([r.id for r in records], pa.string()),
            "text": pa.array([r.text for r in records], pa.string()),
            ERROR_COLUMN: pa.array([r.error for r in records], pa.string()),
            SOURCE_COLUMN: pa.array([r.source for r in records], pa.string()),
        }
    )


def flatten(
    table: Any, dim: int, metadata: dict[str, str], sparse: bool = False
) -> tuple[Any, Any, list[dict[str, Any]]]:
    """EmbedActor rows (one per document, chunks nested) -> the documents and chunks tables and error entries."""
    pa = import_pyarrow()
    pc = pa.compute
    failed = table.filter(pc.invert(pc.is_null(table["error"])))
    errors = [
        {"id": i, "position": None, "source": s, "reason": r}
        for i, s, r in zip(*(failed[c].to_pylist() for c in ("id", "source", "error")))
    ]
    good = table.filter(pc.is_null(table["error"]))
    doc_schema, chunk_schema = schemas(dim, metadata, sparse)
    documents = pa.Table.from_arrays([good["id"], good["n_tokens"], good["vector"]], schema=doc_schema)
    chunk_lists = good["chunks"].combine_chunks()
    counts = pc.list_value_length(chunk_lists).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = pc.list_flatten(chunk_lists)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    lexical = ("sparse_indices", "sparse_values") if sparse else ()
    chunks = pa.Table.from_arrays(
        [
            pc.take(good["id"], pa.array(np.repeat(np.arange(len(counts)), counts))),
            pa.array((np.arange(int(counts.sum())) - starts).astype(np.int32)),
            *(flat.field(name) for name in ("char_start", "char_end", "vector", *lexical)),
        ],
        schema=chunk_schema,
    )
    return documents, chunks, errors


class ShardWrites:
    """Writes both tables and the errors of one Ray write task under `staging`, named by the task index."""

    def __init__(
        self, staging: str, dim: int, metadata: dict[str, str], rows_per_write: int, sparse: bool = False
    ) -> None:
        self.staging, self.dim, self.metadata, self.rows_per_write = staging, dim, metadata, rows_per_write
        self.sparse = sparse

    def write(self, blocks: Iterable[Any], ctx: Any) -> dict[str, int]:
        pa = import_pyarrow()
        from ray.data.block import BlockAccessor

        tables = [BlockAccessor.for_block(b).to_arrow() for b in blocks]
        tables = [t for t in tables if t.num_rows]
        if not tables:
            return {}
        documents, chunks, errors = flatten(pa.concat_tables(tables), self.dim, self.metadata, self.sparse)
        name = f"part-{ctx.task_idx:05d}"
        root = Path(self.staging)
        for table_name, table in zip(TABLES, (documents, chunks)):
            final = root / table_name / f"{name}.parquet"
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = temporary_name(final)
            pa.parquet.write_table(table, tmp)
            publish(tmp, final)
        (root / "errors").mkdir(parents=True, exist_ok=True)
        lines = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in errors)
        write_atomic(root / "errors" / f"{name}.jsonl", lines.encode())
        return {"task": ctx.task_idx, "documents": documents.num_rows}


def make_sink(staging: str, dim: int, metadata: dict[str, str], rows_per_write: int, sparse: bool = False) -> Any:
    """A Ray `Datasink`; the class is made here so that importing this module does not import Ray."""
    from ray.data import Datasink

    class ShardSink(ShardWrites, Datasink):
        @property
        def min_rows_per_write(self) -> int:
            return self.rows_per_write

    return ShardSink(staging, dim, metadata, rows_per_write, sparse)


def _publish(out: OutputDir, staging: Path) -> int:
    """Move every finished part into place in task order, renumbered from 0; record each. Returns tokens."""
    pq = import_pyarrow().parquet
    tokens = 0
    parts = sorted(p.stem for p in (staging / "documents").glob("part-*.parquet"))
    for index, name in enumerate(parts):
        moved = {}
        for table in TABLES:
            final = out.path / table / f"part-{index:05d}.parquet"
            publish_from = staging / table / f"{name}.parquet"
            publish(publish_from, final)
            moved[table] = final
        errors_final = out.path / "errors" / f"part-{index:05d}.jsonl"
        publish(staging / "errors" / f"{name}.jsonl", errors_final)
        n_tokens = pq.read_table(moved["documents"], columns=["n_tokens"])["n_tokens"].to_numpy()
        stats = {
            "documents": len(n_tokens),
            "chunks": pq.ParquetFile(moved["chunks"]).metadata.num_rows,
            "errors": sum(1 for line in errors_final.read_text(encoding="utf-8").splitlines() if line),
            "tokens": int(n_tokens.sum()),
        }
        tokens += stats["tokens"]
        out.record(index, stats)
    return tokens


def _summary(out: OutputDir, tokens: int, seconds: float, written: int) -> Summary:
    """A Ray job writes every shard or none: a finished directory is skipped whole."""
    shards = out.done.values()
    this_run = sum(s["documents"] + s["errors"] for s in shards) if written else 0
    return Summary.of(out, tokens, seconds, written, 0 if written else len(out.done), this_run)
