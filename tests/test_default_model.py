"""The embedded models: the default loads with no path and is what every command uses without
--model, `default-rn` loads by name, and both have really learnt the shapes world (zero-shot far
above chance); the default's text tower is default-rn's, as its TRAINING.md says."""

from __future__ import annotations

import json

import pytest
import torch

import clipforge
from clipforge.api import DEFAULT_MODEL_DIR, EMBEDDED_MODELS
from clipforge.checkpoints import CheckpointError
from clipforge.data.shapes import ShapesClassification, ShapesWorld
from clipforge.zeroshot import ZeroShotClassifier


def test_default_model_loads_and_knows_colours():
    model, preprocess, tokenizer = clipforge.load(device="cpu")
    assert model.config.tokenizer["kind"] == "words"
    assert (DEFAULT_MODEL_DIR / "model.safetensors").stat().st_size < 25 * 2**20
    assert json.loads((DEFAULT_MODEL_DIR / "train_config.json").read_text())["seed"] == 0
    ds = ShapesClassification(ShapesWorld(seed=5), task="colour", split="test", size=64)
    images, labels = zip(*(ds[i] for i in range(len(ds))))
    clf = ZeroShotClassifier.build(model, tokenizer, ds.classnames, list(ds.templates))
    with torch.no_grad():
        feats = model.encode_image(torch.stack([preprocess(im) for im in images]))
    accuracy = (clf.logits(feats).argmax(-1) == torch.tensor(labels)).float().mean().item()
    assert accuracy > 0.8  # chance is 1/8
    assert clipforge.get_tokenizer()("a red circle.").shape == (1, model.config.text.context_length)


def _zero_shot(name: str | None, task: str, n: int = 200) -> float:
    model, preprocess, tokenizer = clipforge.load(name, device="cpu")
    ds = ShapesClassification(ShapesWorld(seed=7), task=task, split="test", size=n)
    images, labels = zip(*(ds[i] for i in range(len(ds))))
    clf = ZeroShotClassifier.build(model, tokenizer, ds.classnames, list(ds.templates))
    with torch.no_grad():
        feats = model.encode_image(torch.stack([preprocess(im) for im in images]))
    return (clf.logits(feats).argmax(-1) == torch.tensor(labels)).float().mean().item()


def test_both_embedded_models_know_shapes_and_share_the_text_tower():
    assert _zero_shot(None, "shape") > 0.5 and _zero_shot("default-rn", "shape") > 0.5  # chance is 1/8
    vit, _, _ = clipforge.load(device="cpu", backend="none")
    rn, _, _ = clipforge.load("default-rn", device="cpu", backend="none")
    assert vit.config.vision.kind == "vit" and rn.config.vision.kind == "resnet"
    theirs = rn.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in vit.state_dict().items() if k.startswith("text."))
    assert json.loads((DEFAULT_MODEL_DIR / "train_config.json").read_text())["lock_text"] is True
    stage2 = json.loads((DEFAULT_MODEL_DIR / "train_config_stage3.json").read_text())  # continued from stage 2
    assert stage2["lock_text"] is True and stage2["init"] == "src/clipforge/assets/default-model"
    assert json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())["train_config"] == stage2


def test_embedded_names_resolve_unless_a_local_path_has_the_name(tmp_path, monkeypatch):
    assert clipforge.api.resolve_model_path("default-rn") == EMBEDDED_MODELS["default-rn"]
    clipforge.save(clipforge.create_model("tiny"), tmp_path / "default-rn")
    monkeypatch.chdir(tmp_path)
    assert clipforge.load("default-rn", device="cpu")[0].config.vision.image_size == 32  # the local folder
    with pytest.raises(CheckpointError, match="default-vit: no such file"):
        clipforge.load("default-vit", device="cpu")
