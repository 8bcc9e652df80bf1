"""Image sources: random access to decoded images, whatever holds them.

`ImageSource` is what every consumer takes (the embedding pipeline, evaluation, adaptation):
`len(source)` and `source.load(i)` → an RGB PIL image, raising `ImageDecodeError` for unreadable
data. Images stay lazy, so a million-file source costs only its list until it is embedded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

from PIL import Image

from ..images import DEFAULT_MAX_PIXELS, load_image, open_regular, to_rgb
from .shards import read_range


@runtime_checkable
class ImageSource(Protocol):
    """Random access to decoded RGB images; `load` raises ImageDecodeError for unreadable ones."""

    def __len__(self) -> int: ...

    def load(self, index: int) -> Image.Image: ...


@dataclass(frozen=True)
class ImageRef:
    """Where one image's bytes are: a file, or a member of a tar shard at a byte offset."""

    path: str
    member: str | None = None
    offset: int = -1
    size: int = -1

    @property
    def in_tar(self) -> bool:
        return self.member is not None

    @property
    def name(self) -> str:
        """`path`, or `path:member` for a shard member (what skip logs and search hits show)."""
        return f"{self.path}:{self.member}" if self.member is not None else self.path

    def read_bytes(self) -> bytes:
        if self.member is None:
            with open_regular(self.path) as fh:
                return fh.read()
        return read_range(self.path, self.offset, self.size)

    def load(self, max_pixels: int | None = None) -> Image.Image:
        limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
        if self.member is None:
            return load_image(self.path, max_pixels=limit)
        return load_image(self.read_bytes(), max_pixels=limit)


@dataclass(frozen=True)
class FileImages:
    """Images stored as files."""

    paths: tuple[Path, ...]

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> Image.Image:
        return load_image(self.paths[index])


@dataclass(frozen=True)
class RefImages:
    """Images at `ImageRef`s (files and shard members mixed)."""

    refs: tuple[ImageRef, ...]

    def __len__(self) -> int:
        return len(self.refs)

    def load(self, index: int) -> Image.Image:
        return self.refs[index].load()

    def name(self, index: int) -> str:
        return self.refs[index].name


class ListImages:
    """Images already in memory (PIL images), e.g. a few-shot set built in Python."""

    def __init__(self, images: Sequence[Image.Image]) -> None:
        self.images = list(images)

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int) -> Image.Image:
        return to_rgb(self.images[index])


@dataclass(frozen=True)
class SubsetImages:
    """A selection (in the given order) of another source's images."""

    base: ImageSource
    indices: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.indices)

    def load(self, index: int) -> Image.Image:
        return self.base.load(self.indices[index])


def as_image_source(images: ImageSource | Sequence[Image.Image]) -> ImageSource:
    """An `ImageSource` as it is, or a sequence of PIL images wrapped as one."""
    return images if isinstance(images, ImageSource) else ListImages(images)
