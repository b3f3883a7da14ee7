"""A corpus on disk: JSONL (plain or gzipped) or Parquet files, one document per line or row; or text files
(.txt, .md), one document per file, its id the file's path relative to the input folder.

`scan` reads every file once before any embedding: it fingerprints the bytes (so a resumed job can prove it
sees the same input), counts the documents (for shards and the ETA), finds duplicate ids, and fails early,
naming the file, on what would otherwise break a job halfway (a truncated gzip, an unreadable Parquet file, a
missing column, a text or id field that none of the first records has).
Problems of a single document (a line that is not JSON, a missing field, empty text) are not errors of the
corpus: they become `Record.error` and end up in the job's errors file. So does a duplicate id: ids are
compared as strings (1 and "1" are the same id, in one file or across files), the first document with an id
is embedded and every later one goes to the errors file naming where the first is.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any, Literal, cast

from longvec.runtime.bundle.reader import sha256_file
from longvec.runtime.core.text import text_problem
from longvec.runtime.errors import BackendUnavailable, InputError
from longvec.runtime.jobs.reading import ReadDigest, changed_during_job

Format = Literal["jsonl", "jsonl.gz", "parquet", "text"]
_SUFFIXES: dict[str, Format] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".jsonl.gz": "jsonl.gz",
    ".ndjson.gz": "jsonl.gz",
    ".json.gz": "jsonl.gz",
    ".parquet": "parquet",
    ".txt": "text",
    ".md": "text",
}
DOCUMENT_COLUMNS = ("id", "n_tokens", "vector")  # the output's own columns: a kept field may not take a name of them
FIELD_SAMPLE = 100  # records whose fields are checked against --text-field / --id-field before a job starts


@dataclass(frozen=True)
class Fields:
    text: str = "text"
    id: str = "id"
    # input fields copied into the output's documents table (--keep-fields), as strings: a string as it is, any
    # other value as its JSON text, a missing one as null
    keep: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "keep", tuple(self.keep))
        clash = next((k for k in self.keep if k in DOCUMENT_COLUMNS or not k or self.keep.count(k) > 1), None)
        if clash is not None:
            raise InputError(
                f"--keep-fields: {clash!r} is empty, repeated or an output column ({', '.join(DOCUMENT_COLUMNS)})"
            )


@dataclass(frozen=True)
class Record:
    position: int  # 0-based over the whole corpus, bad documents included: shards are ranges of positions
    source: str  # "file.jsonl:17" (line) or "file.parquet:row 16", for the errors file
    id: str | None
    text: str | None
    error: str | None = None
    kept: tuple[str | None, ...] = ()  # the values of Fields.keep, in that order


@dataclass(frozen=True)
class InputFile:
    path: Path
    name: str  # relative to the corpus root: what the fingerprint compares
    format: Format
    size: int
    sha256: str
    n_records: int


@dataclass(frozen=True)
class Corpus:
    root: Path
    files: tuple[InputFile, ...]
    duplicates: Mapping[int, str] = dataclass_field(
        default_factory=dict
    )  # position -> source of the id's first document

    @property
    def n_records(self) -> int:
        return sum(f.n_records for f in self.files)

    def fingerprint(self) -> dict[str, Any]:
        return {
            "files": [{"name": f.name, "size": f.size, "sha256": f.sha256} for f in self.files],
            "records": self.n_records,
        }


def import_pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as e:
        raise BackendUnavailable(f"batch jobs need pyarrow: pip install 'longvec[batch]' ({e})") from e
    return pyarrow


def file_format(path: Path) -> Format | None:
    name = path.name.lower()
    return next((fmt for suffix, fmt in _SUFFIXES.items() if name.endswith(suffix)), None)


def input_files(root: Path) -> list[tuple[Path, Format]]:
    """One supported file, or every supported file under a directory in sorted order (hidden and `_` files are
    skipped, as Parquet tools do). Anything else in the directory is an error rather than silently left out: a
    file of another type, a dangling symlink, a named pipe or a device. A directory holds record files (JSONL,
    Parquet) or text files (.txt, .md), not both: a README.md beside the JSONL is not a document."""
    if root.is_file():
        fmt = file_format(root)
        if fmt is None:
            raise InputError(f"{root}: not a corpus file; expected one of {', '.join(_SUFFIXES)}")
        return [(root, fmt)]
    if not root.is_dir():
        what = "not a regular file or directory" if root.exists() or root.is_symlink() else "no such file or directory"
        raise InputError(f"{root}: {what}")
    found = sorted(p for p in root.rglob("*") if not p.is_dir() and not _hidden(p.relative_to(root)))
    if not found:
        raise InputError(f"{root}: no corpus files ({', '.join(_SUFFIXES)}) in this directory")
    typed = []
    for p in found:
        if not p.is_file():
            kind = "a dangling symlink" if p.is_symlink() and not p.exists() else "not a regular file"
            raise InputError(f"{p}: {kind}; remove it from the input directory or name it with a leading '_'")
        fmt = file_format(p)
        if fmt is None:
            raise InputError(f"{p}: not a corpus file; expected one of {', '.join(_SUFFIXES)}")
        typed.append((p, fmt))
    kinds = {fmt == "text" for _, fmt in typed}
    if len(kinds) > 1:
        text = next(p for p, fmt in typed if fmt == "text")
        raise InputError(
            f"{root}: holds both record files (.jsonl, .parquet) and text files such as {text.relative_to(root)}; "
            "a job reads one kind: move one of them out, or name it with a leading '_'"
        )
    return typed


def _hidden(relative: Path) -> bool:
    return any(part.startswith((".", "_")) for part in relative.parts)


def scan(root: Path, fields: Fields) -> Corpus:
    base = root if root.is_dir() else root.parent
    files = []
    ids = _Ids()
    sample: list[set[str]] = []  # field names of the first JSON objects
    for path, fmt in input_files(root):
        size, digest = path.stat().st_size, sha256_file(path)
        name = path.relative_to(base).as_posix()
        if fmt == "parquet":
            n = _count_parquet(path, fields)
            _parquet_ids(path, name, fields, ids)
        elif fmt == "text":
            n = 1
            ids.start_file(name, "file")
            ids.add(name, 0)
        else:
            n = _scan_lines(path, fmt, name, fields, ids, sample)
        files.append(InputFile(path, name, fmt, size, digest, n))
    _check_fields(root, fields, sample)
    return Corpus(root, tuple(files), ids.duplicates())


def _check_fields(root: Path, fields: Fields, sample: list[set[str]]) -> None:
    """A wrong --text-field / --id-field would send every document to the errors file: refuse it up front."""
    if not sample:
        return
    for flag, name in (("--text-field", fields.text), ("--id-field", fields.id)):
        if not any(name in keys for keys in sample):
            found = sorted(set().union(*sample))
            shown = ", ".join(found[:20]) + (", ..." if len(found) > 20 else "")
            raise InputError(
                f"{root}: none of the first {len(sample)} records has the field {name!r} ({flag}); "
                f"fields found: {shown or 'none'}"
            )


class _Ids:
    """Every document id as a 64-bit hash with its position and source: 24 bytes a document plus the sources
    of the few duplicates, not a set of id strings. Two ids with the same hash count as the same (about one
    chance in 10^7 for a corpus of 10^6 distinct ids)."""

    def __init__(self) -> None:
        self.hashes, self.positions = array("q"), array("q")
        self.sources: list[tuple[int, str, str]] = []  # (first position, file name, kind) per file
        self.position = 0
        self._line_numbers = array("q")  # line (JSONL) or row (Parquet) of each position, for messages

    def add(self, doc_id: Any, where: int) -> None:
        if not (isinstance(doc_id, bool) or not isinstance(doc_id, (str, int))):
            self.hashes.append(hash(str(doc_id)))
            self.positions.append(self.position)
        self._line_numbers.append(where)
        self.position += 1

    def start_file(self, name: str, kind: Literal["lines", "rows", "file"]) -> None:
        self.sources.append((self.position, name, kind))

    def source(self, position: int) -> str:
        _, name, kind = next(s for s in reversed(self.sources) if s[0] <= position)
        where = self._line_numbers[position]
        return {"rows": f"{name}:row {where}", "lines": f"{name}:{where}"}.get(kind, name)

    def duplicates(self) -> dict[int, str]:
        import numpy as np

        hashes = np.frombuffer(self.hashes, dtype=np.int64)
        positions = np.frombuffer(self.positions, dtype=np.int64)
        if hashes.size < 2:
            return {}
        order = np.argsort(hashes, kind="stable")  # positions ascend within a hash: the first one leads
        sorted_hashes = hashes[order]
        repeat = np.flatnonzero(sorted_hashes[1:] == sorted_hashes[:-1]) + 1
        leads = np.searchsorted(sorted_hashes, sorted_hashes[repeat], side="left")
        out = {}
        for k, lead in zip(repeat.tolist(), leads.tolist()):
            out[int(positions[order[k]])] = self.source(int(positions[order[lead]]))
        return out


def _scan_lines(path: Path, fmt: Format, name: str, fields: Fields, ids: _Ids, sample: list[set[str]]) -> int:
    """Count the documents of a JSONL file, note each one's id and the fields of the first few."""
    ids.start_file(name, "lines")
    n = 0
    try:
        with _open_lines(path, fmt) as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                n += 1
                try:
                    doc = json.loads(line)
                except ValueError:  # not JSON or not UTF-8: the record's own error, later
                    doc = None
                if isinstance(doc, dict):
                    ids.add(doc.get(fields.id), number)
                    if len(sample) < FIELD_SAMPLE:
                        sample.append(set(doc))
                else:
                    ids.add(None, number)
    except (EOFError, OSError, zlib.error) as e:
        raise InputError(f"{path}: cannot read this gzip file, is it truncated or corrupt? ({e})") from e
    return n


