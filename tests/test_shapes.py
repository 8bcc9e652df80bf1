"""Tests for the shapes world: determinism, splits, captions, views, shifts, writers."""

from __future__ import annotations

import csv
import io
import json
import pickle
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipforge.data.shapes import (
    COLOURS,
    POSITION_PHRASES,
    POSITIONS,
    SHAPES,
    SHIFTS,
    SPLITS,
    TASKS,
    ShapesClassification,
    ShapesWorld,
    vocabulary,
    write_csv_dataset,
    write_webdataset,
)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def centroid(mask: np.ndarray) -> tuple[float, float]:
    """Coverage-weighted centre of a mask, as fractions of the image side."""
    weights = mask.astype(np.float64)
    ys, xs = np.indices(mask.shape)
    total = weights.sum()
    return ((xs + 0.5) * weights).sum() / total / mask.shape[1], ((ys + 0.5) * weights).sum() / total / mask.shape[0]


@pytest.fixture(scope="module")
def world() -> ShapesWorld:
    return ShapesWorld(seed=3)


@pytest.fixture(scope="module")
def train_samples(world: ShapesWorld) -> list:
    return [world.sample(i) for i in range(400)]


# -- determinism ---------------------------------------------------------------


def test_same_seed_split_index_gives_identical_sample(world: ShapesWorld) -> None:
    twin = pickle.loads(pickle.dumps(ShapesWorld(seed=3)))
    for i in (7, 0, 123, 5_000_000):  # any order, any index
        a, b = world.sample(i), twin.sample(i)
        assert a.caption == b.caption
        assert np.array_equal(pixels(a.image), pixels(b.image))
        assert a.objects == b.objects
    assert world[-1].caption == world.sample(len(world) - 1).caption
    with pytest.raises(IndexError):
        world[len(world)]


def test_different_seeds_and_splits_differ(world: ShapesWorld) -> None:
    other_seed = ShapesWorld(seed=4)
    other_split = world.with_(split="val")
    for i in range(5):
        ref = pixels(world.sample(i).image)
        assert not np.array_equal(ref, pixels(other_seed.sample(i).image))
        assert not np.array_equal(ref, pixels(other_split.sample(i).image))


def test_sample_pickles(world: ShapesWorld) -> None:
    sample = world.sample(2)
    again = pickle.loads(pickle.dumps(sample))
    assert again.caption == sample.caption
    assert np.array_equal(pixels(again.image), pixels(sample.image))


def test_image_format(train_samples: list) -> None:
    for s in train_samples[:20]:
        assert s.image.mode == "RGB" and s.image.size == (64, 64)
        assert 1 <= len(s.objects) <= 3 and len(s.masks) == len(s.objects)
    assert ShapesWorld(image_size=32).sample(0).image.size == (32, 32)


# -- splits and held-out pairs ---------------------------------------------------


def test_heldout_pairs_are_fixed_by_seed_and_leave_every_attribute_trainable(world: ShapesWorld) -> None:
    held = world.heldout_pairs
    assert len(held) == round(0.2 * 64)
    assert held == world.with_(split="test").heldout_pairs
    assert held != ShapesWorld(seed=11).heldout_pairs
    for shape in SHAPES:
        assert sum((shape, c) not in held for c in COLOURS) >= 6
    for colour in COLOURS:
        assert sum((s, colour) not in held for s in SHAPES) >= 6


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_heldout_pairs_never_appear_in_distribution(world: ShapesWorld, split: str) -> None:
    view = world.with_(split=split)
    seen_shapes, seen_colours = set(), set()
    for i in range(3000 if split == "train" else 500):
        objects, _ = view.objects(i)
        for o in objects:
            assert (o.shape, o.colour) not in world.heldout_pairs
            seen_shapes.add(o.shape)
            seen_colours.add(o.colour)
    assert seen_shapes == set(SHAPES) and seen_colours == set(COLOURS)


def test_test_compositional_is_single_heldout_objects(world: ShapesWorld) -> None:
    view = world.with_(split="test_compositional")
    pairs = set()
    for i in range(400):
        objects, _ = view.objects(i)
        assert len(objects) == 1
        pairs.add((objects[0].shape, objects[0].colour))
    assert pairs == set(world.heldout_pairs)
    assert view.sample(0).attributes["heldout"]


def test_single_object_images_are_the_majority(world: ShapesWorld) -> None:
    counts = [len(world.objects(i)[0]) for i in range(2000)]
    assert 0.55 < counts.count(1) / len(counts) < 0.65
    assert {2, 3} <= set(counts)


# -- captions ----------------------------------------------------------------------


