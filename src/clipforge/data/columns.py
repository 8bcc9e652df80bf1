"""Manifests: CSV/TSV/JSONL/parquet rows, and the one list of column names clipforge accepts.

Every command that reads a manifest (train, eval, index, classify, embed, adapt) picks its columns
here, so a manifest that works in one works in all. A column named explicitly must exist; otherwise
the first alias present is used.

| role    | aliases, in order of preference                              |
| ------- | ------------------------------------------------------------ |
| image   | filepath, image, image_path, path, file, filename            |
| caption | caption, captions, text, title, sentence                     |
| label   | label, class, classname, target, category                    |
| split   | split                                                        |
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterator, Sequence

IMAGE_COLUMNS = ("filepath", "image", "image_path", "path", "file", "filename")
CAPTION_COLUMNS = ("caption", "captions", "text", "title", "sentence")
LABEL_COLUMNS = ("label", "class", "classname", "target", "category")
SPLIT_COLUMN = "split"
MANIFEST_SUFFIXES = (".csv", ".tsv", ".jsonl", ".parquet")


def is_manifest(path: str | Path) -> bool:
    return Path(path).suffix.lower() in MANIFEST_SUFFIXES


def read_rows(path: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows and column names of a manifest; a bad line is named by its number."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            return _read_jsonl(path)
        if suffix == ".parquet":
            return _read_parquet(path)
        delimiter = "\t" if suffix == ".tsv" else ","
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh, delimiter=delimiter)
            return list(reader), list(reader.fieldnames or [])
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte {exc.start}); manifests must be UTF-8") from None


def iter_jsonl(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(line, object) of each non-blank line of a JSONL manifest, streamed; a bad line is named by its number."""
    with open(path, newline="", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object per line")
            yield line, row


def _read_jsonl(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    rows = [row for _, row in iter_jsonl(path)]
    return rows, list(dict.fromkeys(k for r in rows for k in r))


def _read_parquet(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    try:
        import pyarrow.parquet as pq  # optional: only parquet manifests need pyarrow
    except ModuleNotFoundError:
        raise ValueError(f"{path}: reading parquet manifests needs pyarrow (pip install pyarrow)") from None
    table = pq.read_table(path)
    return table.to_pylist(), list(table.column_names)


def pick_column(
    columns: Sequence[str], wanted: str | None, aliases: Sequence[str], path: str | Path, role: str
) -> str | None:
    """The column for `role`: `wanted` (which must exist) or the first alias present (None if none is)."""
    if wanted is not None:
        if wanted not in columns:
            raise ValueError(f"{path}: no {role} column {wanted!r}; the columns are {list(columns)}")
        return wanted
    return next((c for c in aliases if c in columns), None)


def require_column(
    columns: Sequence[str], wanted: str | None, aliases: Sequence[str], path: str | Path, role: str
) -> str:
    """`pick_column`, but a missing column is an error listing the aliases tried."""
    name = pick_column(columns, wanted, aliases, path, role)
    if name is None:
        raise ValueError(f"{path}: no {role} column (tried {', '.join(aliases)}); the columns are {list(columns)}")
    return name


def resolve_path(value: Any, manifest: Path) -> Path:
    """An image path from a manifest cell; relative paths are relative to the manifest's folder."""
    p = Path(str(value).strip())
    return p if p.is_absolute() else manifest.parent / p


def texts_of(value: Any) -> list[str]:
    """The non-empty captions of a cell (a JSONL/parquet cell may hold a list)."""
    values = value if isinstance(value, (list, tuple)) else [value]
    return [str(t) for t in values if t is not None and str(t).strip()]


def read_pairs(
    path: str | Path, image_column: str | None = None, caption_column: str | None = None, captions: bool = True
) -> tuple[list[Path], list[str | None]]:
    """(image paths, first caption or None) of each row; `captions=True` requires a caption column."""
    path = Path(path)
    rows, columns = read_rows(path)
    image_col = require_column(columns, image_column, IMAGE_COLUMNS, path, "image")
    finder = require_column if captions else pick_column
    caption_col = finder(columns, caption_column, CAPTION_COLUMNS, path, "caption")
    images: list[Path] = []
    texts: list[str | None] = []
    for rowno, row in enumerate(rows, 2 if path.suffix.lower() in (".csv", ".tsv") else 1):
        raw = row.get(image_col)
        if raw is None or str(raw).strip() == "":
            raise ValueError(f"{path}: row {rowno}: empty {image_col!r}")
        images.append(resolve_path(raw, path))
        found = texts_of(row.get(caption_col)) if caption_col else []
        texts.append(found[0] if found else None)
    return images, texts