def _parquet_ids(path: Path, name: str, fields: Fields, ids: _Ids) -> None:
    pa = import_pyarrow()
    ids.start_file(name, "rows")
    row = 0
    for record_batch in pa.parquet.ParquetFile(path).iter_batches(columns=[fields.id], batch_size=65536):
        for value in record_batch.column(0).to_pylist():
            ids.add(value, row)
            row += 1


def _open_lines(path: Path, fmt: Format) -> Any:
    return gzip.open(path, "rb") if fmt == "jsonl.gz" else path.open("rb")


def _count_parquet(path: Path, fields: Fields) -> int:
    pa = import_pyarrow()
    try:
        meta = pa.parquet.ParquetFile(path)
        schema = meta.schema_arrow
    except (pa.ArrowException, OSError) as e:
        raise InputError(f"{path}: not a readable Parquet file ({e})") from e
    for field, kinds in ((fields.text, "string"), (fields.id, "string or integer")):
        if field not in schema.names:
            raise InputError(f"{path}: no column {field!r} (columns: {', '.join(schema.names)})")
        t = schema.field(field).type
        ok = pa.types.is_string(t) or pa.types.is_large_string(t)
        if field == fields.id and field != fields.text:
            ok = ok or pa.types.is_integer(t)
        if not ok:
            raise InputError(f"{path}: column {field!r} is {t}, expected {kinds}")
    return int(meta.metadata.num_rows)