def test_captions_use_only_vocabulary_words(world: ShapesWorld) -> None:
    vocab = set(vocabulary())
    assert world.vocabulary() == sorted(vocab)
    worlds = [world.with_(split=s) for s in world.splits] + [world.with_(shift="sketch")]
    worlds += [world.with_(variety="rich", split=s) for s in SPLITS]  # the rich world adds test_style
    for w in worlds:
        for i in range(250):
            caption = w.sample(i).caption
            words = re.findall(r"[a-z]+", caption)
            assert caption == caption.lower() and set(words) <= vocab, caption
            assert re.fullmatch(r"[a-z ,:.]+", caption), caption
            assert not re.search(r"\ba [aeiou]", caption), caption  # 'an orange', not 'a orange'
    for task in TASKS:
        view = ShapesClassification(world, task=task, size=1)
        for name in view.classnames:
            for prompt in view.prompts(name):
                assert set(re.findall(r"[a-z]+", prompt)) <= vocab, prompt


def test_word_tokenizer_built_from_vocabulary_knows_every_caption_token(world: ShapesWorld) -> None:
    tokenizer = pytest.importorskip("clipforge.tokenizer")
    if not hasattr(tokenizer, "WordTokenizer"):
        pytest.skip("no WordTokenizer")
    tok = tokenizer.WordTokenizer.build(vocabulary(punctuation=True))
    unk = tok.unk_token_id
    for i in range(200):
        assert unk not in tok.encode(world.sample(i).caption)


def test_captions_name_shapes_colours_and_use_relations_and_counts(train_samples: list) -> None:
    kinds = {s.attributes["caption_kind"] for s in train_samples}
    assert kinds == {"single", "relation", "list", "count"}
    captions = " ".join(s.caption for s in train_samples)
    for word in ("two", "left of", "above", "big", "little", "hollow", "box"):
        assert word in captions
    for s in train_samples:
        if len(s.objects) == 1:
            assert s.objects[0].colour in s.caption or "violet" in s.caption


def test_stated_positions_are_true_of_rendered_objects(train_samples: list) -> None:
    for s in train_samples:
        centres = [centroid(m) for m in s.masks]
        for obj, (cx, cy) in zip(s.objects, centres):
            dx, dy = cx - 0.5, cy - 0.5
            if obj.position == "centre":
                assert max(abs(dx), abs(dy)) < 0.1, (s.caption, cx, cy)
            elif obj.position in ("left", "right"):
                assert abs(dx) > 0.12 and abs(dx) > abs(dy) and (dx < 0) == (obj.position == "left")
            else:
                assert abs(dy) > 0.12 and abs(dy) > abs(dx) and (dy < 0) == (obj.position == "top")
        for k in s.attributes["stated_positions"]:
            assert any(p in s.caption for p in POSITION_PHRASES[s.objects[k].position]), s.caption
        if len(s.objects) == 1 and not s.attributes["stated_positions"]:
            assert not any(p in s.caption for ps in POSITION_PHRASES.values() for p in ps)
        for a, relation, b in s.attributes["relations"]:
            (ax, ay), (bx, by) = centres[a], centres[b]
            expected = {"left_of": bx - ax, "right_of": ax - bx, "above": by - ay, "below": ay - by}
            assert expected[relation] > 0.1, s.caption


def test_objects_do_not_overlap_much(train_samples: list) -> None:
    for s in train_samples:
        for i in range(len(s.masks)):
            for j in range(i):
                inter = np.minimum(s.masks[i], s.masks[j]).astype(float).sum()
                smaller = min(s.masks[i].astype(float).sum(), s.masks[j].astype(float).sum())
                assert inter / smaller < 0.25


def test_named_colours_are_distinguishable(world: ShapesWorld) -> None:
    names, table = list(COLOURS), np.array(list(COLOURS.values()), dtype=float)
    checked = 0
    for i in range(600):
        objects, _ = world.objects(i)
        obj = objects[0]
        if len(objects) != 1 or obj.style != "filled" or obj.size != "large":
            continue
        s = world.sample(i)
        img = pixels(s.image).astype(float)
        inside = s.masks[0] >= 128
        mean = img[inside].mean(axis=0)
        assert names[int(np.argmin(((table - mean) ** 2).sum(axis=1)))] == obj.colour
        background = img[s.masks[0] == 0].mean(axis=0)
        assert np.linalg.norm(mean - background) > 60  # stands out from the backdrop
        checked += 1
    assert checked >= 30


# -- classification views ----------------------------------------------------------


