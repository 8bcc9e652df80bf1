"""Webdataset tar shards: expand shard patterns and index samples by byte offset.

A shard pattern may use braces (`shards-{000000..000099}.tar`, via `braceexpand`) and globs. A
sample is the group of members sharing a key (the member name up to the first dot of its
basename: `dir/000012.jpg` + `dir/000012.txt`). Indexing records each member's offset and size,
so reading a sample later is one seek: training can shuffle shards by random access and resume
mid-epoch, and an index can fetch a thumbnail by id.
"""

from __future__ import annotations

import glob
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import braceexpand

from ..files import canonical_path
from ..images import IMAGE_EXTENSIONS, open_regular

TAR_SUFFIXES = (".tar",)
CAPTION_KEYS = ("txt", "text", "caption")
#: image members in order of preference when a sample holds several
IMAGE_KEYS = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff")
MAX_CAPTION_BYTES = 64 * 1024


def expand_braces(pattern: str) -> list[str]:
    """Shell-style brace expansion (`a{1..3}b` keeps zero padding, `x{a,b}y`, nested)."""
    return list(braceexpand.braceexpand(pattern))


def is_shard_pattern(spec: str) -> bool:
    return any(name.lower().endswith(TAR_SUFFIXES) for name in expand_braces(spec))


def expand_shards(pattern: str) -> list[Path]:
    """The shard files a pattern names; a pattern that matches nothing is an error naming it."""
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


def read_range(path: str | Path, offset: int, size: int) -> bytes:
    """`size` bytes at `offset` of a file (a tar member's data); a short read is an error."""
    with open_regular(path) as fh:
        fh.seek(offset)
        data = fh.read(size)
    if len(data) != size:
        raise ValueError(f"{path}: member at byte {offset} is truncated")
    return data


@dataclass(frozen=True)
class Member:
    name: str
    offset: int
    size: int


@dataclass
class ShardSample:
    """One sample of a shard: its key and its members by extension (`jpg`, `txt`, `json`, ...)."""

    shard: str
    key: str
    members: dict[str, Member] = field(default_factory=dict)

    @property
    def image(self) -> Member | None:
        """The preferred image member (by `IMAGE_KEYS`, then any image extension)."""
        for ext in IMAGE_KEYS:
            if ext in self.members:
                return self.members[ext]
        return next((m for e, m in self.members.items() if "." + e.rsplit(".", 1)[-1] in IMAGE_EXTENSIONS), None)

    def caption(self) -> str | None:
        """The `.txt`/`.text`/`.caption` member, else a `.json` member's "caption" field, else None."""
        for ext in CAPTION_KEYS:
            m = self.members.get(ext)
            if m is not None and m.size <= MAX_CAPTION_BYTES:
                return read_range(self.shard, m.offset, m.size).decode("utf-8", errors="replace").strip()
        m = self.members.get("json")
        if m is not None and m.size <= MAX_CAPTION_BYTES:
            try:
                meta = json.loads(read_range(self.shard, m.offset, m.size))
            except ValueError:
                return None
            value = meta.get("caption") if isinstance(meta, dict) else None
            return None if value is None else str(value)
        return None


def sample_key(member: str) -> tuple[str, str]:
    """(key, extension) of a member: 'dir/000012.seg.png' → ('dir/000012', 'seg.png')."""
    head, _, base = member.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{head}/{stem}" if head else stem), ext.lower()


def index_shard(path: str | Path) -> list[ShardSample]:
    """The samples of one uncompressed shard, in member order (first occurrence of each key)."""
    path = canonical_path(path)
    samples: dict[str, ShardSample] = {}
    try:
        with open_regular(path) as fh, tarfile.open(fileobj=fh, mode="r:") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                key, ext = sample_key(info.name)
                sample = samples.setdefault(key, ShardSample(str(path), key))
                sample.members.setdefault(ext, Member(info.name, info.offset_data, info.size))
    except (tarfile.TarError, OSError) as exc:
        raise ValueError(f"{path}: not a readable uncompressed tar shard ({exc})") from None
    return list(samples.values())