def check_unchanged(corpus: Corpus) -> None:
    """Every file still has the bytes the scan fingerprinted (for readers that stop before a file's end)."""
    for f in corpus.files:
        if sha256_file(f.path) != f.sha256:
            raise changed_during_job(f.path, "its bytes differ from when the job started")


def iter_records(corpus: Corpus, fields: Fields, wanted: Any = None) -> Iterator[Record]:
    """Records in corpus order. `wanted(position) -> bool` skips others without parsing them (a resumed job
    does not re-parse finished shards); whole files outside it are not even opened. A file read to its end
    is checked against the scan's fingerprint (InputError if it changed since); one that a consumer stops
    reading early is not: see `check_unchanged`."""
    start = 0
    for f in corpus.files:
        positions = range(start, start + f.n_records)
        start += f.n_records
        if wanted is not None and not any(wanted(p) for p in positions):
            continue
        reader = {"parquet": _parquet_records, "text": _text_records}.get(f.format, _jsonl_records)
        for record in reader(f, fields, positions.start):
            if wanted is None or wanted(record.position):
                first = corpus.duplicates.get(record.position)
                if first is not None and record.error is None:
                    record = Record(
                        record.position,
                        record.source,
                        record.id,
                        None,
                        f"duplicate id {record.id!r} (first at {first})",
                    )
                yield record


