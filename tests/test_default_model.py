"""The embedded default model: loads with no path, is what every command uses without --model, and
has really learnt the shapes world (colour zero-shot far above chance)."""

from __future__ import annotations

import json

import torch

import clipforge
from clipforge.api import DEFAULT_MODEL_DIR
from clipforge.data.shapes import ShapesClassification, ShapesWorld
from clipforge.zeroshot import ZeroShotClassifier


def test_default_model_loads_and_knows_colours():
    model, preprocess, tokenizer = clipforge.load(device="cpu")
    assert model.config.tokenizer["kind"] == "words"
    assert (DEFAULT_MODEL_DIR / "model.safetensors").stat().st_size < 20 * 2**20
    assert json.loads((DEFAULT_MODEL_DIR / "train_config.json").read_text())["seed"] == 0
    ds = ShapesClassification(ShapesWorld(seed=5), task="colour", split="test", size=64)
    images, labels = zip(*(ds[i] for i in range(len(ds))))
    clf = ZeroShotClassifier.build(model, tokenizer, ds.classnames, list(ds.templates))
    with torch.no_grad():
        feats = model.encode_image(torch.stack([preprocess(im) for im in images]))
    accuracy = (clf.logits(feats).argmax(-1) == torch.tensor(labels)).float().mean().item()
    assert accuracy > 0.8  # chance is 1/8
    assert clipforge.get_tokenizer()("a red circle.").shape == (1, model.config.text.context_length)
