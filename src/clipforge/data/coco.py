"""COCO-style instance annotations (a JSON of images, categories and polygon/RLE segmentations) as
a mask source: class and instance masks per image, decoded by pycocotools.

    path/to/instances.json::images=path/to/image/folder      (default images folder: images/ beside the JSON)

Class index k names the k-th category in id order (index 0 is the background), so a COCO
category id never has to be contiguous. Objects are painted largest first, so a small object
lying on a larger one keeps its pixels; crowd regions (`iscrowd: 1`) take their class but no
instance id, as they stand for many objects.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..extras import require
from ..images import load_image

__all__ = ["CocoMasks"]

#: Class-mask value reserved for "ignore" (as `masks.IGNORE_INDEX`); categories must stay below it.
_IGNORE = 255


class CocoMasks:
    """A COCO instance-annotation file read as `MaskSource` (images in id order)."""

    def __init__(self, annotations: str | Path, images: str | Path | None = None, name: str | None = None) -> None:
        require(["pycocotools"], "coco")
        self.path = Path(annotations)
        data = _read_json(self.path)
        self.root = Path(images) if images is not None else self.path.parent / "images"
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"COCO masks {str(self.path)!r}: image folder {str(self.root)!r} does not exist "
                "(name it with PATH.json::images=DIR)"
            )
        categories = sorted(_records(data, "categories", self.path, ("id", "name")), key=lambda c: c["id"])
        if len(categories) >= _IGNORE:
            raise ValueError(f"{self.path}: {len(categories)} categories; class masks hold at most {_IGNORE - 1}")
        self.index_of = {c["id"]: k for k, c in enumerate(categories, start=1)}
        self.classnames = ["background", *(str(c["name"]) for c in categories)]
        self.images = sorted(_records(data, "images", self.path, ("id", "file_name", "height", "width")), key=_by_id)
        known = {im["id"] for im in self.images}
        self.annotations: dict[Any, list[dict[str, Any]]] = defaultdict(list)
        for ann in _records(data, "annotations", self.path, ("id", "image_id", "category_id", "segmentation")):
            if ann["image_id"] not in known:
                raise ValueError(f"{self.path}: annotation {ann['id']} names image_id {ann['image_id']}, not in images")
            if ann["category_id"] not in self.index_of:
                raise ValueError(f"{self.path}: annotation {ann['id']} names category_id {ann['category_id']}, "
                                 "not in categories")
            self.annotations[ann["image_id"]].append(ann)
        self.name = name or self.path.stem

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int) -> tuple[Image.Image, np.ndarray, np.ndarray]:
        record = self.images[index]
        height, width = int(record["height"]), int(record["width"])
        image = load_image(self.root / record["file_name"])
        if image.size != (width, height):
            raise ValueError(
                f"{self.root / record['file_name']}: image is {image.width}x{image.height}, "
                f"{self.path.name} says {width}x{height}"
            )
        classes = np.zeros((height, width), np.int32)
        instances = np.zeros((height, width), np.int32)
        anns = sorted(self.annotations.get(record["id"], []), key=lambda a: -float(a.get("area", 0.0)))
        for instance, ann in enumerate(anns, start=1):
            pixels = self._decode(ann, height, width)
            classes[pixels] = self.index_of[ann["category_id"]]
            instances[pixels] = 0 if ann.get("iscrowd") else instance
        return image, classes, instances

    def _decode(self, ann: dict[str, Any], height: int, width: int) -> np.ndarray:
        """The annotation's pixels as a boolean H x W array (polygons, RLE or uncompressed RLE)."""
        from pycocotools import mask as coco_mask  # optional: the coco extra

        segmentation = ann["segmentation"]
        try:
            if isinstance(segmentation, list):  # polygons: [[x1, y1, x2, y2, ...], ...]
                rle = coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))
            elif isinstance(segmentation.get("counts"), list):  # uncompressed RLE
                rle = coco_mask.frPyObjects(segmentation, height, width)
            else:
                rle = segmentation
            decoded = coco_mask.decode(rle)
        except (TypeError, ValueError, AttributeError, IndexError) as exc:
            raise ValueError(f"{self.path}: annotation {ann['id']} has an unreadable segmentation ({exc})") from None
        if decoded.shape[:2] != (height, width):
            raise ValueError(
                f"{self.path}: annotation {ann['id']} is a {decoded.shape[1]}x{decoded.shape[0]} mask "
                f"on a {width}x{height} image"
            )
        return decoded.astype(bool)


def _by_id(record: dict[str, Any]) -> Any:
    return record["id"]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"COCO masks {str(path)!r}: no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a JSON file ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object with images, annotations and categories")
    return data


def _records(data: dict[str, Any], key: str, path: Path, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    """`data[key]`: a list of objects that each have `fields`, or an error naming the file and field."""
    records = data.get(key)
    if not isinstance(records, list):
        raise ValueError(f"{path}: field {key!r} must be a list of objects (a COCO annotation file)")
    for k, record in enumerate(records):
        lacking = [f for f in fields if not isinstance(record, dict) or f not in record]
        if lacking:
            raise ValueError(f"{path}: {key}[{k}] lacks {', '.join(lacking)}")
    return records