def _jsonl_records(f: InputFile, fields: Fields, first: int) -> Iterator[Record]:
    position, end = first, first + f.n_records
    try:
        with f.path.open("rb") as raw:
            read = ReadDigest(raw)
            lines: Any = gzip.GzipFile(fileobj=cast(Any, read), mode="rb") if f.format == "jsonl.gz" else read
            for number, line in enumerate(lines, 1):
                if line.strip():
                    if position >= end:  # more lines than the scan counted: the next file's positions are not ours
                        raise changed_during_job(f.path, "it has more records than when the job started")
                    yield parse_json_line(line, fields, position, f"{f.name}:{number}")
                    position += 1
            read.drain()
    except (EOFError, OSError, zlib.error) as e:
        raise InputError(f"{f.path}: cannot read this gzip file, is it truncated or corrupt? ({e})") from e
    if position != end or read.hexdigest() != f.sha256:
        raise changed_during_job(f.path, f"read {position - first} records, the job started with {f.n_records}")


def _parquet_records(f: InputFile, fields: Fields, first: int) -> Iterator[Record]:
    pa = import_pyarrow()
    parquet = pa.parquet.ParquetFile(f.path)
    kept = [k for k in fields.keep if k in parquet.schema_arrow.names]  # a column this file lacks: null
    columns = list(dict.fromkeys((fields.id, fields.text, *kept)))
    position = first
    for record_batch in parquet.iter_batches(columns=columns, batch_size=1024):
        data = record_batch.to_pydict()
        for row, (id_value, text) in enumerate(zip(data[fields.id], data[fields.text])):
            record = check_record(position, f"{f.name}:row {position - first}", id_value, text, fields)
            if fields.keep and record.error is None:
                record = replace(
                    record, kept=tuple(kept_value(data[k][row] if k in data else None) for k in fields.keep)
                )
            yield record
            position += 1
    if position - first != f.n_records or sha256_file(f.path) != f.sha256:
        raise changed_during_job(f.path, f"read {position - first} rows, the job started with {f.n_records}")


def _text_records(f: InputFile, fields: Fields, first: int) -> Iterator[Record]:
    """A .txt or .md file is one document: its text the whole file (UTF-8), its id its path in the corpus."""
    data = f.path.read_bytes()
    if hashlib.sha256(data).hexdigest() != f.sha256:
        raise changed_during_job(f.path, "its bytes differ")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        yield Record(first, f.name, f.name, None, f"file is not UTF-8 ({e.reason} at byte {e.start})")
        return
    record = check_record(first, f.name, f.name, text, fields)
    if fields.keep and record.error is None:
        record = replace(record, kept=tuple(text if k == fields.text else None for k in fields.keep))
    yield record


def kept_value(value: Any) -> str | None:
    """A kept field as a string: strings as they are, other values as JSON text, missing ones as None."""
    if value is None or value is _MISSING:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


_MISSING = object()


def parse_json_line(line: bytes | str, fields: Fields, position: int, source: str) -> Record:
    try:
        doc = json.loads(line)
    except UnicodeDecodeError as e:
        return Record(position, source, None, None, f"line is not UTF-8 ({e.reason} at byte {e.start})")
    except json.JSONDecodeError as e:
        return Record(position, source, None, None, f"line is not JSON ({e.msg} at column {e.colno})")
    if not isinstance(doc, dict):
        return Record(position, source, None, None, f"line is a JSON {type(doc).__name__}, expected an object")
    record = check_record(position, source, doc.get(fields.id, _MISSING), doc.get(fields.text, _MISSING), fields)
    if fields.keep and record.error is None:
        record = replace(record, kept=tuple(kept_value(doc.get(k)) for k in fields.keep))
    return record


def check_record(position: int, source: str, id_value: Any, text: Any, fields: Fields) -> Record:
    """The one place that decides what a usable document is, for every format and both engines."""
    if id_value is _MISSING or id_value is None:
        return Record(position, source, None, None, f"missing id field {fields.id!r}")
    if isinstance(id_value, bool) or not isinstance(id_value, (str, int)):
        return Record(position, source, None, None, f"id is {type(id_value).__name__}, expected a string or integer")
    doc_id = str(id_value)
    if text is _MISSING or text is None:
        return Record(position, source, doc_id, None, f"missing text field {fields.text!r}")
    problem = text_problem(text)
    if problem is not None:
        return Record(position, source, doc_id, None, f"text {problem}")
    return Record(position, source, doc_id, text)
