"""Few-shot adaptation of CLIP models: the methods of the literature behind one interface.

    from clipforge import adapt
    backbone = adapt.Backbone.load("runs/default/final")
    train = adapt.FewShotData(labels, images=images)            # or features=..., views=...
    clf = adapt.create("tip-adapter", backbone, classnames, templates).fit(train, val)
    logits = clf.predict(pixels)                                # or clf.logits(features)
    clf.save("my-adapter");  adapted = adapt.load_adapted("my-adapter")

Methods (`adapt.list_methods()`): zeroshot, linear-probe, tip-adapter, tip-adapter-f, gda,
clip-adapter, coop, cocoop, maple, tpt, finetune, lora, wise-ft, soup. Protocols (few-shot
splits, base-to-novel, accuracy) live in `adapt.protocols`. See docs/adaptation.md.
"""

from typing import Any, Sequence

from .base import Adapter, Backbone, load_adapter
from .data import FeatureCache, FewShotData, compute_features, compute_views
from .registry import get_method, list_methods
from .surface import AdaptedEncoder, AdaptedModel, load_adapted


def create(
    method: str, backbone: Backbone, classnames: Sequence[str], templates: Any = ("a photo of a {}.",), **hparams: Any
) -> Adapter:
    """An unfitted adapter of the named method (hyperparameters as keyword arguments)."""
    return get_method(method)(backbone, classnames, templates, **hparams)


__all__ = [
    "AdaptedModel",
    "Adapter",
    "AdaptedEncoder",
    "Backbone",
    "FeatureCache",
    "FewShotData",
    "compute_features",
    "compute_views",
    "create",
    "get_method",
    "list_methods",
    "load_adapted",
    "load_adapter",
]
