"""Validation during training: hooks that score the model being trained and return named metrics.

A hook is any callable `(model, preprocess, tokenizer) -> {metric: value}`. The trainer builds one
per entry of `TrainConfig.val_datasets` (any spec `clipforge.evaluate.resolve_dataset` resolves:
zero-shot top-1 for labelled data, retrieval recall@1 for captioned data, both when it has both),
or the shapes-world hook when that list is empty and `val_data` is "shapes".
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Protocol

import torch

from ..data.embedding import embed_images, embed_texts
from ..data.images import ListImages
from ..data.shapes import ShapesClassification, ShapesWorld
from ..data.spec import source_name
from ..evaluate import EvalDataset, Evaluator, resolve_dataset
from ..zeroshot import UnknownWordsWarning, ZeroShotClassifier
from .config import TrainConfig


class ValidationHook(Protocol):
    """Scores a model; metric names should be unique across the hooks of a run."""

    def __call__(self, model: Any, preprocess: Callable, tokenizer: Callable) -> dict[str, float]: ...


def _image_features(model, preprocess, images) -> torch.Tensor:
    """L2-normalised features [N, d] of in-memory images, through the one embedding pipeline."""
    out = embed_images(
        model, preprocess, ListImages(images), batch_size=128, num_workers=0, normalize=True, progress=False
    )
    return torch.from_numpy(out.features)


@torch.no_grad()
def zero_shot_accuracy(
    model, preprocess, tokenizer, task: str, split: str, n: int, seed: int, image_size: int
) -> float:
    """Top-1 zero-shot accuracy of `model` on a shapes classification view; NaN (with an
    `UnknownWordsWarning`) when the tokenizer cannot tell the class names apart, e.g. a vocabulary
    built from captions that never name the shapes world's classes."""
    ds = ShapesClassification(ShapesWorld(seed=seed, image_size=image_size), task=task, split=split, size=n)
    images, labels = zip(*(ds[i] for i in range(len(ds))))
    try:
        clf = ZeroShotClassifier.build(model, tokenizer, ds.classnames, list(ds.templates))
    except ValueError as exc:
        warnings.warn(f"shapes-world {task} validation skipped (NaN): {exc}", UnknownWordsWarning, stacklevel=2)
        return float("nan")
    pred = clf.logits(_image_features(model, preprocess, list(images))).argmax(dim=-1)
    return float((pred.cpu() == torch.tensor(labels)).float().mean())


@torch.no_grad()
def retrieval_recall_at_1(model, preprocess, tokenizer, split: str, n: int, seed: int, image_size: int) -> dict:
    """Image→text and text→image recall@1 over n shapes-world pairs of a split."""
    world = ShapesWorld(seed=seed, image_size=image_size, split=split, size=n)
    samples = [world.sample(i) for i in range(n)]
    img = _image_features(model, preprocess, [s.image for s in samples])
    txt = torch.from_numpy(embed_texts(model, tokenizer, [s.caption for s in samples], normalize=True, progress=False))
    sim = img @ txt.t()
    target = torch.arange(n, device=sim.device)
    return {
        "i2t_r1": float((sim.argmax(dim=1) == target).float().mean()),
        "t2i_r1": float((sim.argmax(dim=0) == target).float().mean()),
    }


def validate_shapes(model, preprocess, tokenizer, n: int, seed: int, split: str = "val") -> dict[str, float]:
    """The shapes-world metrics: shape/colour zero-shot top-1 and retrieval recall@1."""
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


class ShapesValidation:
    """The default hook: `validate_shapes` on the val split of the shapes world."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed = n, seed

    def __call__(self, model: Any, preprocess: Callable, tokenizer: Callable) -> dict[str, float]:
        return validate_shapes(model, preprocess, tokenizer, self.n, self.seed)


class DatasetValidation:
    """Zero-shot and/or retrieval on an evaluation dataset spec, as `clipforge eval` would run them.

    The data (at most `n` images of the source's default split, seeded) is resolved and listed once,
    here, so a bad spec fails before training starts; metrics are `{label}_top1`, `{label}_i2t_r1`,
    `{label}_t2i_r1`.
    """

    def __init__(self, spec: str, n: int, seed: int, label: str | None = None) -> None:
        source = resolve_dataset(spec)
        self.dataset: EvalDataset = source.load(shift=source.default_shift(), max_samples=n, seed=seed)
        self.label = label or source.name
        if not (self.dataset.has_labels or self.dataset.has_captions):
            raise ValueError(f"validation dataset {spec!r} has neither class labels nor captions")

    def __call__(self, model: Any, preprocess: Callable, tokenizer: Callable) -> dict[str, float]:
        evaluator = Evaluator(model, preprocess, tokenizer, cache_dir=None, num_workers=0, progress=False)
        out: dict[str, float] = {}
        if self.dataset.has_labels:
            out[f"{self.label}_top1"] = float(evaluator.zeroshot(self.dataset).summary["top1"])
        if self.dataset.has_captions:
            summary = evaluator.retrieval(self.dataset, ks=(1,)).summary
            out[f"{self.label}_i2t_r1"] = float(summary["i2t_recall@1"])
            out[f"{self.label}_t2i_r1"] = float(summary["t2i_recall@1"])
        return out


def shapes_validation_of_other_data(cfg: TrainConfig) -> str | None:
    """A warning when the default shapes-world validation would judge a run on other data (it measures
    nothing about that data), else None."""
    if cfg.val_datasets or cfg.val_data != "shapes":
        return None
    other = [str(d["path"] if isinstance(d, dict) else d) for d in cfg.data]
    other = [d for d in other if source_name(d) != "shapes"]
    if not other:
        return None
    return (
        f"validating on the shapes world while training on {', '.join(other)}: its scores say nothing "
        "about that data; pass --val-datasets SPEC (e.g. a labelled folder, as clipforge eval takes it) "
        "or --val-data none"
    )


def build_validation_hooks(cfg: TrainConfig) -> list[ValidationHook]:
    """One hook per `val_datasets` spec (labels made unique), else the shapes default, else none."""
    if not cfg.val_datasets:
        return [ShapesValidation(cfg.val_samples, cfg.seed)] if cfg.val_data == "shapes" else []
    hooks: list[ValidationHook] = []
    seen: dict[str, int] = {}
    for spec in cfg.val_datasets:
        hook = DatasetValidation(spec, cfg.val_samples, cfg.seed)
        seen[hook.label] = seen.get(hook.label, 0) + 1
        if seen[hook.label] > 1:
            hook.label = f"{hook.label}#{seen[hook.label]}"
        hooks.append(hook)
    return hooks


@torch.no_grad()
def run_validation(hooks: list[ValidationHook], model: Any, preprocess: Callable, tokenizer: Callable) -> dict:
    """Every hook's metrics, with the model in eval mode meanwhile (its mode is restored)."""
    was_training = model.training
    model.eval()
    try:
        return {k: v for hook in hooks for k, v in hook(model, preprocess, tokenizer).items()}
    finally:
        model.train(was_training)
