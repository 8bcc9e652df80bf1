"""Caption pools: texts without images (prompt banks, metadata entries, synthetic or long captions).

`read_captions(path)` reads a `.txt` file (one caption per line) or a CSV/TSV/JSONL/parquet
manifest's caption column (the aliases of `clipforge.data.columns`; a JSONL/parquet cell may hold a
list). Blank entries are skipped and counted; `unique=True` drops repeats, keeping first
occurrences, so the order is the file's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .columns import CAPTION_COLUMNS, is_manifest, read_rows, require_column, texts_of


@dataclass(frozen=True)
class CaptionPool:
    """Captions in file order, with what was left out."""

    captions: tuple[str, ...]
    blank: int = 0
    repeated: int = 0

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, index: int) -> str:
        return self.captions[index]


def read_captions(path: str | Path, column: str | None = None, unique: bool = False) -> CaptionPool:
    """The captions of a text file or a manifest (`column`: the caption column, else the first alias)."""
    path = Path(path)
    if is_manifest(path):
        rows, columns = read_rows(path)
        name = require_column(columns, column, CAPTION_COLUMNS, path, "caption")
        cells = [row.get(name) for row in rows]
        texts = [t.strip() for cell in cells for t in texts_of(cell)]
        blank = sum(1 for cell in cells if not texts_of(cell))
    elif path.suffix.lower() in (".txt", ""):
        if column is not None:
            raise ValueError(f"{path}: a text file has no columns (one caption per line); drop the column")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: not UTF-8 text ({e})") from e
        texts = [line.strip() for line in lines if line.strip()]
        blank = len(lines) - len(texts)
    else:
        raise ValueError(f"{path}: a caption pool is a .txt file or a .csv/.tsv/.jsonl/.parquet manifest")
    repeated = 0
    if unique:
        kept = list(dict.fromkeys(texts))
        repeated, texts = len(texts) - len(kept), kept
    return CaptionPool(tuple(texts), blank, repeated)
