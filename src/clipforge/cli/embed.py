"""`clipforge embed INPUT --out DIR`: embeddings of images and/or texts as .npy plus an index table.

Everything is computed and checked before anything is written, and `summary.json` is written last
(and removed first): where it exists, the files beside it are complete and agree with it
(`images.csv` has one row per row of `image_embeddings.npy`).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any, Sequence

from ..data.columns import CAPTION_COLUMNS, is_manifest, read_rows, require_column
from ..data.embedding import embed_images, embed_texts
from ..data.inputs import item_images, resolve_items
from ..files import atomic_path, save_npy_atomic, write_json_atomic
from ..images import SkipLog
from .common import add_model_arguments, load_from_args

HELP = "embed a folder, glob or CSV of images (and/or texts) to .npy"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="*", help="image files, folders, glob patterns, or one CSV/TSV manifest")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--texts", default=None, help="texts to embed: a .txt (one per line) or a CSV/TSV file")
    parser.add_argument(
        "--image-column",
        default=None,
        help="manifest column with image paths (default: the image aliases, see docs/data.md)",
    )
    parser.add_argument(
        "--text-column",
        default=None,
        help="manifest column with texts (default: the caption aliases, see docs/data.md)",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="images per model call (default 64)")
    parser.add_argument("--workers", type=int, default=None, help="image decoding processes (default: automatic)")
    parser.add_argument("--no-normalize", action="store_true", help="store raw rather than L2-normalised features")
    add_model_arguments(parser, engine=True)


def run(args: argparse.Namespace) -> int:

    if not args.inputs and not args.texts:
        raise ValueError("nothing to embed: give image inputs and/or --texts FILE")
    texts = _read_texts(Path(args.texts), args.text_column) if args.texts else None  # fail before any work
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").unlink(missing_ok=True)  # written last: its presence means the outputs agree
    model, preprocess, tokenizer = load_from_args(args)
    summary: dict = {"model": str(args.model or "default"), "runtime": model.runtime}
    summary["normalized"] = not args.no_normalize

    if args.inputs:
        skipped = SkipLog()
        images = item_images(resolve_items(args.inputs, args.image_column, skipped=skipped))
        res = embed_images(
            model,
            preprocess,
            images,
            batch_size=args.batch_size,
            num_workers=args.workers,
            normalize=not args.no_normalize,
            name=images.name,
        )
        skipped.merge(res.skipped)
        paths = [images.name(int(i)) for i in res.kept]
        _write_table(out / "images", ["id", "path"], list(enumerate(paths)))
        _write_table(out / "skipped", ["path", "reason"], skipped.items)
        save_npy_atomic(out / "image_embeddings.npy", res.features)
        summary.update(images=len(paths), skipped=skipped.count, image_dim=int(res.features.shape[1]))
        summary["skipped_reasons"] = dict(skipped.by_reason)
        print(f"embedded {len(paths)} images -> {out / 'image_embeddings.npy'}")
        if skipped.count:
            print(skipped.summary())

    if texts is not None:
        feats = embed_texts(model, tokenizer, texts, normalize=not args.no_normalize)
        _write_table(out / "texts", ["id", "text"], list(enumerate(texts)))
        save_npy_atomic(out / "text_embeddings.npy", feats)
        summary.update(texts=len(texts))
        print(f"embedded {len(texts)} texts -> {out / 'text_embeddings.npy'}")

    write_json_atomic(out / "summary.json", summary)
    return 1 if args.inputs and not summary["images"] else 0  # as classify: 1 when every image failed


def _read_texts(path: Path, column: str | None) -> list[str]:
    if is_manifest(path):
        rows, columns = read_rows(path)
        name = require_column(columns, column, CAPTION_COLUMNS, path, "text")
        texts = [str(row.get(name) or "") for row in rows]
    else:
        texts = [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines()]
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        raise ValueError(
            f"{path}: {len(empty)} empty text(s), first at row {empty[0] + 1}; remove them or fill them in"
        )
    return texts


def _write_table(stem: Path, header: list[str], rows: list) -> None:
    """CSV always; Parquet as well when pyarrow is installed (each written atomically)."""
    with atomic_path(stem.with_suffix(".csv")) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    try:
        import pyarrow as pa  # optional (`table` extra): the parquet copy is written only when it is installed
        import pyarrow.parquet as pq
    except ImportError:
        return
    columns: list[Sequence[Any]] = list(zip(*rows)) if rows else [[] for _ in header]
    with atomic_path(stem.with_suffix(".parquet")) as tmp:
        pq.write_table(pa.table({h: list(c) for h, c in zip(header, columns)}), str(tmp))
