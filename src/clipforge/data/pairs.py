"""Image–caption pair sources: what `train --data` reads, one class per kind of storage.

Every source is indexable (`__len__`, `item(i) -> (image bytes/path/PIL, caption)`), including
webdataset tar shards, which are indexed once by member offset, so a trainer's epoch order can be a
pure function of (seed, epoch) and a run can resume mid-epoch at exactly the next sample. Reading an
item never decodes it; the consumer decodes, skipping and counting what is unreadable.
Specs are the one syntax of `clipforge.data.spec`; manifests take the column aliases of
`clipforge.data.columns`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..images import iter_image_files
from .columns import is_manifest, read_pairs
from .images import ImageRef
from .shapes import SPLITS, TASKS, ShapesWorld
from .shards import expand_shards, index_shard, is_shard_pattern
from .spec import Spec, parse_named, parse_spec, source_name


class PairSource:
    """An indexable collection of (image, caption) items; images may be paths, bytes or PIL images."""

    name: str = "source"

    def __len__(self) -> int:
        raise NotImplementedError

    def item(self, i: int) -> tuple[Any, str]:
        raise NotImplementedError


class ManifestPairs(PairSource):
    """A CSV/TSV/JSONL/parquet manifest of (image, caption) rows (column aliases: `clipforge.data.columns`)."""

    def __init__(self, path: str | Path, image_column: str | None = None, caption_column: str | None = None) -> None:
        self.path = Path(path)
        self.name = str(path)
        images, captions = read_pairs(self.path, image_column, caption_column)
        self.images = [str(p) for p in images]
        self.captions = [c or "" for c in captions]

    def __len__(self) -> int:
        return len(self.images)

    def item(self, i: int) -> tuple[Any, str]:
        return self.images[i], self.captions[i]


class FolderPairs(PairSource):
    """A folder of images, each with a sidecar caption file of the same stem (`cat.jpg` + `cat.txt`)."""

    def __init__(self, path: str | Path) -> None:
        root = Path(path)
        self.name = str(path)
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {root} does not exist")
        self.images = iter_image_files(root)
        if not self.images:
            raise ValueError(f"{root}: no images found")

    def __len__(self) -> int:
        return len(self.images)

    def item(self, i: int) -> tuple[Any, str]:
        path = self.images[i]
        sidecar = path.with_suffix(".txt")
        caption = sidecar.read_text(encoding="utf-8").strip() if sidecar.is_file() else ""
        return path, caption


class ShardPairs(PairSource):
    """Webdataset tar shards read by random access (`clipforge.data.shards` indexes members by offset)."""

    def __init__(self, patterns: str | Sequence[str]) -> None:
        patterns = [patterns] if isinstance(patterns, str) else list(patterns)
        self.name = "::".join(patterns)
        self.samples = [s for pattern in patterns for shard in expand_shards(pattern) for s in index_shard(shard)]

    def __len__(self) -> int:
        return len(self.samples)

    def item(self, i: int) -> tuple[Any, str]:
        sample = self.samples[i]
        member = sample.image
        if member is None:  # a sample with no image member: empty bytes, which the reader skips and counts
            return b"", sample.caption() or ""
        return ImageRef(str(sample.shard), member.name, member.offset, member.size).read_bytes(), sample.caption() or ""


class ShapesPairs(PairSource):
    """The synthetic shapes world, generated on the fly."""

    def __init__(
        self, size: int, seed: int = 0, image_size: int = 64, split: str = "train", variety: str = "classic"
    ) -> None:
        self.world = ShapesWorld(seed=seed, image_size=image_size, split=split, size=size, variety=variety)
        self.name = f"shapes:{split}" if variety == "classic" else f"shapes:{split}?variety={variety}"

    def __len__(self) -> int:
        return len(self.world)

    def item(self, i: int) -> tuple[Any, str]:
        sample = self.world.sample(i)
        return sample.image, sample.caption


def open_pairs(spec: str | dict[str, Any]) -> PairSource:
    """A source from a data spec (`clipforge.data.spec`): `shapes[:SPLIT][:N]`, a manifest, a folder or shards.

    A dict spec carries options as keys: {"path": ..., "image_column": ..., "caption_column": ...,
    "size": N, "seed": S, "image_size": px, "variety": "rich", "weight": w}.
    """
    opts = dict(spec) if isinstance(spec, dict) else {}
    parsed = parse_spec(str(opts.pop("path")) if isinstance(spec, dict) else spec)
    for key, value in opts.items():
        if key != "weight" and value is not None:
            parsed.options.setdefault(key, str(value))
    parsed.options.pop("weight", None)
    if source_name(parsed.source) == "shapes" and not Path(parsed.source).exists():
        return _shapes(parsed)
    if any(is_shard_pattern(p) for p in parsed.paths):
        parsed.no_more_options("weight")
        return ShardPairs(parsed.paths)
    path = Path(parsed.source)
    if is_manifest(path):
        options = parsed.options
        source = ManifestPairs(path, options.pop("image_column", None), options.pop("caption_column", None))
        parsed.no_more_options("image_column, caption_column, weight")
        return source
    if path.is_dir():
        parsed.no_more_options("weight")
        return FolderPairs(path)
    raise FileNotFoundError(f"training data {parsed.text!r}: not a shapes spec, manifest, folder or tar shard pattern")


def _shapes(spec: Spec) -> ShapesPairs:
    """`shapes[:SPLIT][:N][::variety=rich]` (a task field, as in eval specs, is accepted and ignored:
    training uses captions). Options: n (or size), seed, image_size, variety (classic, rich, clean)."""
    named = parse_named(spec)
    split, size = "train", None
    for part in named.fields:
        if part.isdigit():
            size = int(part)
        elif part in SPLITS:
            split = part
        elif part not in TASKS:
            raise ValueError(
                f"training data (--data) {spec.text!r}: {part!r} is not a sample count (shapes:N), "
                f"a split ({', '.join(SPLITS)}) or a task ({', '.join(TASKS)})"
            )
    spec.options = named.options
    size = spec.pop_int("n", spec.pop_int("size", size))
    source = ShapesPairs(
        size=size or 100_000,
        seed=spec.pop_int("seed", 0) or 0,
        image_size=spec.pop_int("image_size", 64) or 64,
        split=split,
        variety=spec.options.pop("variety", "classic"),
    )
    spec.no_more_options("n (or size), seed, image_size, variety")
    return source
