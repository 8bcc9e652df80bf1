"""Evaluation datasets: images + labels and/or captions, with an identity for the feature cache.

A `DatasetSource` (what `--dataset` names) knows its splits, shifts, class names and prompt
templates; `source.load(split, shift)` returns an `EvalDataset`, the concrete list of images the
tasks consume. Images stay lazy (`images.load(i)` decodes one), so a million-image folder costs
only its file list until it is embedded.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np

from ..data.cache import digest, files_fingerprint
from ..data.images import FileImages, ImageSource, SubsetImages
from ..data.splits import stratified_split

__all__ = [
    "SPLIT_DIRS", "DatasetSource", "EvalDataset", "FileImages", "ImageSource", "SubsetImages", "digest",
    "files_fingerprint", "stratified_split",
]

#: Folder names read as splits when they are the only sub-folders of a dataset root.
SPLIT_DIRS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


@dataclass
class EvalDataset:
    """Images with class labels (classification) and/or captions (retrieval).

    `caption_image[c]` is the index of the image caption c describes; an image may own several
    captions. `fingerprint` identifies the content (feature-cache key); it changes with any subset.
    """

    name: str
    split: str
    images: ImageSource
    fingerprint: str
    labels: np.ndarray | None = None
    classnames: list[str] | None = None
    templates: list[str] | None = None
    captions: list[str] | None = None
    caption_image: np.ndarray | None = None
    shift: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.labels is not None:
            self.labels = np.asarray(self.labels, np.int64)
            if self.labels.shape != (n,):
                raise ValueError(f"{self.name}: {len(self.labels)} labels for {n} images")
            if self.classnames is None:
                raise ValueError(f"{self.name}: labels need class names")
            if n and (self.labels.min() < 0 or self.labels.max() >= len(self.classnames)):
                raise ValueError(f"{self.name}: labels outside [0, {len(self.classnames)})")
        if self.captions is not None:
            self.caption_image = np.asarray(self.caption_image, np.int64)
            if self.caption_image.shape != (len(self.captions),):
                raise ValueError(f"{self.name}: caption_image needs one image index per caption")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def has_labels(self) -> bool:
        return self.labels is not None

    @property
    def has_captions(self) -> bool:
        return self.captions is not None and len(self.captions) > 0

    @property
    def title(self) -> str:
        return f"{self.name}/{self.split}" + (f"@{self.shift}" if self.shift else "")

    def subset(self, indices: Sequence[int] | np.ndarray) -> EvalDataset:
        """Keep these images (in this order) and the captions that describe them."""
        idx = np.asarray(indices, np.int64)
        captions, owner = self.captions, self.caption_image
        if captions is not None and owner is not None:
            new_pos = np.full(len(self), -1, np.int64)
            new_pos[idx] = np.arange(len(idx))
            keep = np.flatnonzero(new_pos[owner] >= 0)
            captions, owner = [captions[i] for i in keep], new_pos[owner[keep]]
        return replace(
            self,
            images=SubsetImages(self.images, tuple(int(i) for i in idx)),
            fingerprint=digest(self.fingerprint, idx),
            labels=None if self.labels is None else self.labels[idx],
            captions=captions,
            caption_image=owner,
        )

    def sample(self, max_samples: int | None, seed: int = 0) -> EvalDataset:
        """A seeded random subset of at most `max_samples` images (kept in their original order)."""
        if max_samples is None or max_samples >= len(self):
            return self
        if max_samples < 1:
            raise ValueError(f"max_samples must be positive, got {max_samples}")
        rng = np.random.default_rng(seed)
        return self.subset(np.sort(rng.choice(len(self), size=max_samples, replace=False)))

    def describe(self) -> dict[str, Any]:
        """What a result JSON records about the data."""
        out: dict[str, Any] = {
            "name": self.name,
            "split": self.split,
            "shift": self.shift,
            "n_images": len(self),
            "fingerprint": self.fingerprint,
        }
        if self.labels is not None and self.classnames is not None:
            out["n_classes"] = len(self.classnames)
        if self.captions is not None:
            out["n_captions"] = len(self.captions)
        return {**out, **self.info}


class DatasetSource(ABC):
    """Something `--dataset` can name: it knows its splits, shifts, class names and templates."""

    name: str = "dataset"
    classnames: list[str] | None = None
    templates: list[str] | None = None

    @property
    @abstractmethod
    def splits(self) -> tuple[str, ...]:
        """Splits this source can load; "all" means the data has no predefined splits."""

    @property
    def shifts(self) -> tuple[str, ...]:
        """Distribution-shift variants `load(..., shift=...)` accepts."""
        return ()

    @abstractmethod
    def _load(self, split: str, shift: str | None, max_samples: int | None = None) -> EvalDataset:
        """Build one split; `max_samples` is a hint for sources that can generate less data directly."""

    def default_split(self) -> str:
        return "test" if "test" in self.splits else self.splits[0]

    def default_shift(self) -> str | None:
        """The shift a spec asked for (e.g. `shapes:colour@blur`); tasks on one variant use it."""
        return None

    def robustness_variants(self) -> list[tuple[str, str, str | None]]:
        """(name, split, shift) of each distribution-shift variant of the default split."""
        return [(s, self.default_split(), s) for s in self.shifts]

    def load(
        self, split: str | None = None, shift: str | None = None, max_samples: int | None = None, seed: int = 0
    ) -> EvalDataset:
        """The images of one split (default: test, or all data when there are no splits).

        `max_samples` keeps a seeded random subset of at most that many images.
        """
        split = split or self.default_split()
        if split not in self.splits:
            raise ValueError(f"dataset {self.name!r} has no split {split!r}; it has {', '.join(self.splits)}")
        if shift is not None and shift not in self.shifts:
            have = ", ".join(self.shifts) or "none"
            raise ValueError(f"dataset {self.name!r} has no shift {shift!r}; shifts: {have}")
        return self._load(split, shift, max_samples).sample(max_samples, seed)
