"""Corpus inputs → a flat, ordered list of `Item`s (one image each, maybe with a caption).

Accepted inputs (several may be mixed, except a CSV manifest which must come alone):
- image files, folders (walked recursively) and glob patterns;
- one CSV/TSV manifest with an image-path column (filepath/path/image/file) and optionally a
  caption column (caption/text/title); relative paths are relative to the manifest;
- webdataset shards: plain `.tar` files, globs or brace patterns (`shards-{000000..000009}.tar`).
  Members are grouped by key (the name up to the first dot of the basename); the first image
  member of a key is indexed and a `.txt`/`.caption` member becomes the caption.

Tar members are located by byte offset, so one sample is read later with one seek.
"""

from __future__ import annotations

import glob
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..images import IMAGE_EXTENSIONS, load_image
from ..inference import read_manifest_column, resolve_image_inputs

TAR_SUFFIXES = (".tar",)
CAPTION_EXTENSIONS = (".txt", ".caption", ".text")
MAX_CAPTION_BYTES = 64 * 1024


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


def expand_braces(pattern: str) -> list[str]:
    """Shell-style brace expansion: `a{1..3}b` (zero padding kept), `x{a,b}y`, nested and repeated."""
    match = re.search(r"\{([^{}]*)\}", pattern)
    if match is None:
        return [pattern]
    head, body, tail = pattern[: match.start()], match.group(1), pattern[match.end() :]
    rng = re.fullmatch(r"(-?\d+)\.\.(-?\d+)", body)
    if rng:
        lo, hi = rng.group(1), rng.group(2)
        width = len(lo) if lo.startswith("0") or hi.startswith("0") else 0
        a, b = int(lo), int(hi)
        step = 1 if b >= a else -1
        options = [f"{v:0{width}d}" for v in range(a, b + step, step)]
    elif "," in body:
        options = body.split(",")
    else:  # not a brace expression: keep it literally
        return [head + "{" + body + "}" + t for t in expand_braces(tail)]
    return [e for opt in options for e in expand_braces(head + opt + tail)]


def _is_tar(name: str) -> bool:
    return name.lower().endswith(TAR_SUFFIXES)


def _tar_paths(pattern: str) -> list[Path]:
    paths: list[Path] = []
    for name in expand_braces(pattern):
        if glob.has_magic(name):
            matches = sorted(glob.glob(name))
            if not matches:
                raise FileNotFoundError(f"no files match pattern {name!r}")
            paths.extend(Path(m) for m in matches)
        elif Path(name).is_file():
            paths.append(Path(name))
        else:
            raise FileNotFoundError(f"no such webdataset shard: {name!r}")
    return paths


def _sample_key(member: str) -> tuple[str, str]:
    """(key, extension) of a webdataset member: 'dir/000012.jpg' → ('dir/000012', '.jpg')."""
    head, _, base = member.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{head}/{stem}" if head else stem), (dot + ext).lower()


def tar_items(path: str | Path) -> list[Item]:
    """The samples of one uncompressed webdataset shard, in member order."""
    path = Path(path).resolve()
    images: dict[str, tarfile.TarInfo] = {}
    captions: dict[str, str] = {}
    order: list[str] = []
    try:
        with tarfile.open(path, "r:") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                key, ext = _sample_key(info.name)
                last = "." + ext.rsplit(".", 1)[-1] if ext else ""
                if last in IMAGE_EXTENSIONS and key not in images:
                    images[key] = info
                    order.append(key)
                elif last in CAPTION_EXTENSIONS and info.size <= MAX_CAPTION_BYTES:
                    fh = tar.extractfile(info)
                    captions[key] = fh.read().decode("utf-8", errors="replace").strip() if fh else ""
    except tarfile.ReadError as exc:
        raise ValueError(f"{path}: not a readable uncompressed tar shard ({exc})") from exc
    return [
        Item(str(path), key, captions.get(key), images[key].name, images[key].offset_data, images[key].size)
        for key in order
    ]


def manifest_items(path: str | Path, image_column: str | None, caption_column: str | None) -> list[Item]:
    """Items of a CSV/TSV manifest (paths relative to the manifest's folder)."""
    manifest = Path(path)
    paths = resolve_image_inputs([str(manifest)], image_column)
    try:
        captions: list[str | None] = list(read_manifest_column(manifest, caption_column, ("caption", "text", "title")))
    except ValueError:
        if caption_column:  # asked for explicitly: a missing column is an error
            raise
        captions = [None] * len(paths)
    return [Item(str(p.resolve()), str(p), c or None) for p, c in zip(paths, captions)]


def resolve_items(
    inputs: Sequence[str], image_column: str | None = None, caption_column: str | None = None
) -> list[Item]:
    """All items of `inputs`, in a deterministic order, duplicates (same file/member) removed."""
    if not inputs:
        raise ValueError("no inputs given")
    if len(inputs) == 1 and Path(inputs[0]).suffix.lower() in (".csv", ".tsv") and Path(inputs[0]).is_file():
        return manifest_items(inputs[0], image_column, caption_column)
    items: list[Item] = []
    for spec in inputs:
        if _is_tar(spec) or any(_is_tar(x) for x in expand_braces(spec)):
            for tar in _tar_paths(spec):
                items.extend(tar_items(tar))
        else:
            items.extend(Item(str(p.resolve()), str(p)) for p in resolve_image_inputs([spec]))
    seen: set[tuple[str, str | None]] = set()
    unique = []
    for item in items:
        if (item.path, item.member) not in seen:
            seen.add((item.path, item.member))
            unique.append(item)
    return unique


def read_item_bytes(path: str, member: str | None, offset: int, size: int) -> bytes:
    """The raw bytes of an indexed image (a file, or a tar member read by offset)."""
    with open(path, "rb") as fh:
        if member is None:
            return fh.read()
        fh.seek(offset)
        data = fh.read(size)
    if len(data) != size:
        raise ValueError(f"{path}: member {member} is truncated")
    return data


def load_item(item: Item, max_pixels: int | None = None):
    """Decode an item's image (raises `ImageDecodeError` for unreadable data)."""
    kwargs = {} if max_pixels is None else {"max_pixels": max_pixels}
    if not item.in_tar:
        return load_image(item.path, **kwargs)
    return load_image(read_item_bytes(item.path, item.member, item.offset, item.size), **kwargs)
