"""Per-pixel masks of the shapes world and the image + mask data sources (`clipforge.data.masks`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipforge.data.masks import FolderMasks, MaskImages, MaskSource, ShapesMasks, open_mask_source, read_mask
from clipforge.data.shapes import MASK_CLASSES, SHAPES, ShapesWorld, instance_ids, write_mask_dataset


def rgb(sample) -> np.ndarray:
    return np.asarray(sample.image, dtype=np.float64)


@pytest.fixture(scope="module")
def clean() -> list:
    """Flat light/plain backgrounds, filled shapes, no lighting or compression; objects may occlude."""
    world = ShapesWorld(seed=5, variety="clean")
    return [world.sample(i) for i in range(150)]


def test_masks_have_the_image_size_and_name_the_objects(clean: list) -> None:
    for s in clean:
        assert s.class_mask.shape == s.instance_mask.shape == (64, 64)
        assert s.class_mask.dtype == s.instance_mask.dtype == np.uint8
        ids = set(np.unique(s.instance_mask)) - {0}
        assert ids <= set(range(1, len(s.objects) + 1))
        for k in ids:
            assert set(np.unique(s.class_mask[s.instance_mask == k])) == {SHAPES.index(s.objects[k - 1].shape) + 1}
        assert (s.class_mask == 0).sum() == (s.instance_mask == 0).sum() > 0
    assert MASK_CLASSES[0] == "background" and MASK_CLASSES[1:] == SHAPES


def test_mask_pixels_have_their_objects_colour_and_background_pixels_the_backgrounds(clean: list) -> None:
    for s in clean:
        px, ids = rgb(s), s.instance_mask
        untouched = np.max(s.masks, axis=0) == 0  # no object paints these pixels at all
        assert (ids[untouched] == 0).all()
        bg = np.median(px[untouched], axis=0)
        assert np.abs(px[untouched] - bg).max() <= 1  # a flat background
        for k, obj in enumerate(s.objects):
            later = np.max(s.masks[k + 1 :], axis=0) if k + 1 < len(s.masks) else np.zeros_like(s.masks[k])
            solid = (s.masks[k] == 255) & (later == 0)  # fully covered by this object, nothing on top
            assert (ids[solid] == k + 1).all()
            if solid.any():  # the flat fill, exactly (jitter is in obj.rgb)
                assert np.abs(px[solid] - np.array(obj.rgb)).max() <= 1, (s.caption, k)
        if len(s.objects) == 1:  # every pixel, edges included: nearer what the mask says it shows
            colour = np.array(s.objects[0].rgb, np.float64)
            to_obj = np.linalg.norm(px - colour, axis=-1)
            to_bg = np.linalg.norm(px - bg, axis=-1)
            assert (to_obj[ids == 1] <= to_bg[ids == 1] + 2).all()
            assert (to_bg[ids == 0] <= to_obj[ids == 0] + 2).all()


def test_later_objects_occlude_earlier_ones_in_the_masks(clean: list) -> None:
    overlaps = 0
    for s in clean:
        for a in range(len(s.masks)):
            for b in range(a + 1, len(s.masks)):
                above = [s.masks[c] > 0 for c in range(b + 1, len(s.masks))]
                covered = (s.masks[a] == 255) & (s.masks[b] == 255) & ~np.any(above, axis=0)
                if covered.any():  # both cover these pixels fully, b was painted later, nothing on top
                    overlaps += 1
                    assert (s.instance_mask[covered] == b + 1).all()
                    assert np.abs(rgb(s)[covered] - np.array(s.objects[b].rgb)).max() <= 1
    assert overlaps >= 3


def test_instance_ids_resolve_partial_coverage_by_painting_order() -> None:
    a = np.array([[255, 200, 100, 0]], np.uint8)
    b = np.array([[0, 100, 200, 255]], np.uint8)
    # pixel 1: a shows 200/255 * (1 - 100/255) = 0.48, b 0.39, background 0.13 -> a
    assert instance_ids([a, b], (1, 4)).tolist() == [[1, 1, 2, 2]]
    assert instance_ids([np.array([[127, 128]], np.uint8)], (1, 2)).tolist() == [[0, 1]]
    assert instance_ids([], (2, 2)).tolist() == [[0, 0], [0, 0]]


def test_classic_and_rich_worlds_have_masks_too() -> None:
    for world in (ShapesWorld(seed=1), ShapesWorld(seed=1, variety="rich"), ShapesWorld(seed=1, shift="sketch")):
        for i in range(30):
            s = world.sample(i)
            visible = set(np.unique(s.instance_mask)) - {0}
            assert visible and visible <= set(range(1, len(s.objects) + 1))
            assert set(np.unique(s.class_mask)) - {0} <= {SHAPES.index(o.shape) + 1 for o in s.objects}


# -- mask sources -------------------------------------------------------------------------


def test_shapes_seg_spec() -> None:
    source = open_mask_source("shapes:seg:val:12?variety=rich&seed=2&image_size=48")
    assert isinstance(source, ShapesMasks) and isinstance(source, MaskSource)
    assert len(source) == 12 and list(source.classnames) == list(MASK_CLASSES)
    assert source.world.split == "val" and source.world.variety == "rich" and source.world.image_size == 48
    image, classes, instances = source.load(3)
    sample = source.world.sample(3)
    assert image.size == (48, 48) and np.array_equal(classes, sample.class_mask)
    assert np.array_equal(instances, sample.instance_mask)
    assert MaskImages(source).load(3).tobytes() == image.tobytes()
    assert open_mask_source("shapes:seg::n=5").world.split == "test"
    assert open_mask_source("shapes:seg:test_style:4::variety=rich").world.split == "test_style"
    with pytest.raises(ValueError, match="shapes:seg"):
        open_mask_source("shapes:shape")
    with pytest.raises(ValueError, match="unknown option"):
        open_mask_source("shapes:seg?colour=red")


def test_mask_folder_round_trip(tmp_path: Path) -> None:
    world = ShapesWorld(seed=4, variety="rich", size=6)
    root = write_mask_dataset(world, tmp_path / "seg")
    source = open_mask_source(str(root))
    assert isinstance(source, FolderMasks) and len(source) == 6
    assert list(source.classnames) == list(MASK_CLASSES)
    for i in range(6):
        image, classes, instances = source.load(i)
        sample = world.sample(i)
        assert np.array_equal(np.asarray(image), np.asarray(sample.image))
        assert np.array_equal(classes, sample.class_mask) and np.array_equal(instances, sample.instance_mask)


def test_a_users_mask_folder(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.new("RGB", (5, 4), (10, 20, 30)).save(root / "images" / "a.jpg")
    mask = np.zeros((4, 5), np.uint8)
    mask[1:3, 1:3], mask[0, 4], mask[3, 0] = 2, 255, 1
    palette = Image.fromarray(mask, "L").convert("P")
    palette.save(root / "masks" / "a.png")
    source = FolderMasks(root)
    assert source.classnames == ["background", "class 1", "class 2"]  # no classes.txt: numbered
    image, classes, instances = source.load(0)
    assert image.size == (5, 4) and classes.tolist() == mask.tolist()
    assert instances[1, 1] == 2 and instances[3, 0] == 1 and instances[0, 4] == 0  # one instance per class
    assert read_mask(root / "masks" / "a.png").dtype == np.uint8

    Image.new("RGB", (5, 4)).save(root / "masks" / "a.png")
    with pytest.raises(ValueError, match="single-channel"):
        source.load(0)
    Image.fromarray(np.zeros((3, 3), np.uint8)).save(root / "masks" / "a.png")
    with pytest.raises(ValueError, match="mask is 3x3"):
        source.load(0)
    Image.new("RGB", (5, 4)).save(root / "images" / "b.png")
    with pytest.raises(FileNotFoundError, match="b.png"):
        FolderMasks(root)
    with pytest.raises(FileNotFoundError, match="images/ and masks/"):
        open_mask_source(str(tmp_path))
