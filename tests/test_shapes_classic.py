"""The `classic` variety reproduces the original shapes world pixel for pixel.

The hashes were computed from the generator before the richer varieties existed (commit 3c92e8e);
the shipped default model was trained on these pixels, so they must never change.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from clipforge.data.shapes import ShapesClassification, ShapesWorld

# sha256(image bytes + caption + per-object coverage masks)[:16]
EXPECTED = {
    ("train", 0, None, 64): {
        0: "efd0ee9d3ae9f912",
        1: "339e1cdc7f29b1f9",
        2: "fc3f89648c2accbc",
        17: "c0e3ae8056d0d840",
        999: "ced85973a49bc068",
    },
    ("val", 0, None, 64): {
        0: "51e2f7cc951b5a82",
        1: "1fb44533e26fea40",
        2: "5b448500c0737da8",
        17: "c7eebf6956938edc",
        999: "ee3d75b31c9450b2",
    },
    ("test", 0, None, 64): {
        0: "f4f90247a448b88b",
        1: "c2c1ad820489cea1",
        2: "a3a2516fb33cf1f4",
        17: "1ba6c5f0915469a6",
        999: "bb7ce530f142fca1",
    },
    ("test_compositional", 0, None, 64): {
        0: "f37592b690977949",
        1: "fb6ac1c6eab8910c",
        2: "aa7a2fc83cb5a72b",
        17: "a859517d2b18483d",
        999: "61fdea9febdfa276",
    },
    ("test", 3, "noise", 64): {0: "f190f99718a537bb", 5: "c294d0b8b6b69ce1"},
    ("test", 3, "blur", 64): {0: "c61cb47102e2f446", 5: "a95b8c45ce6c5d20"},
    ("test", 3, "sketch", 64): {0: "9f274b9fd7088f71", 5: "29b740f7522e69fb"},
    ("test", 3, "background", 64): {0: "c81c340604b0ab51", 5: "3b422fddcd86da78"},
    ("train", 7, None, 32): {0: "ad9f102e19200bc2", 3: "c7656829dbebc9eb"},
}


def fingerprint(sample) -> str:
    digest = hashlib.sha256()
    digest.update(np.asarray(sample.image).tobytes())
    digest.update(sample.caption.encode())
    for mask in sample.masks:
        digest.update(np.ascontiguousarray(mask).tobytes())
    return digest.hexdigest()[:16]


@pytest.mark.parametrize("case", list(EXPECTED), ids=lambda c: "-".join(map(str, c)))
def test_classic_pixels_and_captions_are_unchanged(case) -> None:
    split, seed, shift, image_size = case
    world = ShapesWorld(seed=seed, split=split, shift=shift, image_size=image_size)
    assert {i: fingerprint(world.sample(i)) for i in EXPECTED[case]} == EXPECTED[case]


def test_classic_classification_view_is_unchanged() -> None:
    view = ShapesClassification({"seed": 1}, task="shape", split="val", size=10)
    assert [fingerprint(view.world.sample(i)) for i in (0, 4)] == ["8b0fcfd851535320", "e9c57e425bd6ff25"]
