"""The data layer's anomaly sets (MVTec AD layout) and caption pools."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from clipforge.data.anomaly import AnomalySet, categories
from clipforge.data.captions import read_captions


def _png(path, value, size=(12, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)


def _mask(path, box, size=(12, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros((size[1], size[0]), np.uint8)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = 255
    Image.fromarray(m).save(path)


@pytest.fixture
def mvtec(tmp_path):
    root = tmp_path / "mvtec"
    cat = root / "widget"
    for i in range(3):
        _png(cat / "train" / "good" / f"{i:03d}.png", 100 + i)
    _png(cat / "train" / "scratch" / "stray.png", 1)  # not part of the layout: train is normal only
    for i in range(2):
        _png(cat / "test" / "good" / f"{i:03d}.png", 120 + i)
    _png(cat / "test" / "scratch" / "000.png", 200)
    _mask(cat / "ground_truth" / "scratch" / "000_mask.png", (2, 3, 6, 5))
    _png(cat / "test" / "scratch" / "001.png", 201)  # no mask file
    _png(cat / "test" / "hole" / "000.png", 210)
    _mask(cat / "ground_truth" / "hole" / "000_mask.png", (0, 0, 1, 1))
    (root / "notes").mkdir()
    return root


def test_mvtec_layout_is_read_with_labels_defects_and_masks(mvtec):
    ds = AnomalySet(mvtec)  # one category: chosen without naming it
    assert ds.category == "widget" and categories(mvtec) == ["widget"]
    assert len(ds.split("train")) == 3 and not any(item.anomalous for item in ds.split("train"))
    test = ds.split("test")
    assert [(i.defect, i.path.name) for i in test] == [
        ("good", "000.png"), ("good", "001.png"), ("hole", "000.png"), ("scratch", "000.png"), ("scratch", "001.png")
    ]
    assert ds.labels("test").tolist() == [0, 0, 1, 1, 1] and ds.defects == ["hole", "scratch"]
    assert [p.name for p in ds.missing_masks] == ["001.png"]
    scratch = ds.mask("test", 3)
    assert scratch.shape == (10, 12) and scratch.sum() == 4 * 2 and scratch[3:5, 2:6].all()
    assert ds.mask("test", 0).shape == (10, 12) and not ds.mask("test", 0).any()  # normal: all False
    assert ds.mask("test", 4) is None  # anomalous without a mask: left out of pixel metrics
    assert np.asarray(ds.images("test").load(2))[0, 0, 0] == 210
    assert AnomalySet(mvtec / "widget").split("test") == test  # a category folder itself


def test_mvtec_layout_errors_name_the_folder(mvtec, tmp_path):
    _png(mvtec / "gadget" / "train" / "good" / "0.png", 5)
    (mvtec / "gadget" / "test").mkdir()
    with pytest.raises(ValueError, match=r"holds 2 categories \(gadget, widget\); name one"):
        AnomalySet(mvtec)
    with pytest.raises(ValueError, match="no category 'bolt'"):
        AnomalySet(mvtec, "bolt")
    with pytest.raises(ValueError, match=r"gadget/test: no images"):
        AnomalySet(mvtec, "gadget").split("test")
    with pytest.raises(FileNotFoundError, match="MVTec AD layout"):
        AnomalySet(tmp_path / "nowhere")


def test_caption_pools_from_text_and_manifests(tmp_path):
    txt = tmp_path / "pool.txt"
    txt.write_text("a red circle\n\n  a blue square  \na red circle\n", encoding="utf-8")
    pool = read_captions(txt)
    assert pool.captions == ("a red circle", "a blue square", "a red circle") and pool.blank == 1
    unique = read_captions(txt, unique=True)
    assert unique.captions == ("a red circle", "a blue square") and unique.repeated == 1
    csv_path = tmp_path / "pool.csv"
    csv_path.write_text("id,text\n1,one\n2,\n3,three\n", encoding="utf-8")
    assert read_captions(csv_path).captions == ("one", "three") and read_captions(csv_path).blank == 1
    jsonl = tmp_path / "pool.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in [{"captions": ["x", "y"]}, {"captions": "z"}]), encoding="utf-8")
    assert read_captions(jsonl).captions == ("x", "y", "z")
    with pytest.raises(ValueError, match=r"pool\.csv: no caption column 'title'"):
        read_captions(csv_path, column="title")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.txt: not UTF-8"):
        read_captions(bad)
