"""Quick validation during training on the shapes world: zero-shot accuracy and retrieval recall@1."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.shapes import ShapesClassification, ShapesWorld
from ..zeroshot import ZeroShotClassifier


@torch.no_grad()
def _image_features(model, preprocess, images, batch_size: int = 128) -> torch.Tensor:
    feats = []
    for i in range(0, len(images), batch_size):
        pixels = torch.stack([preprocess(im) for im in images[i : i + batch_size]]).to(model.device, model.dtype)
        feats.append(model.encode_image(pixels, normalize=True).float())
    return torch.cat(feats)


@torch.no_grad()
def zero_shot_accuracy(
    model, preprocess, tokenizer, task: str, split: str, n: int, seed: int, image_size: int
) -> float:
    """Top-1 zero-shot accuracy of `model` on a shapes classification view."""
    ds = ShapesClassification(ShapesWorld(seed=seed, image_size=image_size), task=task, split=split, size=n)
    images, labels = zip(*(ds[i] for i in range(len(ds))))
    clf = ZeroShotClassifier.build(model, tokenizer, ds.classnames, list(ds.templates))
    pred = clf.logits(_image_features(model, preprocess, list(images))).argmax(dim=-1)
    return float((pred.cpu() == torch.tensor(labels)).float().mean())


@torch.no_grad()
def retrieval_recall_at_1(model, preprocess, tokenizer, split: str, n: int, seed: int, image_size: int) -> dict:
    """Image→text and text→image recall@1 over n shapes-world pairs of a split."""
    world = ShapesWorld(seed=seed, image_size=image_size, split=split, size=n)
    samples = [world.sample(i) for i in range(n)]
    img = _image_features(model, preprocess, [s.image for s in samples])
    tokens = tokenizer([s.caption for s in samples]).to(model.device)
    txt = F.normalize(model.encode_text(tokens).float(), dim=-1)
    sim = img @ txt.t()
    target = torch.arange(n, device=sim.device)
    return {
        "i2t_r1": float((sim.argmax(dim=1) == target).float().mean()),
        "t2i_r1": float((sim.argmax(dim=0) == target).float().mean()),
    }


def validate_shapes(model, preprocess, tokenizer, n: int, seed: int, split: str = "val") -> dict[str, float]:
    """The metrics the trainer logs: shape/colour zero-shot top-1 and retrieval recall@1."""
    was_training = model.training
    model.eval()
    size = model.config.vision.image_size
    out = {
        f"zs_{task}": zero_shot_accuracy(model, preprocess, tokenizer, task, split, n, seed, size)
        for task in ("shape", "colour")
    }
    out.update(retrieval_recall_at_1(model, preprocess, tokenizer, split, min(n, 256), seed, size))
    model.train(was_training)
    return out