@pytest.mark.parametrize("task", TASKS)
def test_classification_labels_match_object_attributes(world: ShapesWorld, task: str) -> None:
    view = ShapesClassification(world, task=task, split="test", size=40)
    assert len(view) == 40 and view.templates
    for i in range(len(view)):
        image, label = view[i]
        obj = view.world.sample(i).objects
        assert len(obj) == 1 and isinstance(image, Image.Image)
        obj = obj[0]
        expected = {
            "shape": obj.shape,
            "colour": obj.colour,
            "shape_colour": f"{obj.colour} {obj.shape}",
            "size": obj.size,
            "position": obj.position,
            "style": obj.style,
        }[task]
        assert view.labels[label] == expected
        assert view.target(i) == label


def test_classification_from_params_and_compositional_split() -> None:
    view = ShapesClassification({"seed": 3}, task="shape_colour", split="test_compositional", size=60)
    held = {f"{c} {s}" for s, c in view.world.heldout_pairs}
    assert len(view.classnames) == 64
    assert {view.classnames[t] for t in view.targets} <= held
    assert ShapesClassification(view.world, task="shape").world.split == "test_compositional"


# -- distribution shifts -------------------------------------------------------------


@pytest.mark.parametrize("shift", SHIFTS)
def test_shift_changes_image_but_keeps_labels(world: ShapesWorld, shift: str) -> None:
    for task in ("shape", "colour", "size", "position"):
        clean = ShapesClassification(world, task=task, split="val", size=8)
        shifted = ShapesClassification(world, task=task, split="val", size=8, shift=shift)
        for i in range(len(clean)):
            (a, la), (b, lb) = clean[i], shifted[i]
            assert la == lb
            assert np.abs(pixels(a) - pixels(b)).max() > 20
    if shift == "sketch":
        with pytest.raises(ValueError):
            ShapesClassification(world, task="style", shift="sketch")
    else:
        clean = ShapesClassification(world, task="style", size=8)
        shifted = ShapesClassification(world, task="style", size=8, shift=shift)
        assert clean.targets == shifted.targets


def test_background_shift_uses_unseen_backgrounds(world: ShapesWorld) -> None:
    train_bgs = {world.sample(i).background for i in range(50)}
    shifted_bgs = {world.with_(shift="background").sample(i).background for i in range(50)}
    assert not train_bgs & shifted_bgs


def test_invalid_configuration_is_rejected() -> None:
    with pytest.raises(ValueError):
        ShapesWorld(split="nope")
    with pytest.raises(ValueError):
        ShapesWorld(shift="fog")
    with pytest.raises(ValueError):
        ShapesClassification({}, task="texture")


# -- writers and descriptions ---------------------------------------------------------


def test_write_csv_dataset(world: ShapesWorld, tmp_path: Path) -> None:
    csv_path = write_csv_dataset(world, tmp_path / "csv", n=6)
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6 and {"filepath", "caption", "shapes", "colours"} <= set(rows[0])
    for i, row in enumerate(rows):
        assert row["filepath"] == f"images/{i:06d}.png"
        with Image.open(csv_path.parent / row["filepath"]) as img:
            assert np.array_equal(pixels(img.convert("RGB")), pixels(world.sample(i).image))
        assert row["caption"] == world.sample(i).caption
        assert row["shapes"].split(";")[0] == world.sample(i).objects[0].shape


def test_write_webdataset(world: ShapesWorld, tmp_path: Path) -> None:
    shards = write_webdataset(world, tmp_path / "wds", n=7, shard_size=3)
    assert [p.name for p in shards] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    seen = []
    for shard in shards:
        with tarfile.open(shard) as tar:
            names = tar.getnames()
            for key in sorted({n.split(".")[0] for n in names}):
                assert [f"{key}.png", f"{key}.txt", f"{key}.json"] == [n for n in names if n.startswith(key + ".")]
                image = Image.open(io.BytesIO(tar.extractfile(f"{key}.png").read()))
                text = tar.extractfile(f"{key}.txt").read().decode()
                meta = json.loads(tar.extractfile(f"{key}.json").read())
                assert image.size == (64, 64) and text == meta["caption"] == world.sample(int(key)).caption
                assert meta["objects"][0]["shape"] in SHAPES
                seen.append(int(key))
    assert seen == list(range(7))
    again = write_webdataset(world, tmp_path / "wds2", n=7, shard_size=3)
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(shards, again))  # reproducible bytes


def test_describe_mentions_the_world(world: ShapesWorld) -> None:
    text = world.describe()
    assert "shapes (8)" in text and "colours (8)" in text and "held-out" in text
    assert all(p in text for p in POSITIONS)
