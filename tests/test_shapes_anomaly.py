"""The shapes world's anomaly parts (`clipforge.data.shapes.anomaly`): determinism, good training
images, defect masks that agree with the drawn pixels, distinct categories, the MVTec-layout writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from clipforge.data.anomaly import AnomalySet
from clipforge.data.shapes import (
    ANOMALY_CATEGORIES,
    DEFECTS,
    AnomalySample,
    anomaly_sample,
    draw_object,
    write_anomaly_dataset,
)
from clipforge.data.shapes.anomaly import _part


def pixels(sample: AnomalySample) -> np.ndarray:
    return np.asarray(sample.image, dtype=np.int16)


def part_cover(category: str, split: str, index: int, size: int = 128) -> np.ndarray:
    """The undamaged part's coverage (bool H x W, at least half covered) for one index."""
    obj, _ = _part(0, category, split, index)
    alpha, _field = draw_object(obj, np.random.default_rng(0), size)
    return alpha >= 128


def test_the_api_constants() -> None:
    assert len(ANOMALY_CATEGORIES) >= 6 and len(set(ANOMALY_CATEGORIES)) == len(ANOMALY_CATEGORIES)
    assert DEFECTS == ("missing", "spot", "scratch", "deform", "texture")


@pytest.mark.parametrize("defect", [None, *DEFECTS])
def test_a_sample_is_a_pure_function_of_its_arguments(defect: str | None) -> None:
    split = "train" if defect is None else "test"
    a = anomaly_sample("star", split, 3, seed=1, defect=defect)
    b = anomaly_sample("star", split, 3, seed=1, defect=defect)
    assert a.image.tobytes() == b.image.tobytes() and np.array_equal(a.mask, b.mask)
    assert (a.defect, a.category) == (b.defect, b.category) == (defect or "good", "star")
    for other in (
        anomaly_sample("star", split, 4, seed=1, defect=defect),
        anomaly_sample("star", split, 3, seed=2, defect=defect),
    ):
        assert other.image.tobytes() != a.image.tobytes()
    if defect is not None:
        assert not np.array_equal(anomaly_sample("star", split, 4, seed=1, defect=defect).mask, a.mask)


def test_train_images_are_good_with_empty_masks() -> None:
    for category in ANOMALY_CATEGORIES:
        for i in range(4):
            s = anomaly_sample(category, "train", i, image_size=64)
            assert s.defect == "good" and s.category == category
            assert s.image.mode == "RGB" and s.image.size == (64, 64)
            assert s.mask.dtype == bool and s.mask.shape == (64, 64) and not s.mask.any()
    good = anomaly_sample("cross", "test", 2)
    assert good.defect == "good" and not good.mask.any()
    assert anomaly_sample("cross", "test", 2, defect="good").image.tobytes() == good.image.tobytes()
    assert anomaly_sample("cross", "train", 2).image.tobytes() != good.image.tobytes()  # splits differ


@pytest.mark.parametrize("defect", DEFECTS)
def test_a_defects_mask_is_exactly_where_it_changed_the_good_part(defect: str) -> None:
    for category in ANOMALY_CATEGORIES:
        for i in range(3):
            good = anomaly_sample(category, "test", i)
            bad = anomaly_sample(category, "test", i, defect=defect)
            assert bad.defect == defect and bad.mask.dtype == bool and bad.mask.shape == (128, 128)
            cover = part_cover(category, "test", i)
            area = int(bad.mask.sum())
            assert 20 <= area <= 0.25 * cover.sum(), (category, i, area, int(cover.sum()))
            change = np.abs(pixels(bad) - pixels(good)).max(axis=2)
            assert (change[~bad.mask] == 0).all(), (category, i)  # outside: the undamaged render
            assert (change[bad.mask] >= 10).mean() >= 0.9, (category, i)  # inside: visibly different
            if defect in ("spot", "scratch", "texture"):  # drawn on the part
                assert (bad.mask & cover).sum() >= 0.9 * area, (category, i)
            else:  # the outline moved: the change stays near the part's edge (15 px out, 24 in)
                near = grow(cover, 31)
                deep = ~grow(~cover, 49)
                assert not (bad.mask & ~near).any() and not (bad.mask & deep).any(), (category, i)


def grow(mask: np.ndarray, size: int) -> np.ndarray:
    """``mask`` dilated by a ``size`` x ``size`` square."""
    return np.asarray(Image.fromarray(mask).filter(ImageFilter.MaxFilter(size)))


