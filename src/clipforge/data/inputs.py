"""Image inputs → a flat, ordered list of `Item`s (one image each, maybe with a caption).

What `embed`, `classify` and `index build|add` read (evaluation and training wrap the same sources
with labels or captions).

Inputs are data specs (`clipforge.data.spec`), several of which may be mixed, except a manifest,
which must come alone: image files, folders (walked recursively) and globs; one CSV/TSV/JSONL/
parquet manifest (column aliases: `clipforge.data.columns`; relative paths are relative to it);
webdataset shards (`clipforge.data.shards`: plain `.tar` files, globs or brace patterns), whose
first image member per key is indexed and whose `.txt`/`.caption`/`.json` member is the caption.
Tar members are located by byte offset, so one sample is read later with one seek.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..images import iter_image_files
from .columns import is_manifest, read_pairs
from .images import ImageRef, RefImages
from .shards import expand_shards, index_shard, is_shard_pattern
from .spec import parse_spec


@dataclass(frozen=True)
class Item:
    """One corpus image: a file, or a member of a tar shard (`member`, `offset`, `size`)."""

    path: str
    key: str
    caption: str | None = None
    member: str | None = None
    offset: int = -1
    size: int = -1

    @property
    def in_tar(self) -> bool:
        return self.member is not None

    @property
    def ref(self) -> ImageRef:
        return ImageRef(self.path, self.member, self.offset, self.size)


def tar_items(path: str | Path) -> list[Item]:
    """The samples of one uncompressed webdataset shard that hold an image, in member order."""
    items = []
    for sample in index_shard(path):
        image = sample.image
        if image is not None:
            items.append(Item(sample.shard, sample.key, sample.caption(), image.name, image.offset, image.size))
    return items


def manifest_items(path: str | Path, image_column: str | None, caption_column: str | None) -> list[Item]:
    """Items of a manifest (the caption column is optional unless named)."""
    paths, captions = read_pairs(path, image_column, caption_column, captions=caption_column is not None)
    return [Item(str(p.resolve()), str(p), c or None) for p, c in zip(paths, captions)]


def resolve_items(
    inputs: Sequence[str], image_column: str | None = None, caption_column: str | None = None
) -> list[Item]:
    """All items of `inputs`, in a deterministic order, duplicates (same file/member) removed."""
    if not inputs:
        raise ValueError("no inputs given")
    if len(inputs) == 1 and is_manifest(inputs[0]) and Path(inputs[0]).is_file():
        return manifest_items(inputs[0], image_column, caption_column)
    items: list[Item] = []
    for text in inputs:
        spec = parse_spec(text)
        for pattern in spec.paths:
            if is_shard_pattern(pattern):
                for tar in expand_shards(pattern):
                    items.extend(tar_items(tar))
            else:
                items.extend(Item(str(p.resolve()), str(p)) for p in iter_image_files([pattern]))
    seen: set[tuple[str, str | None]] = set()
    unique = []
    for item in items:
        if (item.path, item.member) not in seen:
            seen.add((item.path, item.member))
            unique.append(item)
    return unique


def item_images(items: Sequence[Item]) -> RefImages:
    """The images of `items`, as an `ImageSource` (with `name(i)` for skip logs)."""
    return RefImages(tuple(item.ref for item in items))
