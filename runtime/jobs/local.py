"""Batch jobs: embed a corpus from files into Parquet shards, with progress, resume and an errors file.

One machine runs `run_local` (this module, the plain runtime); beyond one machine the same job runs on Ray Data
(`longvec.runtime.jobs.ray_engine`). Both go through `embed_records`, so a document gets the same rows either way.

Shards are ranges of input positions (`shard_size` documents, bad ones included), so they are the same on every
run of the same input; `_progress.json` lists the finished ones and a rerun does only the rest.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from longvec.runtime.core.documents import DocumentOptions
from longvec.runtime.core.sparse import TERMS_VERSION, require_stemmer
from longvec.runtime.embedder import (
    DEFAULT_CHUNK_TOKENS,
    DEFAULT_CHUNKING,
    DEFAULT_MODE,
    DEFAULT_VARIANT,
    DocumentResult,
    Embedder,
)
from longvec.runtime.errors import InputError, OutputError
from longvec.runtime.jobs.corpus import Corpus, Fields, Record, iter_records, scan
from longvec.runtime.jobs.progress import Progress, duration
from longvec.runtime.jobs.shards import FORMAT_VERSION, OutputDir, Rows
from longvec.runtime.jobs.stops import terminate_as_interrupt

DEFAULT_SHARD_SIZE = 1000
OFFSETS = ("codepoints", "utf16")
# Documents per embed_documents call (a "call group"; the library packs their windows into encoder batches):
# large enough for length-sorted packing across documents, small enough that the progress bar moves and memory
# stays bounded when documents are books.
CALL_DOCUMENTS = 256
CALL_CHARS = 1_000_000
# A test hook: set to a directory holding two named pipes, `paused` and `go`, the job stops before publishing
# each shard (its rows written to temporaries): it writes the shard's index to `paused`, then waits for a line on
# `go`. A test can so Ctrl-C or kill it at a known point instead of racing it. Unset, it costs one environment
# lookup per shard.
PAUSE_ENV = "LONGVEC_JOB_PAUSE"


@dataclass(frozen=True)
class JobOptions:
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS
    fields: Fields = field(default_factory=Fields)
    variant: str = DEFAULT_VARIANT
    shard_size: int = DEFAULT_SHARD_SIZE
    sparse: bool = False
    threads: int | None = None  # how, not what: not part of the job's identity
    chunking: str = DEFAULT_CHUNKING
    mode: str = DEFAULT_MODE
    window: int | None = None  # None: the bundle's window
    prompt_name: str | None = None  # None: the bundle's default prompt, if any
    prompt: str | None = None  # literal prompt text; "" turns a default prompt off
    device: str = "cpu"  # "cuda": onnxruntime-gpu with GPU batch sizes (Embedder.load); how, not what
    offsets: str = "codepoints"  # char_start / char_end in code points (Python) or "utf16" code units (JavaScript)

    def __post_init__(self) -> None:
        for name in ("chunk_tokens", "shard_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        if self.chunking == "spans":  # a corpus file has no spans field
            raise InputError(f"chunking must be one of tokens, sentences, paragraphs, got {self.chunking!r}")
        # the library's own check of a documents call's options, before the model is loaded
        DocumentOptions(self.chunking, self.chunk_tokens, self.mode, sparse=self.sparse)

    def embed_kwargs(self) -> dict[str, Any]:
        """The embed_documents arguments as given (besides chunk_tokens and sparse); jobs run `job_kwargs`, these
        resolved against the bundle."""
        return {"chunking": self.chunking, "mode": self.mode, "prompt": self.prompt, "prompt_name": self.prompt_name}


@dataclass(frozen=True)
class Summary:
    documents: int
    chunks: int
    errors: int
    tokens: int  # embedded by this run (resumed shards excluded)
    seconds: float
    shards_written: int
    shards_skipped: int
    documents_this_run: int
    duplicates: int = 0  # documents whose id an earlier document has (in errors, counted there too)

    @classmethod
    def of(cls, out: OutputDir, tokens: int, seconds: float, written: int, skipped: int, this_run: int) -> Summary:
        """Totals over every finished shard of `out` (this run's and earlier ones), and what this run did."""
        shards = out.done.values()
        return cls(
            documents=sum(s["documents"] for s in shards),
            chunks=sum(s["chunks"] for s in shards),
            errors=sum(s["errors"] for s in shards),
            tokens=tokens,
            seconds=seconds,
            shards_written=written,
            shards_skipped=skipped,
            documents_this_run=this_run,
        )

    @property
    def docs_per_s(self) -> float:
        return self.documents_this_run / self.seconds if self.seconds > 0 else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def longvec_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("longvec")
    except metadata.PackageNotFoundError:  # a source tree run without installing
        return "unknown"


def resolved_options(embedder: Embedder, options: JobOptions) -> dict[str, Any]:
    """Every option that decides a vector or a shard, resolved: `mode="auto"` becomes the bundle's mode and stride,
    None the window, prompt, normalization and dimensions that apply. Defaults are stored as values, never left
    out, so that a shard says how it was made; `job_kwargs` passes exactly these to embed_documents. Whatever
    changes here refuses a resume (shards.py, `_check_same_job`)."""
    if options.offsets not in OFFSETS:
        raise InputError(f"offsets must be one of {', '.join(OFFSETS)}, got {options.offsets!r}")
    m = embedder.manifest
    variant = m.variant(options.variant)
    # the library resolves the call (auto -> the bundle's mode and stride, the prompt text): the job records that
    call = embedder.document_call(
        # both checked by JobOptions through the library's DocumentOptions
        chunking=options.chunking,  # type: ignore[arg-type]
        chunk_tokens=options.chunk_tokens,
        mode=options.mode,  # type: ignore[arg-type]
        prompt=options.prompt,
        prompt_name=options.prompt_name,
        sparse=options.sparse,
    )
    mode, stride = call.mode.name, call.plan.stride
    prompt_name = options.prompt_name
    if options.prompt is None and prompt_name is None:
        prompt_name = m.default_prompt
    sparse = (
        {"k1": embedder.sparse.k1, "b": embedder.sparse.b, "avg_len": embedder.sparse.avg_len, "terms": TERMS_VERSION}
        if options.sparse
        else None
    )
    return {
        "model": embedder.name,
        "weights": m.files.get(variant.file) if variant else None,  # sha256 of the variant's graph
        "variant": options.variant,
        "window": embedder.window,
        "chunking": options.chunking,
        "chunk_tokens": options.chunk_tokens,
        "mode": options.mode,  # as asked
        "mode_resolved": mode,  # what ran
        "stride": stride,
        "stitch": "center",
        "prompt_name": prompt_name,  # None: no named prompt (a literal one, or none)
        "prompt": call.prompt,  # the text that reaches the model
        "normalize": bool(m.pooling.normalize),
        "dimensions": embedder.dim,
        "sparse": sparse,  # BM25 parameters, or None
        "text_field": options.fields.text,
        "id_field": options.fields.id,
        "keep_fields": list(options.fields.keep),
        "shard_size": options.shard_size,
        "offsets": options.offsets,
    }


def job_kwargs(resolved: dict[str, Any]) -> dict[str, Any]:
    """The embed_documents arguments (besides chunk_tokens and sparse) that give the vectors `resolved` records."""
    return {
        "chunking": resolved["chunking"],
        "mode": resolved["mode_resolved"],
        "stride": resolved["stride"],
        "prompt": resolved["prompt"] or "",  # "": no prompt, not even the default
    }


def job_header(engine: str, corpus: Corpus, embedder: Embedder, options: JobOptions) -> dict[str, Any]:
    """What makes two runs the same job: the input bytes and every option that changes a vector or a shard.
    `longvec` and `device` say how the last run ran; they are not compared."""
    return {
        "format": FORMAT_VERSION,
        "engine": engine,
        "input": corpus.fingerprint(),
        "options": resolved_options(embedder, options),
        "longvec": longvec_version(),
        "device": options.device,
    }


def table_metadata(embedder: Embedder, options: JobOptions, provider: str | None = None) -> dict[str, str]:
    """Each shard's schema metadata: the resolved options (JSON) and how the shard was made."""
    made = {
        **resolved_options(embedder, options),
        "device": options.device,
        "provider": provider or embedder.provider,
        "longvec": longvec_version(),
    }
    return {
        "longvec.model": embedder.name,
        "longvec.variant": options.variant,
        "longvec.chunk_tokens": str(options.chunk_tokens),
        "longvec.version": made["longvec"],
        "longvec.options": json.dumps(made, sort_keys=True),
    }


def embed_records(
    embedder: Embedder,
    records: Sequence[Record],
    chunk_tokens: int,
    sparse: bool = False,
    embed_kwargs: dict[str, Any] | None = None,
    keep: tuple[str, ...] = (),
    offsets: str = "codepoints",
) -> Rows:
    """Rows for the documents that embed and an error entry for each one that does not, in input order.
    `embed_kwargs` are more embed_documents arguments (chunking, mode, stride, prompt, prompt_name); `keep` names
    the kept input fields (their values ride on each Record); `offsets="utf16"` gives chunk spans in UTF-16 code
    units."""
    rows = Rows(embedder.dim, sparse, keep)
    good = []
    for r in records:
        if r.error is not None or r.text is None or r.id is None:
            rows.fail(r.id, r.position, r.source, r.error or "no text")
        else:
            good.append(r)
    for record, result in _embed_isolating(embedder, good, chunk_tokens, sparse, rows, embed_kwargs or {}):
        assert record.id is not None  # filtered above
        rows.add(
            record.id,
            result.n_tokens,
            result.vector,
            utf16_spans(record.text or "", result.chunk_spans) if offsets == "utf16" else result.chunk_spans,
            result.chunk_vectors,
            result.chunk_sparse,
            record.kept,
        )
    rows.errors.sort(key=lambda e: e["position"])
    return rows


def utf16_spans(text: str, spans: np.ndarray) -> np.ndarray:
    """Code-point spans of `text` as UTF-16 code-unit spans (what JavaScript, Java and C# index): every character
    past U+FFFF (most emoji) counts 2."""
    points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    if not (points > 0xFFFF).any():
        return spans
    units = np.concatenate([[0], np.cumsum(1 + (points > 0xFFFF), dtype=np.int64)])
    return units[np.asarray(spans, dtype=np.int64)]


def _embed_isolating(
    embedder: Embedder, records: list[Record], chunk_tokens: int, sparse: bool, rows: Rows, kwargs: dict[str, Any]
) -> list[tuple[Record, DocumentResult]]:
    """One call for the whole group; if the model rejects a text (e.g. one with no tokens at all), bisect to find
    it, so one bad document costs a few extra calls instead of failing its neighbours."""
    if not records:
        return []
    try:
        texts = [r.text for r in records if r.text is not None]
        results = embedder.embed_documents(texts, chunk_tokens=chunk_tokens, sparse=sparse, **kwargs)
        return list(zip(records, results))
    except InputError as e:
        if len(records) == 1:
            r = records[0]
            rows.fail(r.id, r.position, r.source, str(e).replace("texts[0]", "text"))
            return []
    half = len(records) // 2
    return _embed_isolating(embedder, records[:half], chunk_tokens, sparse, rows, kwargs) + _embed_isolating(
        embedder, records[half:], chunk_tokens, sparse, rows, kwargs
    )


def call_groups(records: Iterator[Record]) -> Iterator[list[Record]]:
    """The records of one embed_documents call each: up to CALL_DOCUMENTS documents or CALL_CHARS characters."""
    group: list[Record] = []
    chars = 0
    for r in records:
        group.append(r)
        chars += len(r.text or "")
        if len(group) >= CALL_DOCUMENTS or chars >= CALL_CHARS:
            yield group
            group, chars = [], 0
    if group:
        yield group


def _pause_before_publishing(index: int) -> None:
    gate = os.environ.get(PAUSE_ENV)
    if gate:
        with open(Path(gate) / "paused", "w", encoding="utf-8") as paused:  # blocks until the test listens
            paused.write(f"{index}\n")
        with open(Path(gate) / "go", encoding="utf-8") as go:  # blocks until the test lets the job go on
            go.readline()


def check_paths(source: Path, output_dir: Path) -> None:
    """Refuse an output directory inside the input directory: every rerun would read the job's own output as
    input (and a killed job could never resume, its input having changed)."""
    src, out = Path(source).resolve(), Path(output_dir).resolve()
    if src.is_dir() and out.is_relative_to(src):
        raise InputError(f"{output_dir}: the output directory is inside the input directory {source}; put it elsewhere")
    if out.exists() and not out.is_dir():
        raise OutputError(f"{output_dir}: exists and is not a directory")


@contextlib.contextmanager
def output_errors(output_dir: Path) -> Iterator[None]:
    """File-system failures while writing the output (read-only, disk full, ...) as one typed error."""
    try:
        yield
    except OSError as e:
        where = e.filename or output_dir
        raise OutputError(f"{where}: cannot write the job's output ({e.strerror or e})") from e


def run_local(
    bundle: str | Path,
    source: str | Path,
    output_dir: str | Path,
    options: JobOptions = JobOptions(),
    stream: TextIO | None = None,
    overwrite: bool = False,
) -> Summary:
    """Embed every document of `source` into `output_dir`, skipping shards a previous run finished. Ctrl-C or
    SIGTERM abandons the current shard (its temporaries are removed) and leaves a resumable directory; an input
    file that changes during the job stops it with an InputError (the job is not marked complete). `overwrite`
    starts an output directory of another job (other input or options) over instead of refusing it."""
    source, output_dir = Path(source), Path(output_dir)
    if options.sparse:
        require_stemmer()  # fail before the scan and the model load, not at the first batch
    check_paths(source, output_dir)
    corpus = scan(source, options.fields)
    with Embedder.load(
        bundle, variant=options.variant, threads=options.threads, window=options.window, device=options.device
    ) as embedder:
        header = job_header("local", corpus, embedder, options)
        with output_errors(output_dir):
            out = OutputDir.open(output_dir, header, overwrite=overwrite)
            try:
                with terminate_as_interrupt():
                    return _run(embedder, corpus, out, options, stream)
            finally:
                out.close()


def _run(embedder: Embedder, corpus: Corpus, out: OutputDir, options: JobOptions, stream: TextIO | None) -> Summary:
    size, total = options.shard_size, corpus.n_records
    done = out.done
    already = sum(min(size, total - i * size) for i in done)
    progress = Progress(total, already, stream)
    metadata = table_metadata(embedder, options)
    kwargs = job_kwargs(resolved_options(embedder, options))
    keep = options.fields.keep
    written = 0
    started = time.monotonic()
    if out.damaged:
        shown = ", ".join(f"{i:05d}" for i in out.damaged)
        progress.log(f"shards {shown}: files missing, truncated or not as recorded; embedding them again")
    if done and not progress.live:
        progress.log(f"resuming: {len(done)} shards ({already} documents) already done")
    progress.log(f"embedding {total} documents with {embedder.name} ({options.variant}, window {embedder.window})")
    records = iter_records(corpus, options.fields, wanted=lambda p: p // size not in done)
    try:
        for index, shard_records in itertools.groupby(records, key=lambda r: r.position // size):
            writer = None
            try:
                writer = out.shard(index, embedder.dim, metadata, options.sparse, keep)
                for group in call_groups(shard_records):
                    rows = embed_records(
                        embedder, group, options.chunk_tokens, options.sparse, kwargs, keep, options.offsets
                    )
                    writer.add(rows)
                    progress.update(len(group), rows.tokens)
                _pause_before_publishing(index)
                stats = writer.commit()
            except BaseException:
                if writer is not None:
                    writer.abort()
                out.abandon(index)  # also what a Ctrl-C between opening a file and `writer = ...` left
                raise
            written += 1
            if not progress.live:
                docs_per_s, tokens_per_s, left = progress.rates()
                progress.log(
                    f"shard {index:05d}: {stats['documents']} documents, {stats['errors']} errors; "
                    f"{progress.done}/{total} done, {tokens_per_s:,.0f} tok/s, {docs_per_s:,.1f} docs/s, "
                    f"ETA {duration(left) if docs_per_s > 0 else '--:--'}"
                )
    finally:
        progress.close()
        n_shards = -(-total // size)
        out.finish(complete=len(out.done) == n_shards)
    seconds = time.monotonic() - started
    summary = Summary.of(out, progress.tokens, seconds, written, len(done), progress.done - already)
    return replace(summary, duplicates=len(corpus.duplicates))
