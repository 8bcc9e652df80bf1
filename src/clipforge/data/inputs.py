"""Image inputs → a flat, ordered list of `Item`s (one image each, maybe with a caption).

What `embed`, `classify` and `index build|add` read (evaluation and training wrap the same sources
with labels or captions).

Inputs are data specs (`clipforge.data.spec`), several of which may be mixed, except a manifest,
which must come alone: image files, folders (walked recursively) and globs; one CSV/TSV/JSONL/
parquet manifest (column aliases: `clipforge.data.columns`; relative paths are relative to it);
webdataset shards (`clipforge.data.shards`: plain `.tar` files, globs or brace patterns), whose
first image member per key is indexed and whose `.txt`/`.caption`/`.json` member is the caption.
Tar members are located by byte offset, so one sample is read later with one seek.

Odd entries never become items: FIFOs, devices, broken or looping links and unlistable folders
met while walking (`clipforge.images.iter_image_files`), manifest rows naming no regular file
(missing files included), unreadable shards, and names that are not
valid UTF-8 (no table, CSV or JSON output could record them faithfully). They are recorded in the
`skipped` log the caller passes, by name and reason, so a command counts them with the images it
could not decode.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..files import canonical_path
from ..images import SkipLog, entry_problem, iter_image_files
from .columns import is_manifest, read_pairs
from .images import ImageRef, RefImages
from .shards import expand_shards, index_shard, is_shard_pattern
from .spec import parse_spec


@dataclass(frozen=True)
class Item(ImageRef):
    """One corpus image (a file or a tar shard member, as any `ImageRef`) with its corpus key and caption."""

    key: str = ""
    caption: str | None = None


def _unwritable_name(item: Item) -> bool:
    """True if a name of `item` holds undecodable bytes (surrogates), which no UTF-8 output can store."""
    for text in (item.path, item.key, item.member):
        if text is not None and not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


def tar_items(path: str | Path) -> list[Item]:
    """The samples of one uncompressed webdataset shard that hold an image, in member order."""
    items = []
    for sample in index_shard(path):
        image = sample.image
        if image is not None:
            caption = sample.caption()
            items.append(Item(str(sample.shard), image.name, image.offset, image.size, key=sample.key, caption=caption))
    return items


def manifest_items(
    path: str | Path, image_column: str | None, caption_column: str | None, skipped: SkipLog | None = None
) -> list[Item]:
    """Items of a manifest (the caption column is optional unless named); rows naming no regular file
    (missing, a folder, a FIFO, a device, a broken or looping link) are recorded in `skipped` instead."""
    paths, captions = read_pairs(path, image_column, caption_column, captions=caption_column is not None)
    items = []
    for p, c in zip(paths, captions):
        problem = entry_problem(p)
        if problem is not None:
            if skipped is not None:
                skipped.add(os.path.abspath(p), problem)
            continue
        items.append(Item(str(canonical_path(p)), key=str(p), caption=c or None))
    return items


def resolve_items(
    inputs: Sequence[str],
    image_column: str | None = None,
    caption_column: str | None = None,
    skipped: SkipLog | None = None,
) -> list[Item]:
    """All items of `inputs`, in a deterministic order, duplicates (same file/member) removed.

    Odd entries (see the module docstring) are left out and recorded in `skipped` when given.
    """
    if not inputs:
        raise ValueError("no inputs given")
    log = skipped if skipped is not None else SkipLog()
    if len(inputs) == 1 and is_manifest(inputs[0]) and Path(inputs[0]).is_file():
        items = manifest_items(inputs[0], image_column, caption_column, log)
    else:
        items = []
        for text in inputs:
            spec = parse_spec(text)
            for pattern in spec.paths:
                if is_shard_pattern(pattern):
                    for tar in expand_shards(pattern):
                        try:
                            items.extend(tar_items(tar))
                        except ValueError as exc:  # one unreadable shard among many: skip it, count it
                            log.add(tar, f"unreadable shard ({exc})")
                else:
                    files = iter_image_files([pattern], skipped=log)
                    items.extend(Item(str(canonical_path(p)), key=str(p)) for p in files)
    seen: set[tuple[str, str | None]] = set()
    unique = []
    for item in items:
        if (item.path, item.member) in seen:
            continue
        seen.add((item.path, item.member))
        if _unwritable_name(item):
            log.add(item.name, "file name is not valid UTF-8 (no output could record it; rename the file)")
            continue
        unique.append(item)
    return unique


def item_images(items: Sequence[Item]) -> RefImages:
    """The images of `items`, as an `ImageSource` (with `name(i)` for skip logs)."""
    return RefImages(tuple(items))
