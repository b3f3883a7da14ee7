"""`EmbedActor`: longvec inside a Ray Data pipeline. The bundle is loaded once per actor, not once per batch.

    import ray
    from longvec.runtime.jobs.ray_actor import EmbedActor

    ds = ray.data.read_parquet("s3://bucket/corpus/")          # columns "id" and "text"
    ds = ds.map_batches(
        EmbedActor,
        fn_constructor_kwargs={"bundle": "/models/all-MiniLM-L6-v2", "threads": 1},
        batch_size=64, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=4), num_cpus=1,
    )  # actors x num_cpus below the cluster's CPUs: Ray's read tasks need a CPU too, or they wait forever
    ds.write_parquet("s3://bucket/vectors/")   # id, n_tokens, vector, chunks[{char_start, char_end, vector}], error

With `sparse=True` each chunk also carries `sparse_indices` and `sparse_values` (BM25 term weights, see
longvec.runtime.core.sparse).

Each output row is one input document: its vector and its chunks (a list of structs), or `error` (and null
vectors) when it could not be embedded; failed documents never fail the call. The class itself needs no
Ray: it is a callable on Arrow tables, which is also how the tests use it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from longvec.runtime.embedder import DEFAULT_CHUNK_TOKENS, DEFAULT_VARIANT, Embedder
from longvec.runtime.errors import BackendUnavailable
from longvec.runtime.jobs.corpus import Fields, Record, check_record, import_pyarrow
from longvec.runtime.jobs.shards import Rows, chunk_fields, document_fields, sparse_columns

# Columns a pre-parsing step may add (longvec's own JSONL reader does): the record is then taken as parsed.
ERROR_COLUMN = "_longvec_error"
SOURCE_COLUMN = "_longvec_source"


def import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise BackendUnavailable(f"--engine ray needs Ray Data: pip install 'longvec[ray]' ({e})") from e
    return ray


def output_schema(dim: int, sparse: bool = False) -> Any:
    """One row per document: the columns of documents/, its chunks as structs of the columns of chunks/, and
    the error and source of a document that failed."""
    pa = import_pyarrow()
    return pa.schema(
        [
            *document_fields(dim),
            ("chunks", pa.list_(pa.struct(chunk_fields(dim, sparse)))),
            ("error", pa.string()),
            ("source", pa.string()),
        ]
    )


class EmbedActor:
    def __init__(
        self,
        bundle: str,
        variant: str | None = None,
        threads: int | None = 1,
        chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
        text_field: str = "text",
        id_field: str = "id",
        sparse: bool = False,
        window: int | None = None,
        embed_kwargs: dict[str, Any] | None = None,
        device: str = "cpu",
        offsets: str = "codepoints",
    ) -> None:
        """`embed_kwargs`: more embed_documents arguments (chunking, mode, stride, prompt, prompt_name)."""
        self.embedder = Embedder.load(
            bundle, variant=variant or DEFAULT_VARIANT, threads=threads, window=window, device=device
        )
        self.embed_kwargs = dict(embed_kwargs or {})
        self.chunk_tokens = chunk_tokens
        self.fields = Fields(text=text_field, id=id_field)
        self.sparse = sparse
        self.offsets = offsets  # "utf16": char_start / char_end in UTF-16 code units
        self.schema = output_schema(self.embedder.dim, sparse)

    def __call__(self, documents: Any) -> Any:
        """An Arrow table (or a dict of columns) of documents in, one row per document out."""
        from longvec.runtime.jobs.local import embed_records

        pa = import_pyarrow()
        table = documents if isinstance(documents, pa.Table) else pa.table(documents)
        records = self._records(table.to_pydict())
        rows = embed_records(
            self.embedder, records, self.chunk_tokens, self.sparse, self.embed_kwargs, offsets=self.offsets
        )
        return self._table(records, rows)

    def _records(self, columns: dict[str, list[Any]]) -> list[Record]:
        n = len(next(iter(columns.values()), []))
        ids = columns.get(self.fields.id, [None] * n)
        texts = columns.get(self.fields.text, [None] * n)
        sources = columns.get(SOURCE_COLUMN) or columns.get("path") or [""] * n
        errors = columns.get(ERROR_COLUMN, [None] * n)
        return [
            Record(i, sources[i], ids[i], texts[i], errors[i])
            if errors[i] is not None
            else check_record(i, sources[i], ids[i], texts[i], self.fields)
            for i in range(n)
        ]

    def _table(self, records: list[Record], rows: Rows) -> Any:
        """Arrow arrays built column-wise from `rows`, aligned back to `records` (failed ones get null vectors)."""
        pa = import_pyarrow()
        dim = self.embedder.dim
        failed = {e["position"]: e for e in rows.errors}
        ok = np.array([r.position not in failed for r in records], dtype=bool)
        order = np.cumsum(ok) - 1  # index into rows for the documents that embedded
        ids = [rows.ids[order[i]] if ok[i] else failed[r.position]["id"] for i, r in enumerate(records)]
        n_tokens = [rows.n_tokens[order[i]] if ok[i] else None for i in range(len(records))]
        vectors = np.zeros((len(records), dim), np.float32)
        counts = np.zeros(len(records), np.int32)
        if rows.ids:
            vectors[ok] = np.stack(rows.vectors)
            counts[ok] = [len(s) for s in rows.chunk_spans]
        spans = np.concatenate(rows.chunk_spans) if rows.chunk_spans else np.zeros((0, 2), np.int64)
        flat = np.concatenate(rows.chunk_vectors) if rows.chunk_vectors else np.zeros((0, dim), np.float32)
        chunk = pa.StructArray.from_arrays(
            [
                pa.array(spans[:, 0].astype(np.int64)),
                pa.array(spans[:, 1].astype(np.int64)),
                pa.FixedSizeListArray.from_arrays(pa.array(flat.astype(np.float32).reshape(-1)), dim),
                *(sparse_columns([v for doc in rows.chunk_sparse for v in doc]) if self.sparse else []),
            ],
            fields=list(self.schema.field("chunks").type.value_type),
        )
        offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
        missing = pa.array(~ok)
        columns = [
            pa.array(ids, pa.string()),
            pa.array(n_tokens, pa.int64()),
            pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim, mask=missing),
            pa.ListArray.from_arrays(offsets, chunk, mask=missing),
            pa.array([failed[r.position]["reason"] if r.position in failed else None for r in records], pa.string()),
            pa.array([r.source for r in records], pa.string()),
        ]
        return pa.Table.from_arrays(columns, schema=self.schema)
