"""Training data: image–caption sources behind one map-style interface, mixed with sampling weights.

Every source is indexable (`__len__`, `item(i) -> (image bytes/PIL, caption)`), including
webdataset tar shards, which are indexed once by member offset. Indexable sources make the epoch
order a pure function of (seed, epoch), so a run can resume mid-epoch at exactly the next sample.
Corrupt images and empty captions are skipped and counted, never fatal.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..data.columns import is_manifest, read_pairs
from ..data.shapes import SPLITS, TASKS, ShapesWorld
from ..data.shards import expand_shards, index_shard, is_shard_pattern, read_range
from ..data.spec import Spec, parse_named, parse_spec, source_name
from ..images import ImageDecodeError, iter_image_files, load_image


class PairSource:
    """An indexable collection of (image, caption) items; images may be paths, bytes or PIL images."""

    name: str = "source"

    def __len__(self) -> int:
        raise NotImplementedError

    def item(self, i: int) -> tuple[Any, str]:
        raise NotImplementedError


class ManifestSource(PairSource):
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


class FolderSource(PairSource):
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


class TarShardSource(PairSource):
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
        image = b"" if member is None else read_range(sample.shard, member.offset, member.size)
        return image, sample.caption() or ""


class ShapesSource(PairSource):
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


def open_source(spec: str | dict[str, Any]) -> PairSource:
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
        return TarShardSource(parsed.paths)
    path = Path(parsed.source)
    if is_manifest(path):
        options = parsed.options
        source = ManifestSource(path, options.pop("image_column", None), options.pop("caption_column", None))
        parsed.no_more_options("image_column, caption_column, weight")
        return source
    if path.is_dir():
        parsed.no_more_options("weight")
        return FolderSource(path)
    raise FileNotFoundError(f"training data {parsed.text!r}: not a shapes spec, manifest, folder or tar shard pattern")


def _shapes(spec: Spec) -> ShapesSource:
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
    source = ShapesSource(
        size=size or 100_000,
        seed=spec.pop_int("seed", 0) or 0,
        image_size=spec.pop_int("image_size", 64) or 64,
        split=split,
        variety=spec.options.pop("variety", "classic"),
    )
    spec.no_more_options("n (or size), seed, image_size, variety")
    return source


@dataclass
class EpochPlan:
    """Which (source, index) is sample k of an epoch: a pure function of (seed, epoch).

    Sources are drawn with probability proportional to their weights; each source is walked in
    its own per-epoch permutation (wrapping around if drawn more often than it has items).
    """

    sizes: Sequence[int]
    weights: Sequence[float]
    samples_per_epoch: int
    seed: int

    def order(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch])
        w = np.asarray(self.weights, dtype=np.float64)
        choice = rng.choice(len(self.sizes), size=self.samples_per_epoch, p=w / w.sum())
        index = np.empty(self.samples_per_epoch, dtype=np.int64)
        for s, n in enumerate(self.sizes):
            pos = np.flatnonzero(choice == s)
            perm = np.random.default_rng([self.seed, epoch, s]).permutation(n)
            index[pos] = perm[np.arange(len(pos)) % n]
        return choice, index


class PairDataset(Dataset):
    """Item k of an epoch → (pixels, tokens) or None when the image or caption is unusable."""

    def __init__(
        self, sources: Sequence[PairSource], plan: EpochPlan, transform: Callable, tokenizer: Callable
    ) -> None:
        self.sources, self.plan, self.transform, self.tokenizer = list(sources), plan, transform, tokenizer
        self.epoch = 0
        self._order = plan.order(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._order = self.plan.order(epoch)

    def __len__(self) -> int:
        return self.plan.samples_per_epoch

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor] | tuple[None, str]:
        s, i = int(self._order[0][k]), int(self._order[1][k])
        source = self.sources[s]
        try:
            image, caption = source.item(i)
        except (OSError, ValueError, KeyError) as exc:
            return None, f"{source.name}[{i}]: unreadable item ({exc})"
        if not caption or not caption.strip():
            return None, f"{source.name}[{i}]: empty caption"
        try:
            if not isinstance(image, Image.Image):
                image = load_image(image)
        except ImageDecodeError as exc:
            return None, f"{exc.source if exc.source != '<stream>' else f'{source.name}[{i}]'}: {exc.reason}"
        generator = torch.Generator().manual_seed(sample_seed(self.plan.seed, self.epoch, k))
        return self.transform(image, generator=generator), self.tokenizer(caption)[0]


def sample_seed(seed: int, epoch: int, k: int) -> int:
    """Augmentation seed of sample k in an epoch: resuming mid-epoch replays identical crops."""
    return int(np.random.SeedSequence([seed, epoch, k]).generate_state(1, np.uint64)[0] >> 1)


def collate_pairs(items: list) -> tuple[torch.Tensor | None, torch.Tensor | None, list[str]]:
    """Stack the usable pairs; return the reasons for the rest so the trainer can count them."""
    good = [(p, t) for p, t in items if p is not None]
    bad = [reason for p, reason in items if p is None]
    if not good:
        return None, None, bad
    return torch.stack([p for p, _ in good]), torch.stack([t for _, t in good]), bad
