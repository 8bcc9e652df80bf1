"""Evaluation datasets: folders, manifests, the JSON registry, the shapes world and digits."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from clipforge.evaluate import (
    DigitsSource,
    FolderSource,
    ManifestSource,
    ShapesSource,
    resolve_dataset,
    stratified_split,
)
from clipforge.evaluate.builtin import parse_spec


def _png(path, colour=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 10), colour).save(path)


@pytest.fixture()
def folder(tmp_path):
    root = tmp_path / "pets"
    for cls, n in (("cat", 3), ("hot_dog", 2)):
        for i in range(n):
            _png(root / cls / f"{i}.png")
    return root


def test_folder_classnames_from_folder_names(folder):
    src = resolve_dataset(str(folder))
    assert isinstance(src, FolderSource)
    assert src.classnames == ["cat", "hot dog"] and src.splits == ("all",)
    ds = src.load()
    assert len(ds) == 5 and ds.labels.tolist() == [0, 0, 0, 1, 1]
    assert ds.images.load(4).size == (12, 10)
    assert ds.split == "all" and not ds.has_captions


def test_folder_with_split_dirs_and_fingerprint_changes_with_content(tmp_path):
    root = tmp_path / "d"
    for split in ("train", "test"):
        for cls in ("a", "b"):
            _png(root / split / cls / "x.png")
    src = FolderSource(root, classnames={"a": "apple", "b": "banana"})
    assert src.splits == ("test", "train") and src.default_split() == "test"
    before = src.load("test").fingerprint
    _png(root / "test" / "a" / "y.png")
    assert src.load("test").fingerprint != before
    with pytest.raises(ValueError, match="no split 'val'"):
        src.load("val")


def test_manifest_csv_labels_and_captions(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        _png(tmp_path / "img" / name)
    (tmp_path / "m.csv").write_text(
        "filepath,label,caption\n"
        "img/a.png,red_thing,a red square\n"
        "img/b.png,blue thing,a blue square\n"
        "img/a.png,red_thing,another red square\n"
        "img/c.png,blue thing,blue again\n"
    )
    src = resolve_dataset(tmp_path / "m.csv")
    assert isinstance(src, ManifestSource)
    assert src.classnames == ["blue thing", "red thing"]
    ds = src.load()
    assert len(ds) == 3 and ds.labels.tolist() == [1, 0, 0]
    assert ds.captions == ["a red square", "another red square", "a blue square", "blue again"]
    assert ds.caption_image.tolist() == [0, 0, 1, 2]
    sub = ds.subset([2, 0])
    assert sub.captions == ["a red square", "another red square", "blue again"]
    assert sub.caption_image.tolist() == [1, 1, 0] and sub.labels.tolist() == [0, 1]


def test_manifest_jsonl_caption_lists_and_split_column(tmp_path):
    for name in ("a.png", "b.png"):
        _png(tmp_path / name)
    rows = [
        {"image": "a.png", "captions": ["one", "two"], "split": "test"},
        {"image": "b.png", "captions": "three", "split": "train"},
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    src = ManifestSource(tmp_path / "m.jsonl")
    assert src.classnames is None and set(src.splits) == {"test", "train"}
    ds = src.load("test")
    assert ds.captions == ["one", "two"] and ds.caption_image.tolist() == [0, 0] and ds.labels is None


def test_manifest_errors_name_the_file_and_field(tmp_path):
    (tmp_path / "m.csv").write_text("filepath,label\nx.png,dog\n")
    with pytest.raises(ValueError, match=r"m\.csv.*'label' value 'dog'"):
        ManifestSource(tmp_path / "m.csv", classnames=["cat"])
    (tmp_path / "n.csv").write_text("filepath,whatever\nx.png,1\n")
    with pytest.raises(ValueError, match=r"n\.csv: needs a label column"):
        ManifestSource(tmp_path / "n.csv")
    with pytest.raises(ValueError, match=r"no caption column 'text'"):
        ManifestSource(tmp_path / "m.csv", caption_column="text")
    (tmp_path / "bad.jsonl").write_text('{"image": "a.png", "label": "x"}\n{oops\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2"):
        ManifestSource(tmp_path / "bad.jsonl")


def test_registry_json(folder, tmp_path):
    entry = {
        "name": "pets",
        "type": "folder",
        "path": "pets",
        "classnames": ["kitty", "sausage"],
        "templates": ["a photo of a {}."],
    }
    reg = tmp_path / "pets.json"
    reg.write_text(json.dumps(entry))
    src = resolve_dataset(str(reg))
    assert src.name == "pets" and src.classnames == ["kitty", "sausage"]
    assert src.templates == ["a photo of a {}."]
    assert src.load().classnames == ["kitty", "sausage"]
    reg.write_text(json.dumps({**entry, "colour": 1}))
    with pytest.raises(ValueError, match=r"pets\.json: unknown field"):
        resolve_dataset(reg)
    reg.write_text(json.dumps({**entry, "type": "zip"}))
    with pytest.raises(ValueError, match="'type' must be"):
        resolve_dataset(reg)
    reg.write_text(json.dumps({**entry, "classnames": ["only one"]}))
    with pytest.raises(ValueError, match="1 classnames for 2 class folders"):
        resolve_dataset(reg)


def test_unknown_dataset_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="not a registered dataset"):
        resolve_dataset("no-such-thing")
    with pytest.raises(ValueError, match="shapes task must be one of"):
        resolve_dataset("shapes:weight")
    with pytest.raises(ValueError, match="unknown option"):
        resolve_dataset("shapes:colour?colour=red")


def test_shapes_specs():
    assert parse_spec("shapes:colour:val@blur?seed=3&n=7") == (
        ["shapes", "colour", "val"],
        "blur",
        {"seed": "3", "n": "7"},
    )
    src = resolve_dataset("shapes:shape_colour:test_compositional@noise?seed=2&n=12&image_size=32")
    assert isinstance(src, ShapesSource) and len(src.classnames) == 64
    assert src.default_split() == "test_compositional" and src.default_shift() == "noise"
    ds = src.load(src.default_split(), src.default_shift())
    assert len(ds) == 12 and ds.images.load(0).size == (32, 32) and ds.shift == "noise"
    assert ("compositional", "test_compositional", None) in src.robustness_variants()
    assert "sketch" not in resolve_dataset("shapes:style").shifts


def test_shapes_labels_match_the_world_and_captions_are_several_per_image():
    src = resolve_dataset("shapes:colour?n=10")
    ds = src.load("test")
    from clipforge.data.shapes import ShapesClassification

    view = ShapesClassification(task="colour", split="test", size=10)
    assert ds.labels.tolist() == view.targets
    assert ds.captions[0] == view.world.sample(0).caption
    scenes = resolve_dataset("shapes?n=5").load()  # bare "shapes": multi-object scenes, 2 captions each
    assert scenes.labels is None and len(scenes.captions) == 10
    assert scenes.caption_image.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert scenes.captions[0] != scenes.captions[1]


def test_digits():
    src = resolve_dataset("digits")
    assert isinstance(src, DigitsSource) and src.classnames[:3] == ["zero", "one", "two"]
    sizes = {s: len(src.load(s)) for s in src.splits}
    assert sum(sizes.values()) == 1797 and sizes["train"] > sizes["test"]
    img = src.load("test").images.load(0)
    assert img.mode == "RGB" and img.size == (64, 64)
    assert np.asarray(img).min() < 60 and np.asarray(img).max() > 240  # dark ink on white
    assert resolve_dataset("digits:numerals").classnames == [str(i) for i in range(10)]
    assert len(src.load("test", max_samples=30)) == 30


def test_stratified_split_keeps_class_proportions():
    labels = np.repeat(np.arange(3), [10, 20, 30])
    parts = stratified_split(labels, (0.6, 0.2, 0.2), seed=1)
    assert sum(len(p) for p in parts) == 60 and len(np.unique(np.concatenate(parts))) == 60
    assert np.bincount(labels[parts[0]]).tolist() == [6, 12, 18]
