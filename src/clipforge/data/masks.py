"""Image + mask datasets for dense work (segmentation, localisation): the shapes world or a folder.

`MaskSource` is what dense consumers take: `len(source)`, `source.classnames` (index 0 is the
background) and `source.load(i)` → `(RGB PIL image, class mask, instance mask)`, the masks being
H x W integer arrays of the image's size (class index per pixel; 0 = background, instance ids
1, 2, ... per object). Open one from a spec with `open_mask_source`:

    shapes:seg[:SPLIT][:N][@SHIFT][?seed=0&image_size=64&variety=rich]   the generator's own masks
    path/to/folder                                                        images/NAME.* + masks/NAME.png
    path/to/instances.json[::images=DIR]                                  COCO polygons/RLE (`data.coco`)

A folder holds `images/NAME.png` (any image format) and `masks/NAME.png`, a single-channel PNG
(palette or greyscale, as Pascal VOC and most segmentation sets ship) whose values are class
indices; 255 is kept as is and means "ignore" by the usual convention. Optional
`instances/NAME.png` holds instance ids (without it every class present is one instance), and an
optional `classes.txt` names the classes, one per line (line k names value k).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np
from PIL import Image

from ..images import IMAGE_EXTENSIONS, load_image
from .coco import CocoMasks
from .shapes import MASK_CLASSES, SHIFTS, SPLITS, ShapesWorld
from .spec import Spec, parse_named, parse_spec, source_name

__all__ = [
    "IGNORE_INDEX",
    "CocoMasks",
    "FolderMasks",
    "MaskImages",
    "MaskSource",
    "ShapesMasks",
    "open_mask_source",
    "read_mask",
]

#: The mask value that marks pixels to ignore (Pascal VOC's convention).
IGNORE_INDEX = 255


@runtime_checkable
class MaskSource(Protocol):
    """Random access to (image, class mask, instance mask) triples with named classes."""

    @property
    def name(self) -> str: ...

    @property
    def classnames(self) -> Sequence[str]:
        """Names of the class-mask values (index 0 is the background)."""
        ...

    def __len__(self) -> int: ...

    def load(self, index: int) -> tuple[Image.Image, np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class ShapesMasks:
    """Masks of the shapes world, straight from the generator (classes: background + the shapes)."""

    world: ShapesWorld
    name: str = "shapes:seg"
    classnames: tuple[str, ...] = MASK_CLASSES

    def __len__(self) -> int:
        return len(self.world)

    def load(self, index: int) -> tuple[Image.Image, np.ndarray, np.ndarray]:
        sample = self.world[index]
        return sample.image, sample.class_mask, sample.instance_mask


def read_mask(path: str | Path) -> np.ndarray:
    """A single-channel PNG (palette, 'L', 'I;16' or 'I') as an integer array of its values."""
    with Image.open(path) as mask:
        if mask.mode in ("P", "L", "1"):
            return np.asarray(mask if mask.mode != "1" else mask.convert("L"), dtype=np.uint8).copy()
        if mask.mode.startswith("I"):
            return np.asarray(mask, dtype=np.int32).copy()
        raise ValueError(
            f"mask {str(path)!r} is a {mask.mode} image; masks must be single-channel PNGs "
            "(palette or greyscale) whose values are class indices"
        )


def _per_class_instances(classes: np.ndarray) -> np.ndarray:
    """One instance per class present (ids 1.. in class order; background and ignore get 0)."""
    present = [int(c) for c in np.unique(classes) if c not in (0, IGNORE_INDEX)]
    lookup = np.zeros(int(classes.max()) + 1 if classes.size else 1, np.int32)
    for k, c in enumerate(present, start=1):
        lookup[c] = k
    return lookup[classes]


class FolderMasks:
    """A user's segmentation folder: `images/NAME.*` with `masks/NAME.png` (and optional
    `instances/NAME.png`, `classes.txt`). Images without a mask are refused by name."""

    def __init__(self, root: str | Path, classnames: Sequence[str] | None = None, name: str | None = None) -> None:
        self.root = Path(root)
        images, masks = self.root / "images", self.root / "masks"
        if not images.is_dir() or not masks.is_dir():
            raise FileNotFoundError(f"mask dataset {str(self.root)!r}: expected images/ and masks/ folders")
        self.images = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not self.images:
            raise ValueError(f"mask dataset {str(self.root)!r}: images/ holds no images")
        self.masks = [masks / f"{p.stem}.png" for p in self.images]
        missing = [p.name for p, m in zip(self.images, self.masks) if not m.is_file()]
        if missing:
            raise FileNotFoundError(f"mask dataset {str(self.root)!r}: no masks/NAME.png for {missing[:5]}")
        instances = self.root / "instances"
        self.instances = [instances / f"{p.stem}.png" for p in self.images] if instances.is_dir() else None
        self.name = name or self.root.name
        self.classnames = list(classnames) if classnames is not None else self._read_classnames()

    def _read_classnames(self) -> list[str]:
        listed = self.root / "classes.txt"
        if listed.is_file():
            return [line.strip() for line in listed.read_text(encoding="utf-8").splitlines() if line.strip()]
        top = max(int(v) for m in self.masks for v in np.unique(read_mask(m)) if v != IGNORE_INDEX)
        return ["background", *(f"class {k}" for k in range(1, top + 1))]

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int) -> tuple[Image.Image, np.ndarray, np.ndarray]:
        image = load_image(self.images[index])
        classes = read_mask(self.masks[index])
        if classes.shape != (image.height, image.width):
            raise ValueError(
                f"{self.masks[index]}: mask is {classes.shape[1]}x{classes.shape[0]}, "
                f"image is {image.width}x{image.height}"
            )
        if self.instances is not None and self.instances[index].is_file():
            instances = read_mask(self.instances[index])
        else:
            instances = _per_class_instances(classes)
        return image, classes, instances


@dataclass(frozen=True)
class MaskImages:
    """The images of a mask source, as an `ImageSource` (for the embedding pipeline)."""

    source: MaskSource

    def __len__(self) -> int:
        return len(self.source)

    def load(self, index: int) -> Image.Image:
        return self.source.load(index)[0]


def _shapes_masks(spec: Spec) -> ShapesMasks:
    named = parse_named(spec)
    if not named.fields or named.fields[0] != "seg":
        raise ValueError(f"mask spec {spec.text!r}: the shapes world's masks are `shapes:seg[:SPLIT][:N]`")
    split, size = "test", None
    for part in named.fields[1:]:
        if part.isdigit():
            size = int(part)
        elif part in SPLITS:
            split = part
        else:
            raise ValueError(f"mask spec {spec.text!r}: {part!r} is neither a split ({', '.join(SPLITS)}) nor a count")
    if named.shift is not None and named.shift not in SHIFTS:
        raise ValueError(f"mask spec {spec.text!r}: shift must be one of {', '.join(SHIFTS)}")
    spec.options = named.options
    variety = spec.options.pop("variety", "classic")
    world = ShapesWorld(
        seed=spec.pop_int("seed", 0) or 0,
        image_size=spec.pop_int("image_size", 64) or 64,
        split=split,
        size=spec.pop_int("n", spec.pop_int("size", size)) or 1000,
        shift=named.shift,
        variety=variety,
    )
    spec.no_more_options("n (or size), seed, image_size, variety")
    return ShapesMasks(world, name=spec.text)


def open_mask_source(spec: str) -> MaskSource:
    """A mask source from a spec: `shapes:seg[:SPLIT][:N][@SHIFT][?options]`, a mask folder or a COCO JSON."""
    parsed = parse_spec(spec)
    if source_name(parsed.source) == "shapes" and not Path(parsed.source).exists():
        return _shapes_masks(parsed)
    path = Path(parsed.source)
    if path.is_dir():
        parsed.no_more_options("none for folders")
        return FolderMasks(path)
    if path.suffix.lower() == ".json":
        images = parsed.options.pop("images", None)
        parsed.no_more_options("images (the image folder of a COCO annotation file)")
        return CocoMasks(path, images)
    raise FileNotFoundError(
        f"mask data {spec!r}: not `shapes:seg...`, a folder with images/ and masks/, nor a COCO JSON file"
    )
