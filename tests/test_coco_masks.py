"""COCO-style annotation files as mask sources: RLE, uncompressed RLE and polygon segmentations decode
to the pixels they describe, classes follow category ids, small objects stay on top of large ones,
and malformed files are refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("pycocotools")
from pycocotools import mask as coco_mask  # noqa: E402

from clipforge.data.masks import open_mask_source  # noqa: E402
from clipforge.data.shapes import MASK_CLASSES, ShapesWorld  # noqa: E402
from clipforge.evaluate import evaluate  # noqa: E402


def _rle(pixels: np.ndarray) -> dict:
    rle = coco_mask.encode(np.asfortranarray(pixels.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def _uncompressed(pixels: np.ndarray) -> dict:
    """COCO's uncompressed RLE: run lengths of 0s and 1s in column-major order, starting with 0s."""
    flat = pixels.T.reshape(-1).astype(np.uint8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    if flat[0]:
        runs = [0, *runs]
    return {"size": list(pixels.shape), "counts": runs}


def _shapes_coco(tmp_path: Path, n: int = 6) -> tuple[Path, ShapesWorld]:
    """The shapes world's test images with every object written as an annotation (ids 10, 20, ...)."""
    world = ShapesWorld(split="test", size=n, seed=3)
    images, annotations = tmp_path / "images", []
    images.mkdir()
    categories = [{"id": 10 * k, "name": name} for k, name in enumerate(MASK_CLASSES[1:], start=1)]
    records = []
    for i in range(n):
        sample = world[i]
        sample.image.save(images / f"{i}.png")
        records.append({"id": 100 + i, "file_name": f"{i}.png", "height": 64, "width": 64})
        for instance in np.unique(sample.instance_mask):
            if instance == 0:
                continue
            pixels = sample.instance_mask == instance
            cls = int(np.bincount(sample.class_mask[pixels]).argmax())
            encode = _uncompressed if len(annotations) % 2 else _rle
            annotations.append({"id": len(annotations) + 1, "image_id": 100 + i, "category_id": 10 * cls,
                                "segmentation": encode(pixels), "area": float(pixels.sum()), "iscrowd": 0})
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": records, "annotations": annotations, "categories": categories}))
    return path, world


def test_rle_annotations_give_back_the_generator_masks(tmp_path):
    path, world = _shapes_coco(tmp_path)
    source = open_mask_source(str(path))
    assert list(source.classnames) == list(MASK_CLASSES) and len(source) == 6
    for i in range(len(source)):
        image, classes, instances = source.load(i)
        sample = world[i]
        assert np.array_equal(classes, sample.class_mask)
        assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(sample.image.convert("RGB")))
        # instance ids are renumbered (largest object first) but partition the image as the generator's do
        pairs = set(zip(instances.ravel().tolist(), sample.instance_mask.ravel().tolist()))
        assert len(pairs) == len(np.unique(instances)) == len(np.unique(sample.instance_mask))


def test_polygons_overlap_order_crowds_and_the_images_option(tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    Image.new("RGB", (40, 30), "white").save(folder / "a.jpg")
    square = [[5, 5, 35, 5, 35, 25, 5, 25]]
    small = [[10, 10, 20, 10, 20, 20, 10, 20]]
    data = {
        "images": [{"id": 7, "file_name": "a.jpg", "height": 30, "width": 40}],
        "categories": [{"id": 3, "name": "cat"}, {"id": 1, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 3, "segmentation": small, "area": 100.0, "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 1, "segmentation": square, "area": 600.0, "iscrowd": 1},
        ],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    source = open_mask_source(f"{path}::images={folder}")
    assert source.classnames == ["background", "dog", "cat"]  # category id order, not file order
    _, classes, instances = source.load(0)
    assert classes.shape == (30, 40)
    inner, outer = classes[12:18, 12:18], classes[6:24, 6:34].copy()
    outer[6:12, 6:12] = 1
    assert (inner == 2).all() and (outer[classes[6:24, 6:34] != 2] == 1).all()  # the cat lies on the dog
    assert (classes[:4] == 0).all() and (classes[:, :4] == 0).all()
    assert set(np.unique(instances[classes == 1])) == {0}  # a crowd region has no instance id
    assert set(np.unique(instances[classes == 2])) == {2}
    with pytest.raises(FileNotFoundError, match="images=DIR"):
        open_mask_source(str(path))  # no images/ beside the JSON


def test_malformed_files_are_refused_by_name(tmp_path):
    path, _ = _shapes_coco(tmp_path, n=2)
    data = json.loads(path.read_text())
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**data, "annotations": [{**data["annotations"][0], "category_id": 99}]}))
    with pytest.raises(ValueError, match="annotation 1 names category_id 99"):
        open_mask_source(f"{bad}::images={tmp_path / 'images'}")
    bad.write_text(json.dumps({**data, "categories": "cats"}))
    with pytest.raises(ValueError, match="'categories' must be a list"):
        open_mask_source(f"{bad}::images={tmp_path / 'images'}")
    bad.write_text(json.dumps({**data, "images": [{**data["images"][0], "width": 50}, *data["images"][1:]]}))
    source = open_mask_source(f"{bad}::images={tmp_path / 'images'}")
    with pytest.raises(ValueError, match="image is 64x64, bad.json says 50x64"):
        source.load(0)
    corrupt = {**data["annotations"][0], "segmentation": {"size": [64, 64], "counts": "not an rle"}}
    bad.write_text(json.dumps({**data, "annotations": [corrupt]}))
    with pytest.raises(ValueError, match="annotation 1 has an unreadable segmentation"):
        open_mask_source(f"{bad}::images={tmp_path / 'images'}").load(0)


def test_segmentation_evaluation_reads_a_coco_file(tmp_path):
    path, _ = _shapes_coco(tmp_path, n=4)
    (out,) = evaluate("segmentation", str(path), out_dir=tmp_path / "eval", plots=False, progress=False)
    assert out.result.dataset["n_images"] == 4 and out.result.dataset["classes"] == list(MASK_CLASSES)
    assert 0.0 <= out.result.metrics["miou"] <= 1.0 and out.result.metrics["pixels"] == 4 * 64 * 64
