"""Training data: image–caption sources behind one map-style interface, mixed with sampling weights.

Every source is indexable (`__len__`, `item(i) -> (image bytes/PIL, caption)`), including
webdataset tar shards, which are indexed once by member offset. Indexable sources make the epoch
order a pure function of (seed, epoch), so a run can resume mid-epoch at exactly the next sample.
Corrupt images and empty captions are skipped and counted, never fatal.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import braceexpand
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..images import IMAGE_EXTENSIONS, ImageDecodeError, load_image
from ..inference import read_manifest_column

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp", "bmp")
TEXT_KEYS = ("txt", "text", "caption")


class PairSource:
    """An indexable collection of (image, caption) items; images may be paths, bytes or PIL images."""

    name: str = "source"

    def __len__(self) -> int:
        raise NotImplementedError

    def item(self, i: int) -> tuple[Any, str]:
        raise NotImplementedError


class ManifestSource(PairSource):
    """CSV/TSV (`filepath`, `caption` columns by default) or JSONL manifests; relative paths are
    taken from the manifest's folder."""

    def __init__(self, path: str | Path, image_column: str | None = None, caption_column: str | None = None) -> None:
        self.path = Path(path)
        self.name = str(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"manifest {self.path} does not exist")
        img_candidates, cap_candidates = ("filepath", "path", "image", "file"), ("caption", "text", "title")
        if self.path.suffix.lower() == ".jsonl":
            images, captions = [], []
            for lineno, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{self.path}:{lineno}: not valid JSON ({exc.msg})") from exc
                ik = image_column or next((c for c in img_candidates if c in row), None)
                ck = caption_column or next((c for c in cap_candidates if c in row), None)
                if ik is None or ck is None or ik not in row or ck not in row:
                    raise ValueError(f"{self.path}:{lineno}: expected image and caption fields, got {sorted(row)}")
                images.append(str(row[ik]))
                captions.append(str(row[ck] or ""))
        else:
            images = read_manifest_column(self.path, image_column, img_candidates)
            captions = read_manifest_column(self.path, caption_column, cap_candidates)
        base = self.path.parent
        self.images = [str(p if Path(p).is_absolute() else base / p) for p in images]
        self.captions = captions

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
        self.images = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
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
    """Webdataset tar shards read by random access: each sample's members are indexed by offset."""

    def __init__(self, pattern: str) -> None:
        self.name = pattern
        self.shards = [Path(p) for spec in pattern.split("::") for p in braceexpand.braceexpand(spec)]
        missing = [str(s) for s in self.shards if not s.is_file()]
        if missing:
            raise FileNotFoundError(f"webdataset shards not found: {missing[:5]}")
        self.index: list[tuple[int, dict[str, tuple[int, int]]]] = []  # (shard id, {ext: (offset, size)})
        for sid, shard in enumerate(self.shards):
            self.index.extend((sid, members) for members in _index_tar(shard).values())

    def __len__(self) -> int:
        return len(self.index)

    def item(self, i: int) -> tuple[Any, str]:
        sid, members = self.index[i]
        with open(self.shards[sid], "rb") as fh:

            def read(ext: str) -> bytes:
                off, size = members[ext]
                fh.seek(off)
                return fh.read(size)

            img_ext = next((e for e in IMAGE_KEYS if e in members), None)
            txt_ext = next((e for e in TEXT_KEYS if e in members), None)
            image = read(img_ext) if img_ext else b""
            caption = read(txt_ext).decode("utf-8", errors="replace").strip() if txt_ext else ""
            if not txt_ext and "json" in members:
                caption = str(json.loads(read("json")).get("caption", ""))
        return image, caption


def _index_tar(path: Path) -> dict[str, dict[str, tuple[int, int]]]:
    """Group a webdataset shard's members by key (path up to the first dot of the file name)."""
    groups: dict[str, dict[str, tuple[int, int]]] = {}
    try:
        with tarfile.open(path, "r:") as tf:
            for member in tf:
                if not member.isfile():
                    continue
                folder, _, fname = member.name.rpartition("/")
                key, _, ext = fname.partition(".")
                groups.setdefault(f"{folder}/{key}", {})[ext.lower()] = (member.offset_data, member.size)
    except tarfile.TarError as exc:
        raise ValueError(f"{path}: not a readable tar shard ({exc})") from exc
    return groups


class ShapesSource(PairSource):
    """The synthetic shapes world, generated on the fly."""

    def __init__(self, size: int, seed: int = 0, image_size: int = 64, split: str = "train") -> None:
        from ..data.shapes import ShapesWorld

        self.world = ShapesWorld(seed=seed, image_size=image_size, split=split, size=size)
        self.name = f"shapes:{split}"

    def __len__(self) -> int:
        return len(self.world)

    def item(self, i: int) -> tuple[Any, str]:
        sample = self.world.sample(i)
        return sample.image, sample.caption


def open_source(spec: str | dict[str, Any]) -> PairSource:
    """Build a source from a spec: `shapes[:N]`, a manifest (.csv/.tsv/.jsonl), a folder, or tar shards.

    A dict spec may carry options: {"path": ..., "image_column": ..., "caption_column": ...,
    "size": N, "seed": S, "image_size": px}.
    """
    opts = dict(spec) if isinstance(spec, dict) else {"path": spec}
    path = str(opts.pop("path"))
    opts.pop("weight", None)
    if path.startswith("shapes"):
        _, _, n = path.partition(":")
        return ShapesSource(size=int(n or opts.pop("size", 100_000)), **opts)
    if ".tar" in path:
        return TarShardSource(path)
    p = Path(path)
    if p.suffix.lower() in (".csv", ".tsv", ".jsonl"):
        return ManifestSource(p, opts.get("image_column"), opts.get("caption_column"))
    if p.is_dir():
        return FolderSource(p)
    raise FileNotFoundError(f"training data {path!r}: not a shapes spec, manifest, folder or tar shard pattern")


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