def test_missing_shows_background_and_deform_moves_the_outline() -> None:
    for category in ANOMALY_CATEGORIES:
        for i in range(4):
            cover = part_cover(category, "test", i)
            bad = anomaly_sample(category, "test", i, defect="missing")
            missing = bad.mask
            assert (missing & cover).sum() >= 0.7 * missing.sum()  # part pixels removed
            if category in ("circle", "star", "cross"):  # flat backgrounds: the hole shows the corner's tone
                core = missing & cover & ~grow(~missing, 3)  # not the hole's anti-aliased rim
                hole = np.median(pixels(bad)[core], axis=0)
                before = np.median(pixels(anomaly_sample(category, "test", i))[core], axis=0)
                corner = pixels(bad)[:8, :8].reshape(-1, 3).mean(axis=0)
                assert np.abs(hole - corner).max() < 25 < np.abs(before - corner).max(), (category, i)
            deform = anomaly_sample(category, "test", i, defect="deform").mask
            inside = (deform & cover).sum()
            assert inside >= 0.7 * deform.sum() or inside <= 0.3 * deform.sum()  # a dent or a bump


def test_defect_sizes_vary_with_the_index() -> None:
    for defect in ("missing", "spot", "texture"):
        areas = {int(anomaly_sample("square", "test", i, defect=defect).mask.sum()) for i in range(6)}
        assert len(areas) >= 5 and max(areas) >= 2 * min(areas), (defect, sorted(areas))


def test_normal_parts_look_alike_and_categories_differ() -> None:
    def mean_image(category: str) -> np.ndarray:
        return np.mean([pixels(anomaly_sample(category, "train", i, image_size=64)) for i in range(6)], axis=0)

    means = {c: mean_image(c) for c in ANOMALY_CATEGORIES}
    for c in ANOMALY_CATEGORIES:
        within = max(np.abs(pixels(anomaly_sample(c, "train", i, image_size=64)) - means[c]).mean() for i in range(6))
        between = min(np.abs(means[c] - means[d]).mean() for d in ANOMALY_CATEGORIES if d != c)
        assert between > 10 and between > 2 * within, (c, within, between)


def test_the_part_fills_about_half_the_width() -> None:
    for category in ANOMALY_CATEGORIES:
        for i in range(5):
            cover = part_cover(category, "train", i)
            cols = np.flatnonzero(cover.any(axis=0))
            assert 0.4 <= (cols[-1] - cols[0] + 1) / 128 <= 0.6, category
            ys, xs = np.nonzero(cover)
            assert abs(xs.mean() - 63.5) < 6 and abs(ys.mean() - 63.5) < 6, category  # centred, a few % off


def test_the_written_dataset_is_the_mvtec_layout_that_anomalyset_reads(tmp_path: Path) -> None:
    root = write_anomaly_dataset(tmp_path / "parts", ["circle", "hexagon"], n_train=3, n_test_good=2,
                                 n_test_per_defect=2, image_size=64, seed=4)  # fmt: skip
    assert root == tmp_path / "parts"
    assert sorted(p.name for p in root.iterdir()) == ["circle", "hexagon"]
    assert (root / "circle" / "train" / "good" / "002.png").is_file()
    assert (root / "circle" / "test" / "spot" / "001.png").is_file()
    mask_file = root / "circle" / "ground_truth" / "spot" / "001_mask.png"
    with Image.open(mask_file) as mask_image:
        assert mask_image.mode == "L" and set(np.unique(np.asarray(mask_image))) == {0, 255}
    for category in ("circle", "hexagon"):
        data = AnomalySet(root, category=category)
        assert len(data.split("train")) == 3 and not data.labels("train").any()
        test = data.split("test")
        assert len(test) == 2 + 2 * len(DEFECTS) and int(data.labels("test").sum()) == 2 * len(DEFECTS)
        assert data.defects == sorted(DEFECTS) and data.missing_masks == []
        for k, item in enumerate(test):
            n = int(item.path.stem)
            expected = anomaly_sample(category, "test", n, seed=4, image_size=64, defect=item.defect)
            with Image.open(item.path) as image:
                assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(expected.image))
            mask = data.mask("test", k)
            assert mask is not None and np.array_equal(mask, expected.mask), (category, item.defect, n)
            assert mask.any() == item.anomalous
    only = write_anomaly_dataset(tmp_path / "few", ["star"], n_train=1, n_test_good=1, n_test_per_defect=1,
                                 image_size=32, defects=["scratch"])  # fmt: skip
    assert AnomalySet(only).defects == ["scratch"]


def test_unknown_names_are_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"'gear'; the categories are circle, square"):
        anomaly_sample("gear", "test", 0)
    with pytest.raises(ValueError, match=r"'rust'.*missing, spot, scratch, deform, texture"):
        anomaly_sample("circle", "test", 0, defect="rust")
    with pytest.raises(ValueError, match=r"'val'.*train, test"):
        anomaly_sample("circle", "val", 0)
    with pytest.raises(ValueError, match=r"train split is all good.*'spot'"):
        anomaly_sample("circle", "train", 0, defect="spot")
    with pytest.raises(ValueError, match="index"):
        anomaly_sample("circle", "test", -1)
    with pytest.raises(ValueError, match=r"'gear'.*circle"):
        write_anomaly_dataset("/nonexistent/never", ["gear"])
    with pytest.raises(ValueError, match=r"'rust'.*missing"):
        write_anomaly_dataset("/nonexistent/never", defects=["rust"])
