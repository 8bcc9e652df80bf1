"""Shared fixtures for the adaptation tests: a tiny random CLIP with a word tokenizer and small shapes data.

(No tests here; the other `test_adapt_*` modules import these helpers.)
"""

from __future__ import annotations

import functools

import torch

import clipforge
from clipforge.adapt import Backbone, FewShotData
from clipforge.data.shapes import ShapesClassification, vocabulary
from clipforge.tokenizer import WordTokenizer
from clipforge.transforms import ImageTransform

CLASSNAMES = ["red", "green", "blue", "yellow"]
TEMPLATES = ["a photo of the {} shape.", "the {} shape."]


@functools.lru_cache(maxsize=None)
def backbone() -> Backbone:
    """tiny preset (32 px ViT, 2+2 layers) with random weights; word tokenizer (eot id 2)."""
    torch.manual_seed(0)
    model = clipforge.create_model("tiny", text={"eot_token_id": 2})
    tok = WordTokenizer(vocabulary(punctuation=True), context_length=16)
    return Backbone(model, ImageTransform(model.config.preprocess), tok)


@functools.lru_cache(maxsize=None)
def _colour_images(split: str, per_class: int) -> tuple[list, list[int]]:
    """`per_class` single-object images of each of the first four colours (rendered once)."""
    view = ShapesClassification({"image_size": 32}, task="colour", split=split, size=400)
    images, labels, counts = [], [], [0] * len(CLASSNAMES)
    for i in range(len(view)):
        y = view.target(i)
        if y < len(CLASSNAMES) and counts[y] < per_class:
            images.append(view.world.sample(i).image)
            labels.append(y)
            counts[y] += 1
        if min(counts) == per_class:
            break
    return images, labels


def data(split: str = "train", per_class: int = 4, views: int = 0, pixels: bool = False) -> FewShotData:
    """A fresh FewShotData (features computed; optionally augmented views and pixels)."""
    images, labels = _colour_images(split, per_class)
    d = FewShotData(torch.tensor(labels), images=list(images))
    return d.ensure(backbone(), features=True, views=views, pixels=pixels)


def one_thread():
    """Tiny models on a shared 2-core machine run fastest on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
