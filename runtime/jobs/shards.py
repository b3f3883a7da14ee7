"""The output of a batch job: Parquet shards written atomically, and the manifest that makes a rerun resume.

    OUTPUT_DIR/documents/part-00000.parquet   id, n_tokens, vector (fixed_size_list<float32>[dim]),
                                              + one string column per --keep-fields field
    OUTPUT_DIR/chunks/part-00000.parquet      id, chunk_index, char_start, char_end, vector
                                              (+ sparse_indices, sparse_values with --sparse)
    OUTPUT_DIR/errors/part-00000.jsonl        documents of that shard that could not be embedded, with the reason
    OUTPUT_DIR/errors.jsonl                   all of them, rebuilt when the job ends
    OUTPUT_DIR/_progress.json                 input fingerprint, options, finished shards; `complete` at the end

Every shard's schema metadata holds `longvec.options` (JSON: every option of the job, resolved, and how it ran)
and `longvec.version`, so a shard says how its vectors were made (jobs/local.py, `resolved_options`).

A shard is written under hidden temporary names and renamed into place; only then is it recorded in
`_progress.json` (itself replaced atomically). A killed job leaves at most temporaries and unrecorded files,
which the rerun removes or overwrites: no document is lost or written twice.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from longvec.runtime.errors import InputError
from longvec.runtime.jobs.corpus import DOCUMENT_COLUMNS, import_pyarrow
from longvec.runtime.jobs.stops import interrupts_deferred

PROGRESS = "_progress.json"
# 2: every option recorded explicitly (defaults included), the model under its own name, --keep-fields
FORMAT_VERSION = 2
TABLES = ("documents", "chunks")


@dataclass
class Rows:
    """Embedded documents in the shape of the two output tables, plus the documents that failed."""

    dim: int
    sparse: bool = False
    keep: tuple[str, ...] = ()  # names of the kept input fields (Fields.keep)
    ids: list[str] = field(default_factory=list)
    n_tokens: list[int] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)  # one [dim] per document
    chunk_ids: list[str] = field(default_factory=list)
    chunk_spans: list[np.ndarray] = field(default_factory=list)  # one [k, 2] per document
    chunk_vectors: list[np.ndarray] = field(default_factory=list)  # one [k, dim] per document
    chunk_sparse: list[Any] = field(default_factory=list)  # one list of k SparseVector per document, if sparse
    errors: list[dict[str, Any]] = field(default_factory=list)
    kept: list[tuple[str | None, ...]] = field(default_factory=list)  # one tuple of kept values per document

    def add(
        self,
        doc_id: str,
        n_tokens: int,
        vector: np.ndarray,
        spans: np.ndarray,
        chunks: np.ndarray,
        sparse: list[Any] | None = None,
        kept: tuple[str | None, ...] = (),
    ) -> None:
        self.ids.append(doc_id)
        if self.keep:
            self.kept.append(kept or (None,) * len(self.keep))
        self.n_tokens.append(n_tokens)
        self.vectors.append(vector)
        self.chunk_ids.append(doc_id)
        self.chunk_spans.append(spans)
        self.chunk_vectors.append(chunks)
        if self.sparse:
            self.chunk_sparse.append(sparse or [])

    def fail(self, doc_id: str | None, position: int, source: str, reason: str) -> None:
        self.errors.append({"id": doc_id, "position": position, "source": source, "reason": reason})

    @property
    def tokens(self) -> int:
        return sum(self.n_tokens)

    def tables(self, metadata: dict[str, str] | None = None) -> tuple[Any, Any]:
        pa = import_pyarrow()
        doc_schema, chunk_schema = schemas(self.dim, metadata, self.sparse, self.keep)
        counts = np.array([len(s) for s in self.chunk_spans], dtype=np.int64)
        spans = np.concatenate(self.chunk_spans) if self.chunk_spans else np.zeros((0, 2), np.int64)
        documents = pa.Table.from_arrays(
            [
                pa.array(self.ids, pa.string()),
                pa.array(self.n_tokens, pa.int64()),
                _vectors(self.vectors, self.dim),
                *(pa.array([k[i] for k in self.kept], pa.string()) for i in range(len(self.keep))),
            ],
            schema=doc_schema,
        )
        chunks = pa.Table.from_arrays(
            [
                pa.array(np.repeat(np.array(self.ids, dtype=object), counts).tolist(), pa.string()),
                pa.array(np.concatenate([np.arange(c, dtype=np.int32) for c in counts] or [np.zeros(0, np.int32)])),
                pa.array(spans[:, 0].astype(np.int64)),
                pa.array(spans[:, 1].astype(np.int64)),
                _vectors(self.chunk_vectors, self.dim),
                *(sparse_columns([v for doc in self.chunk_sparse for v in doc]) if self.sparse else []),
            ],
            schema=chunk_schema,
        )
        return documents, chunks


def document_fields(dim: int, keep: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    """The columns of one embedded document (a row of documents/, and the head of a Ray actor's output row),
    then the kept input fields."""
    pa = import_pyarrow()
    kept = [(name, pa.string()) for name in keep]
    types = (pa.string(), pa.int64(), pa.list_(pa.float32(), dim))
    return [*zip(DOCUMENT_COLUMNS, types), *kept]


def chunk_fields(dim: int, sparse: bool = False) -> list[tuple[str, Any]]:
    """The columns of one chunk (in chunks/ after `id` and `chunk_index`; a struct in a Ray actor's row)."""
    pa = import_pyarrow()
    lexical = [("sparse_indices", pa.list_(pa.int64())), ("sparse_values", pa.list_(pa.float32()))] if sparse else []
    return [("char_start", pa.int64()), ("char_end", pa.int64()), ("vector", pa.list_(pa.float32(), dim)), *lexical]


def schemas(
    dim: int, metadata: dict[str, str] | None = None, sparse: bool = False, keep: tuple[str, ...] = ()
) -> tuple[Any, Any]:
    pa = import_pyarrow()
    documents = pa.schema(document_fields(dim, keep), metadata=metadata)
    chunks = pa.schema(
        [("id", pa.string()), ("chunk_index", pa.int32()), *chunk_fields(dim, sparse)], metadata=metadata
    )
    return documents, chunks


def sparse_columns(vectors: list[Any]) -> list[Any]:
    """SparseVectors -> list<int64> term ids and list<float32> weights, one row per chunk."""
    pa = import_pyarrow()
    offsets = pa.array(np.concatenate([[0], np.cumsum([len(v) for v in vectors], dtype=np.int64)]).astype(np.int32))
    indices = np.concatenate([v.indices for v in vectors]) if vectors else np.zeros(0, np.int64)
    values = np.concatenate([v.values for v in vectors]) if vectors else np.zeros(0, np.float32)
    return [
        pa.ListArray.from_arrays(offsets, pa.array(indices, pa.int64())),
        pa.ListArray.from_arrays(offsets, pa.array(values, pa.float32())),
    ]


def _vectors(parts: list[np.ndarray], dim: int) -> Any:
    pa = import_pyarrow()
    flat = np.concatenate([np.asarray(p, np.float32).reshape(-1) for p in parts]) if parts else np.zeros(0, np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), dim)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temporary_name(final: Path) -> Path:
    # Hidden, so Parquet readers globbing the directory never see a half-written file.
    return final.with_name(f".{final.name}.{os.getpid()}.tmp")


def publish(tmp: Path, final: Path) -> None:
    _fsync(tmp)
    os.replace(tmp, final)
    _fsync(final.parent)


def write_atomic(final: Path, data: bytes) -> None:
    tmp = temporary_name(final)
    try:
        tmp.write_bytes(data)
        publish(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


class ShardWriter:
    """Streams one shard's rows into temporary Parquet files; `commit` publishes them, `abort` removes them."""

    def __init__(
        self,
        out: OutputDir,
        index: int,
        dim: int,
        metadata: dict[str, str],
        sparse: bool = False,
        keep: tuple[str, ...] = (),
    ) -> None:
        pq = import_pyarrow().parquet
        self.out, self.index, self.dim = out, index, dim
        self.finals = [out.path / table / f"part-{index:05d}.parquet" for table in TABLES]
        self.tmps = [temporary_name(p) for p in self.finals]
        tables = schemas(dim, metadata, sparse, keep)
        self.writers = [pq.ParquetWriter(tmp, schema) for tmp, schema in zip(self.tmps, tables)]
        self.metadata = metadata
        self.errors: list[dict[str, Any]] = []
        self.stats = {"documents": 0, "chunks": 0, "errors": 0, "tokens": 0}

    def add(self, rows: Rows) -> None:
        for writer, table in zip(self.writers, rows.tables(self.metadata)):
            if table.num_rows:
                writer.write_table(table)
        self.errors.extend(rows.errors)
        self.stats["documents"] += len(rows.ids)
        self.stats["chunks"] += sum(len(s) for s in rows.chunk_spans)
        self.stats["errors"] += len(rows.errors)
        self.stats["tokens"] += rows.tokens

    def commit(self) -> dict[str, int]:
        with interrupts_deferred():
            for writer in self.writers:
                writer.close()
            for tmp, final in zip(self.tmps, self.finals):
                publish(tmp, final)
            errors = self.out.path / "errors" / f"part-{self.index:05d}.jsonl"
            write_atomic(errors, "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in self.errors).encode())
            self.out.record(self.index, self.stats)
        return self.stats

    def abort(self) -> None:
        for writer in self.writers:
            with contextlib.suppress(Exception):
                writer.close()
        for tmp in self.tmps:
            tmp.unlink(missing_ok=True)


class OutputDir:
    """An output directory owned by one job: locked while it runs, checked against the job that made it."""

    def __init__(self, path: Path, header: dict[str, Any], state: dict[str, Any], lock: Any) -> None:
        self.path, self.header, self._state, self._lock = path, header, state, lock
        self.damaged: list[int] = []  # finished shards found damaged at open, forgotten to be embedded again

    @classmethod
    def open(cls, path: Path, header: dict[str, Any], overwrite: bool = False) -> OutputDir:
        """`header` holds format, engine, input fingerprint and options. A directory made with another input or
        other options is refused rather than mixed (with `overwrite`, its output is removed and the job starts
        over); an unknown non-empty directory is never written into. A refused start leaves no `_lock` behind."""
        path.mkdir(parents=True, exist_ok=True)
        had_lock = (path / "_lock").exists()
        lock = _lock(path)
        try:
            state = cls._state_for(path, header, overwrite)
        except BaseException:
            lock.close()
            if not had_lock:
                (path / "_lock").unlink(missing_ok=True)
            raise
        damaged = state.pop("redone", [])
        state.update({k: header[k] for k in ("longvec", "device") if k in header})  # how the latest run ran
        for table in (*TABLES, "errors"):
            (path / table).mkdir(exist_ok=True)
            for stale in (path / table).glob(".*.tmp"):
                stale.unlink()  # left by a killed run
        out = cls(path, header, state, lock)
        out.damaged = damaged
        out._save()
        return out

    @staticmethod
    def _state_for(path: Path, header: dict[str, Any], overwrite: bool) -> dict[str, Any]:
        manifest = path / PROGRESS
        fresh = {**header, "shards": {}, "complete": False}
        if manifest.is_file():
            if overwrite:
                _remove_output(path)
                return fresh
            try:
                state = json.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise InputError(
                    f"{manifest}: unreadable progress file ({e}); use a new output directory, or --overwrite"
                ) from e
            _check_same_job(manifest, state, header)
            return _drop_damaged(path, dict(state))
        if any(p.name != "_lock" for p in path.iterdir()):
            raise InputError(
                f"{path}: not empty and has no {PROGRESS}, so it is not a longvec output; give a new or empty "
                "output directory (--overwrite only starts longvec output directories over)"
            )
        return fresh

    @property
    def done(self) -> dict[int, dict[str, int]]:
        return {int(k): v for k, v in self._state["shards"].items()}

    @property
    def complete(self) -> bool:
        return bool(self._state.get("complete"))

    def shard(
        self, index: int, dim: int, metadata: dict[str, str], sparse: bool = False, keep: tuple[str, ...] = ()
    ) -> ShardWriter:
        return ShardWriter(self, index, dim, metadata, sparse, keep)

    def abandon(self, index: int) -> None:
        """Remove this process's temporaries of a shard that will not be committed."""
        for table in (*TABLES, "errors"):
            for tmp in (self.path / table).glob(f".part-{index:05d}.*.{os.getpid()}.tmp"):
                tmp.unlink(missing_ok=True)

    def record(self, index: int, stats: dict[str, int]) -> None:
        self._state["shards"][str(index)] = stats
        self._save()

    def finish(self, complete: bool) -> None:
        """Rebuild errors.jsonl from the finished shards, in input order; mark the job complete if it is."""
        parts = [self.path / "errors" / f"part-{i:05d}.jsonl" for i in sorted(self.done)]
        write_atomic(self.path / "errors.jsonl", b"".join(p.read_bytes() for p in parts if p.is_file()))
        self._state["complete"] = complete
        self._save()

    def reset(self) -> None:
        """Forget every shard and remove its files: for a job that cannot resume (Ray) and starts over."""
        _remove_output(self.path, keep_progress=True)
        self._state.update(shards={}, complete=False, engine=self.header["engine"])
        self._save()

    def close(self) -> None:
        """Release the directory; the `_lock` file goes too (a lock is the flock on it, not its existence, so a
        killed job's leftover file locks nothing either)."""
        (self.path / "_lock").unlink(missing_ok=True)
        self._lock.close()

    def _save(self) -> None:
        write_atomic(self.path / PROGRESS, (json.dumps(self._state, indent=1) + "\n").encode())


def _drop_damaged(path: Path, state: dict[str, Any]) -> dict[str, Any]:
    """Forget finished shards whose files are gone, truncated or hold other row counts than recorded (a disk
    fault, a copy cut short, an edit by hand): the rerun embeds them again instead of calling the job complete."""
    pq = import_pyarrow().parquet
    damaged = []
    for key, stats in state.get("shards", {}).items():
        parts = {table: path / table / f"part-{int(key):05d}.parquet" for table in TABLES}
        want = {"documents": stats.get("documents"), "chunks": stats.get("chunks")}
        try:
            rows = {table: pq.ParquetFile(p).metadata.num_rows for table, p in parts.items()}
        except Exception:  # missing, truncated or not Parquet: pyarrow raises OSError or ArrowInvalid
            rows = {}
        if rows != want or not (path / "errors" / f"part-{int(key):05d}.jsonl").is_file():
            damaged.append(key)
    if not damaged:
        return state
    for key in damaged:
        for table in (*TABLES, "errors"):
            for part in (path / table).glob(f"part-{int(key):05d}.*"):
                part.unlink()
    shards = {k: v for k, v in state["shards"].items() if k not in damaged}
    return {**state, "shards": shards, "complete": False, "redone": sorted(map(int, damaged))}


def _remove_output(path: Path, keep_progress: bool = False) -> None:
    """Remove what a job writes (shards, errors, progress), nothing else."""
    for table in (*TABLES, "errors"):
        for part in (path / table).glob("part-*"):
            part.unlink()
    (path / "errors.jsonl").unlink(missing_ok=True)
    if not keep_progress:
        (path / PROGRESS).unlink(missing_ok=True)


def _check_same_job(manifest: Path, state: dict[str, Any], header: dict[str, Any]) -> None:
    if state.get("format") != header["format"]:
        raise InputError(
            f"{manifest}: written by another longvec version (output format {state.get('format')}, this one writes "
            f"{header['format']}); finish it with that version, use a new output directory, or --overwrite"
        )
    if state.get("input") != header["input"]:
        raise InputError(
            f"{manifest}: the input changed since this output was started (other files or contents); "
            "use a new output directory, or --overwrite to start this one over"
        )
    old, new = state.get("options", {}), header["options"]
    changed = [
        f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)
    ]
    if changed:
        raise InputError(
            f"{manifest}: this output was made with other options ({'; '.join(changed)}); rerun with the same "
            "options to resume, use a new output directory, or --overwrite to start this one over"
        )
    if state.get("engine") != header["engine"] and not state.get("complete"):
        raise InputError(
            f"{manifest}: an unfinished --engine {state.get('engine')} job; finish it with that engine, "
            "use a new output directory, or --overwrite to start this one over"
        )


def _lock(path: Path) -> Any:
    import fcntl

    handle = (path / "_lock").open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as e:
        handle.close()
        raise InputError(
            f"{path}: another `longvec embed` is writing to this directory (locked by {path / '_lock'})"
        ) from e
    return handle
