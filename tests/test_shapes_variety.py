"""The shapes world's drawing varieties: rich rendering, held-out styles (test_style), spec options."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from clipforge.data.shapes import (
    ASPECT_LIMIT,
    RENDERERS,
    RICH_BACKGROUNDS,
    ROTATION_LIMIT,
    SPLITS,
    ShapesClassification,
    ShapesWorld,
    Variety,
)


@pytest.fixture(scope="module")
def rich() -> ShapesWorld:
    return ShapesWorld(seed=3, variety="rich")


def pixels(sample) -> np.ndarray:
    return np.asarray(sample.image, dtype=np.int16)


# -- determinism and variety ---------------------------------------------------------


def test_rich_samples_are_pure_functions_of_seed_split_index(rich: ShapesWorld) -> None:
    twin = pickle.loads(pickle.dumps(ShapesWorld(seed=3, variety="rich")))
    for i in (11, 0, 4_000_000, 3):
        a, b = rich.sample(i), twin.sample(i)
        assert a.caption == b.caption and a.objects == b.objects and a.background == b.background
        assert np.array_equal(pixels(a), pixels(b))
        assert all(np.array_equal(m, n) for m, n in zip(a.masks, b.masks))
    for i in range(4):
        ref = pixels(rich.sample(i))
        assert not np.array_equal(ref, pixels(rich.with_(seed=4).sample(i)))
        assert not np.array_equal(ref, pixels(rich.with_(split="val").sample(i)))
        assert not np.array_equal(ref, pixels(ShapesWorld(seed=3).sample(i)))  # classic draws differently


def test_rich_world_uses_every_renderer_and_background_and_varies_geometry(rich: ShapesWorld) -> None:
    renderers, backgrounds, rotations, aspects = set(), set(), [], []
    for i in range(600):
        objects, background = rich.objects(i)
        backgrounds.add(background)
        for o in objects:
            renderers.add(o.renderer)
            assert o.style == RENDERERS[o.renderer]
            assert abs(o.rotation) <= ROTATION_LIMIT[o.shape] + 1e-9
            assert 1 / ASPECT_LIMIT[o.shape] - 1e-9 <= o.aspect <= ASPECT_LIMIT[o.shape] + 1e-9
            rotations.append(abs(o.rotation))
            aspects.append(o.aspect)
    assert renderers == set(RENDERERS) and backgrounds == set(RICH_BACKGROUNDS)
    assert max(rotations) > 60 and np.std(aspects) > 0.05


def test_rich_images_vary_in_brightness_and_objects_may_occlude(rich: ShapesWorld) -> None:
    means = [pixels(rich.sample(i)).mean() for i in range(80)]
    assert min(means) < 70 and max(means) > 170  # dark and light backgrounds
    overlapping = 0
    for i in range(300):
        s = rich.sample(i)
        for a in range(len(s.masks)):
            for b in range(a):
                overlapping += bool(np.minimum(s.masks[a], s.masks[b]).max() > 128)
    assert overlapping >= 3


def test_rich_captions_state_true_positions(rich: ShapesWorld) -> None:
    for i in range(400):
        for o in rich.objects(i)[0]:
            dx, dy = o.x - 0.5, o.y - 0.5
            if o.position == "centre":
                assert max(abs(dx), abs(dy)) < 0.1
            elif o.position in ("left", "right"):
                assert abs(dx) > 0.12 and abs(dx) > abs(dy) and (dx < 0) == (o.position == "left")
            else:
                assert abs(dy) > 0.12 and abs(dy) > abs(dx) and (dy < 0) == (o.position == "top")
            assert 0 <= o.x - o.radius and o.x + o.radius <= 1 and 0 <= o.y - o.radius and o.y + o.radius <= 1


def test_named_colours_stay_distinguishable_in_the_rich_world(rich: ShapesWorld) -> None:
    from clipforge.data.shapes import COLOURS

    names, table = list(COLOURS), np.array(list(COLOURS.values()), dtype=float)
    checked = correct = 0
    for i in range(400):
        objects, background = rich.objects(i)
        o = objects[0]
        if len(objects) != 1 or o.renderer not in ("filled", "soft") or o.size != "large":
            continue
        s = rich.sample(i)
        inside = s.instance_mask == 1
        mean = pixels(s)[inside].astype(float).mean(axis=0)
        correct += names[int(np.argmin(((table - mean) ** 2).sum(axis=1)))] == o.colour
        assert np.linalg.norm(mean - pixels(s)[s.instance_mask == 0].mean(axis=0)) > 45
        checked += 1
    assert checked >= 15 and correct / checked >= 0.9


def test_custom_variety_and_invalid_ones() -> None:
    mine = Variety("mine", renderers=("filled", "thick"), backgrounds=("light", "dark", "clutter"), jpeg=1.0)
    world = ShapesWorld(seed=1, variety=mine)
    seen = {o.renderer for i in range(60) for o in world.objects(i)[0]}
    assert seen <= {"filled", "thick"} and world.sample(0).attributes["variety"] == "mine"
    with pytest.raises(ValueError, match="renderers"):
        Variety("bad", renderers=("crayon",))
    with pytest.raises(ValueError, match="variety must be one of"):
        ShapesWorld(variety="baroque")


# -- held-out styles -------------------------------------------------------------------


def test_heldout_styles_are_fixed_by_seed_and_leave_every_renderer_and_background_trainable(
    rich: ShapesWorld,
) -> None:
    held = rich.heldout_styles
    assert len(held) == round(0.2 * len(RENDERERS) * len(RICH_BACKGROUNDS))
    assert held == rich.with_(split="test_style").heldout_styles == ShapesWorld(seed=3, variety="rich").heldout_styles
    assert held != ShapesWorld(seed=5, variety="rich").heldout_styles
    for r in RENDERERS:
        assert sum((r, b) not in held for b in RICH_BACKGROUNDS) >= 5
    for b in RICH_BACKGROUNDS:
        assert sum((r, b) not in held for r in RENDERERS) >= 6
    assert ShapesWorld().heldout_styles == frozenset()


@pytest.mark.parametrize("split", ["train", "val", "test", "test_compositional"])
def test_heldout_styles_never_appear_outside_test_style(rich: ShapesWorld, split: str) -> None:
    view = rich.with_(split=split)
    seen = set()
    for i in range(3000 if split == "train" else 400):
        objects, background = view.objects(i)
        for o in objects:
            assert (o.renderer, background) not in rich.heldout_styles
            seen.add((o.renderer, background))
    if split == "train":
        assert len(seen) == len(RENDERERS) * len(RICH_BACKGROUNDS) - len(rich.heldout_styles)
        assert not any(rich.sample(i).attributes["style_heldout"] for i in range(50))


def test_test_style_only_holds_heldout_styles_of_in_distribution_pairs(rich: ShapesWorld) -> None:
    view = rich.with_(split="test_style")
    seen = set()
    for i in range(500):
        objects, background = view.objects(i)
        for o in objects:
            assert (o.renderer, background) in rich.heldout_styles
            assert (o.shape, o.colour) not in rich.heldout_pairs
            seen.add((o.renderer, background))
    assert seen == set(rich.heldout_styles)
    sample = view.sample(0)
    assert sample.attributes["style_heldout"] and not sample.attributes["heldout"]
    labels = ShapesClassification(rich, task="shape", split="test_style", size=20)
    assert len(labels.world.objects(0)[0]) == 1 and labels.world.split == "test_style"


def test_test_style_needs_a_variety_with_heldout_styles() -> None:
    assert "test_style" in SPLITS and "test_style" not in ShapesWorld().splits
    with pytest.raises(ValueError, match="test_style needs held-out styles"):
        ShapesWorld(split="test_style")
    with pytest.raises(ValueError, match="test_style"):
        ShapesWorld(split="test_style", variety="clean")
    assert "test_style" in ShapesWorld(variety="rich").splits


# -- data specs ---------------------------------------------------------------------------


def test_training_specs_take_a_variety() -> None:
    from clipforge.data.pairs import open_pairs

    source = open_pairs("shapes:100::variety=rich")
    assert source.world.variety == "rich" and len(source) == 100 and source.name == "shapes:train?variety=rich"
    assert open_pairs({"path": "shapes:50", "variety": "clean"}).world.variety == "clean"
    held = open_pairs("shapes:test_style:8?variety=rich")
    assert held.world.split == "test_style" and held.item(0)[1]
    assert open_pairs("shapes:10").world.variety == "classic"
    with pytest.raises(ValueError, match="variety"):
        open_pairs("shapes:10::variety=fancy")


def test_eval_specs_take_a_variety_and_offer_test_style() -> None:
    from clipforge.evaluate.sources import resolve_dataset

    classic = resolve_dataset("shapes:shape")
    assert "test_style" not in classic.splits
    assert "style" not in {name for name, _, _ in classic.robustness_variants()}
    source = resolve_dataset("shapes:shape:test_style?variety=rich&n=6")
    data = source.load()
    assert data.split == "test_style" and len(data.labels) == 6 and data.info["world"]["variety"] == "rich"
    assert source.name == "shapes:shape?variety=rich"
    assert ("style", "test_style", None) in resolve_dataset("shapes:colour::variety=rich").robustness_variants()
    with pytest.raises(ValueError, match="split must be one of"):
        resolve_dataset("shapes:shape:test_style")
    masks = resolve_dataset("shapes:seg:val:3?variety=rich")  # the image + mask dataset of the segmentation task
    assert masks.mask_source.classnames[0] == "background" and len(masks.mask_source) == 3
