"""Evaluation protocols of the few-shot CLIP papers: k-shot splits over seeds, base-to-novel, accuracy.

* Few-shot (CoOp/Tip-Adapter): k labelled images per class drawn from the train split with a seed;
  hyperparameters that need validation data see min(k, 4) images per class of the val split (the
  CLIP linear-probe protocol as re-implemented in CoOp); accuracy on the full test split.
* Base-to-novel (CoCoOp/MaPLe): the first ⌈C/2⌉ classes are "base", the rest "novel"; train on
  base-class shots with base class names; test base images against base names and novel images
  against novel names; report the harmonic mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from ..data.splits import stratified_split
from ..probe import sample_shots
from .base import Adapter, Backbone
from .data import FeatureCache, FewShotData
from .registry import get_method


def accuracy_of(logits: torch.Tensor, labels: torch.Tensor) -> float:
    if len(labels) == 0:
        raise ValueError("accuracy of an empty set")
    return float((logits.argmax(-1).cpu() == labels.cpu()).float().mean())


def harmonic_mean(base: float, novel: float) -> float:
    return 0.0 if base + novel == 0 else 2 * base * novel / (base + novel)


def base_novel_classes(num_classes: int) -> tuple[list[int], list[int]]:
    """(base, novel) class indices: the first ⌈C/2⌉ classes are base, as in CoCoOp's split."""
    cut = math.ceil(num_classes / 2)
    return list(range(cut)), list(range(cut, num_classes))


def shots(data: FewShotData, k: int, seed: int) -> FewShotData:
    """k images per class (all of a class when it has fewer), drawn with `seed`."""

    return data.subset(sample_shots(data.labels.numpy(), k, seed))


@torch.no_grad()
def predict(adapter: Adapter, data: FewShotData, batch_size: int = 256) -> torch.Tensor:
    """Logits [N, C] on a data set: cached backbone features when the adapter takes them, else pixels."""
    if adapter.input == "features" and (data.features is not None or data.images is not None):
        features = data.ensure(adapter.backbone, features=True).computed("features")
        return torch.cat([adapter.logits(features[i : i + batch_size]) for i in range(0, len(data), batch_size)])
    pixels = data.ensure(adapter.backbone, pixels=True).computed("pixels")
    starts = tqdm(range(0, len(data), batch_size), desc="testing", unit="batch", disable=not adapter.backbone.progress)
    out = [adapter.logits(adapter.encode(pixels[i : i + batch_size])) for i in starts]
    return torch.cat(out) if out else torch.zeros(0, adapter.num_classes)


def score(adapter: Adapter, data: FewShotData) -> float:
    """Top-1 accuracy of `adapter` on `data`."""
    return accuracy_of(predict(adapter, data), data.labels)


@dataclass
class Splits:
    """Train pool, validation pool and test set of one classification dataset, with class names and templates."""

    classnames: list[str]
    templates: list[str]
    train: FewShotData
    val: FewShotData
    test: FewShotData
    name: str = ""


def dataset_splits(source: Any, max_samples: int | None = None, seed: int = 0) -> Splits:
    """Train/val/test `FewShotData` of an evaluation `DatasetSource` (val carved from train if missing)."""

    def wrap(ds) -> FewShotData:
        if not ds.has_labels:
            raise ValueError(f"{ds.title}: adaptation needs class labels")
        return FewShotData(ds.labels, images=ds.images, key=ds.fingerprint)

    splits = source.splits
    if "train" in splits:
        train = source.load("train", max_samples=max_samples, seed=seed)
        test = source.load(source.default_split(), source.default_shift(), max_samples, seed)
        if "val" in splits:
            val = source.load("val", max_samples=max_samples, seed=seed)
        else:
            tr, va = stratified_split(train.labels, (0.8, 0.2), seed)
            train, val = train.subset(tr), train.subset(va)
    else:
        full = source.load(splits[0], max_samples=max_samples, seed=seed)
        tr, va, te = stratified_split(full.labels, (0.6, 0.2, 0.2), seed)
        train, val, test = full.subset(tr), full.subset(va), full.subset(te)
    templates = list(source.templates or ["a photo of a {}."])
    return Splits(list(source.classnames), templates, wrap(train), wrap(val), wrap(test), source.name)


def _prepared(
    method: str,
    backbone: Backbone,
    splits: Splits,
    cache: FeatureCache | None,
    views: int,
    augment: dict[str, Any] | None = None,
):
    """(method class, train pool with features (+ augmented views if the method uses them), val pool).

    `augment`: the views' augmentation (`scale`, `hflip`; see `FewShotData.ensure`)."""
    cls = get_method(method)
    views = views if cls.uses_views else 0
    pool = splits.train.ensure(backbone, features=True, views=views, cache=cache, **(augment or {}))
    return cls, pool, splits.val.ensure(backbone, features=True, cache=cache)


def few_shot_run(
    method: str,
    backbone: Backbone,
    splits: Splits,
    k: int,
    seed: int,
    hparams: dict[str, Any] | None = None,
    cache: FeatureCache | None = None,
    views: int = 10,
    augment: dict[str, Any] | None = None,
    test: bool = True,
) -> tuple[Adapter, float | None]:
    """Fit `method` on k shots (seed) with min(k, 4)-shot validation; returns (adapter, test accuracy or
    None without `test`)."""
    cls, pool, val_pool = _prepared(method, backbone, splits, cache, views, augment)
    train, val = shots(pool, k, seed), shots(val_pool, min(k, 4), seed)
    adapter = cls(backbone, splits.classnames, splits.templates, **(hparams or {})).fit(train, val)
    if not test:
        return adapter, None
    splits.test.ensure(backbone, features=True, cache=cache)
    return adapter, score(adapter, splits.test)


def require_new_classes(cls: type[Adapter]) -> None:
    """Refuse a closed-set method for base-to-novel (callers check before any feature work)."""
    if not cls.supports_new_classes:
        raise ValueError(f"{cls.method} cannot classify classes it was not trained on (no base-to-novel)")


def base_to_novel_run(
    method: str,
    backbone: Backbone,
    splits: Splits,
    k: int,
    seed: int,
    hparams: dict[str, Any] | None = None,
    cache: FeatureCache | None = None,
    views: int = 10,
    augment: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Train on base classes (k shots), test on base and novel classes; {base, novel, hm}."""
    cls, pool, val = _prepared(method, backbone, splits, cache, views, augment)
    require_new_classes(cls)
    base, novel = base_novel_classes(len(splits.classnames))
    names = splits.classnames
    adapter = cls(backbone, [names[c] for c in base], splits.templates, **(hparams or {}))
    if not adapter.open_vocabulary:  # checked before training: CoOp's depends on its `csc` hyperparameter
        raise ValueError(f"{method} with {hparams} cannot classify classes it was not trained on (no base-to-novel)")
    to_base = {c: i for i, c in enumerate(base)}
    to_novel = {c: i for i, c in enumerate(novel)}
    train_b, val_b = shots(pool.relabel(to_base), k, seed), shots(val.relabel(to_base), min(k, 4), seed)
    adapter.fit(train_b, val_b)
    novel_adapter = adapter.for_classes([names[c] for c in novel])
    b = score(adapter, splits.test.relabel(to_base))
    n = score(novel_adapter, splits.test.relabel(to_novel))
    return {"base": b, "novel": n, "hm": harmonic_mean(b, n)}
