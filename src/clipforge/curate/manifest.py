"""Manifests read and written in chunks, for commands that filter rows of a large manifest.

`clipforge.data.columns.read_rows` holds a whole manifest in memory; curation streams it instead,
a chunk of rows at a time, and writes the rows it keeps in the input's own format: a CSV/TSV keeps
its header and every cell, a JSONL line is copied as it was, a parquet file keeps its schema. The
column names and aliases, caption cells and error messages are `clipforge.data.columns`' own.

Relative image paths in a manifest are relative to its folder, so when the output lies in another
folder, the image column's relative paths are rewritten to point at the same files from there (the
only cells that change).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..data.columns import (
    CAPTION_COLUMNS,
    IMAGE_COLUMNS,
    is_manifest,
    iter_jsonl,
    pick_column,
    require_column,
    texts_of,
)
from ..files import atomic_path, canonical_path

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".parquet": "parquet"}


@dataclass
class Chunk:
    """Consecutive data rows `first_row ...`: the captions of each row and the rows as the format holds them."""

    first_row: int
    texts: list[list[str]]
    records: Any


def _import_parquet() -> Any:
    try:
        import pyarrow.parquet as pq  # optional: only parquet manifests need pyarrow
    except ModuleNotFoundError:
        raise ValueError("reading parquet manifests needs pyarrow (pip install pyarrow)") from None
    return pq


class ManifestStream:
    """One CSV/TSV/JSONL/parquet manifest, read `chunk_size` rows at a time (any number of passes)."""

    def __init__(self, path: str | Path, caption_column: str | None = None, image_column: str | None = None) -> None:
        self.path = Path(path)
        if not is_manifest(self.path):
            raise ValueError(
                f"{str(path)!r} is not a manifest: curation reads a CSV, TSV, JSONL or parquet manifest "
                "with a caption column"
            )
        if not self.path.is_file():
            raise FileNotFoundError(f"manifest {str(path)!r} does not exist")
        self.format = FORMATS[self.path.suffix.lower()]
        self.columns = self._columns()
        self.caption_column = require_column(self.columns, caption_column, CAPTION_COLUMNS, self.path, "caption")
        self.image_column = pick_column(self.columns, image_column, IMAGE_COLUMNS, self.path, "image")

    # reading -----------------------------------------------------------------------------------------
    def _columns(self) -> list[str]:
        if self.format == "parquet":
            return list(_import_parquet().ParquetFile(self.path).schema_arrow.names)
        if self.format == "jsonl":  # the union of the keys, as `read_rows` sees them
            keys: dict[str, None] = {}
            for _, row in self._jsonl_rows():
                keys.update(dict.fromkeys(row))
            return list(keys)
        with self._open() as fh:
            header = next(csv.reader(fh, delimiter=self._delimiter), None)
        return list(header or [])

    @property
    def _delimiter(self) -> str:
        return "\t" if self.format == "tsv" else ","

    def _open(self) -> Any:
        return open(self.path, newline="", encoding="utf-8")

    def _jsonl_rows(self) -> Iterator[tuple[str, dict[str, Any]]]:
        try:
            yield from iter_jsonl(self.path)
        except UnicodeDecodeError as exc:
            raise ValueError(f"{self.path}: not UTF-8 text (byte {exc.start}); manifests must be UTF-8") from None

    def _csv_rows(self) -> Iterator[list[str]]:
        with self._open() as fh:
            reader = csv.reader(fh, delimiter=self._delimiter)
            try:
                next(reader, None)  # the header
                for row in reader:
                    if row:  # blank lines are no rows (as csv.DictReader reads them)
                        yield row
            except UnicodeDecodeError as exc:
                raise ValueError(f"{self.path}: not UTF-8 text (byte {exc.start}); manifests must be UTF-8") from None
            except csv.Error as exc:
                where = f"{self.path}:{reader.line_num}"
                raise ValueError(f"{where}: not a readable {self.format.upper()} row ({exc})") from None

    def chunks(self, chunk_size: int = 10000) -> Iterator[Chunk]:
        """The rows in order, `chunk_size` at a time."""
        if chunk_size < 1:
            raise ValueError(f"chunk size must be at least 1, got {chunk_size}")
        first = 0
        if self.format == "parquet":
            for batch in _import_parquet().ParquetFile(self.path).iter_batches(batch_size=chunk_size):
                texts = [texts_of(v) for v in batch.column(self.caption_column).to_pylist()]
                yield Chunk(first, texts, batch)
                first += len(texts)
            return
        rows: Iterator[Any]
        if self.format == "jsonl":
            rows = self._jsonl_rows()
            caption = self.caption_column

            def cell(record: Any) -> Any:
                return record[1].get(caption)
        else:
            rows = self._csv_rows()
            index = self.columns.index(self.caption_column)

            def cell(record: Any) -> Any:
                return record[index] if index < len(record) else None

        buffer: list[Any] = []
        for record in rows:
            buffer.append(record)
            if len(buffer) == chunk_size:
                yield Chunk(first, [texts_of(cell(r)) for r in buffer], buffer)
                first, buffer = first + len(buffer), []
        if buffer:
            yield Chunk(first, [texts_of(cell(r)) for r in buffer], buffer)


    def image_paths(self, chunk: Chunk) -> list[Path | None]:
        """Each row's image file (a relative path is relative to the manifest's folder); None for an empty cell."""
        column = self.image_column
        if column is None:
            raise ValueError(
                f"{self.path}: no image column (expected one of {', '.join(IMAGE_COLUMNS)}, or name it with "
                "--image-column)"
            )
        if self.format == "parquet":
            cells = chunk.records.column(column).to_pylist()
        elif self.format == "jsonl":
            cells = [row.get(column) for _, row in chunk.records]
        else:
            index = self.columns.index(column)
            cells = [record[index] if index < len(record) else None for record in chunk.records]
        base = self.path.parent
        return [base / str(c).strip() if isinstance(c, str) and c.strip() else None for c in cells]


class ManifestWriter:
    """Writes chosen rows of `stream`'s chunks to `path` in the same format (atomically: on `close`)."""

    def __init__(self, stream: ManifestStream, path: str | Path) -> None:
        self.stream, self.path = stream, Path(path)
        if canonical_path(self.path) == canonical_path(stream.path):
            raise ValueError(f"{self.path}: the curated manifest may not replace its input")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        source, target = canonical_path(stream.path).parent, canonical_path(self.path.parent)
        self._rebase = source != target and stream.image_column is not None
        self._source, self._target = source, target
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        self._fh: Any = None
        self._csv: Any = None
        self._parquet: Any = None
        if stream.format in ("csv", "tsv"):
            self._fh = open(self._tmp, "w", newline="", encoding="utf-8")
            self._csv = csv.writer(self._fh, delimiter=stream._delimiter)
            self._csv.writerow(stream.columns)
        elif stream.format == "jsonl":
            self._fh = open(self._tmp, "w", encoding="utf-8")

    def _moved(self, value: Any) -> Any:
        """A relative image path as seen from the output's folder (other values unchanged)."""
        if not isinstance(value, str) or not value.strip() or os.path.isabs(value.strip()):
            return value
        return os.path.relpath(self._source / value.strip(), self._target)

    def write(self, chunk: Chunk, keep: np.ndarray) -> None:
        """Write the rows of `chunk` where `keep` is True, in order."""
        chosen = np.flatnonzero(keep).tolist()
        stream = self.stream
        if stream.format == "parquet":
            import pyarrow as pa  # optional: only parquet manifests need pyarrow

            batch = chunk.records.filter(pa.array(np.asarray(keep, dtype=bool)))
            if self._rebase:
                i = batch.schema.get_field_index(stream.image_column)
                moved = pa.array([self._moved(v) for v in batch.column(i).to_pylist()], type=batch.schema.field(i).type)
                batch = batch.set_column(i, stream.image_column, moved)
            if self._parquet is None:
                self._parquet = _import_parquet().ParquetWriter(str(self._tmp), batch.schema)
            self._parquet.write_batch(batch)
        elif stream.format == "jsonl":
            for i in chosen:
                line, row = chunk.records[i]
                if self._rebase and stream.image_column in row:
                    row = {**row, stream.image_column: self._moved(row[stream.image_column])}
                    line = json.dumps(row, ensure_ascii=False)
                self._fh.write(line.rstrip("\r\n") + "\n")
        else:
            index = stream.columns.index(stream.image_column) if self._rebase and stream.image_column else -1
            for i in chosen:
                row = chunk.records[i]
                if 0 <= index < len(row):
                    row = [*row[:index], self._moved(row[index]), *row[index + 1 :]]
                self._csv.writerow(row)

    def close(self, ok: bool = True) -> None:
        """Finish the file (`ok`) or throw it away."""
        if self.stream.format == "parquet":
            if self._parquet is None and ok:  # no row kept: an empty file with the input's schema
                schema = _import_parquet().ParquetFile(self.stream.path).schema_arrow
                self._parquet = _import_parquet().ParquetWriter(str(self._tmp), schema)
            if self._parquet is not None:
                self._parquet.close()
        elif self._fh is not None:
            self._fh.close()
        if ok:
            self._atomic.__exit__(None, None, None)
        else:
            self._atomic.__exit__(ValueError, ValueError("aborted"), None)

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close(exc_type is None)
