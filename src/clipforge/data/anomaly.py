"""Anomaly-detection datasets in the MVTec AD layout (MVTec AD, VisA converted to it, users' own).

    ROOT/CATEGORY/train/good/*.png                      normal training images
    ROOT/CATEGORY/test/good/*.png                       normal test images
    ROOT/CATEGORY/test/DEFECT/NAME.png                  anomalous test images, one folder per defect type
    ROOT/CATEGORY/ground_truth/DEFECT/NAME_mask.png     their pixel masks (non-zero = anomalous)

`AnomalySet(path)` takes ROOT with `category=` or a CATEGORY folder itself; `split(name)` gives
`AnomalyItem`s with the image, whether it is anomalous, the defect type and the mask path. A
defective image without a mask is kept (image-level metrics still apply) and counted in
`missing_masks`; the layout errors name the folder and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..images import iter_image_files, load_image
from .images import FileImages

GOOD = "good"
SPLITS = ("train", "test")


@dataclass(frozen=True)
class AnomalyItem:
    """One image: `anomalous` (its defect type is not "good") and its mask file, if any."""

    path: Path
    defect: str
    mask: Path | None = None

    @property
    def anomalous(self) -> bool:
        return self.defect != GOOD


def is_category(path: str | Path) -> bool:
    """Whether `path` is one category of the layout (it holds train/good and test)."""
    p = Path(path)
    return (p / "train" / GOOD).is_dir() and (p / "test").is_dir()


def categories(root: str | Path) -> list[str]:
    """The category folders under `root`, sorted (`root` itself if it is one)."""
    root = Path(root)
    if is_category(root):
        return [root.name]
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and is_category(p)) if root.is_dir() else []
    if not found:
        raise FileNotFoundError(
            f"{root}: no category in the MVTec AD layout (expected CATEGORY/train/good and CATEGORY/test folders)"
        )
    return found


def _mask_for(folder: Path, image: Path) -> Path | None:
    for name in (f"{image.stem}_mask.png", f"{image.stem}.png", f"{image.stem}_mask{image.suffix}"):
        if (folder / name).is_file():
            return folder / name
    return None


@dataclass
class AnomalySet:
    """One category of an MVTec-layout dataset."""

    path: str | Path
    category: str | None = None
    missing_masks: list[Path] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        root = Path(self.path)
        if is_category(root):
            self.root, self.category = root, self.category or root.name
        else:
            names = categories(root)
            if self.category is None:
                if len(names) > 1:
                    raise ValueError(f"{root}: holds {len(names)} categories ({', '.join(names)}); name one")
                self.category = names[0]
            elif self.category not in names:
                raise ValueError(f"{root}: no category {self.category!r}; the categories are {', '.join(names)}")
            self.root = root / self.category
        self._splits: dict[str, list[AnomalyItem]] = {}

    @property
    def defects(self) -> list[str]:
        """The defect types of the test split (folders other than "good"), sorted."""
        return sorted({item.defect for item in self.split("test") if item.anomalous})

    def split(self, name: str) -> list[AnomalyItem]:
        """The items of "train" (normal only) or "test", in folder-then-name order."""
        if name not in SPLITS:
            raise ValueError(f"an anomaly dataset has the splits {SPLITS}, not {name!r}")
        if name not in self._splits:
            self._splits[name] = self._read(name)
        return self._splits[name]

    def _read(self, name: str) -> list[AnomalyItem]:
        folder = self.root / name
        items: list[AnomalyItem] = []
        for defect_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
            defect = defect_dir.name
            if name == "train" and defect != GOOD:
                continue  # training data is normal by definition
            for image in iter_image_files(defect_dir, recursive=False):
                mask = None
                if defect != GOOD:
                    mask = _mask_for(self.root / "ground_truth" / defect, image)
                    if mask is None:
                        self.missing_masks.append(image)
                items.append(AnomalyItem(image, defect, mask))
        if not items:
            raise ValueError(f"{folder}: no images (expected {folder}/good/*.png and, for test, defect folders)")
        return items

    def images(self, name: str) -> FileImages:
        return FileImages(tuple(item.path for item in self.split(name)))

    def labels(self, name: str) -> np.ndarray:
        """1 for anomalous, 0 for normal images."""
        return np.array([int(item.anomalous) for item in self.split(name)], dtype=np.int64)

    def mask(self, name: str, index: int) -> np.ndarray | None:
        """The boolean pixel mask [H, W] of one image at its own size: all False for a normal image,
        None for an anomalous one without a mask file (leave it out of pixel-level metrics)."""
        item = self.split(name)[index]
        if not item.anomalous:
            width, height = load_image(item.path).size
            return np.zeros((height, width), dtype=bool)
        if item.mask is None:
            return None
        return np.asarray(load_image(item.mask).convert("L")) > 0
