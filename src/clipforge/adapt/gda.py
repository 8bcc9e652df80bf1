"""Gaussian discriminant analysis on CLIP features, ensembled with zero-shot logits (METHODS §11, Wang et al. 2024).

Class means μ_k and one shared, shrinkage-regularised precision estimated from the L2-normalised
features of the few-shot set (every augmented view counts as a sample):
`P = d · pinv((N−1)·S + tr(S)·I)` with S the sample covariance of the class-centred features,
`W_k = P μ_k`, `b_k = ln(1/C) − ½ μ_kᵀ P μ_k`. Prediction: `s·f·W_textᵀ + α·(f·Wᵀ + b)`, with α
chosen on validation data from {1e-4, …, 1e2} (1.0 without validation data).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from .base import Adapter

ALPHA_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


def gda_fit(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(W [C, d], b [C]) of shared-covariance GDA with uniform priors, on the given (normalised) features."""
    x = features.double()
    counts = torch.bincount(labels, minlength=num_classes)
    if bool((counts == 0).any()):
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"gda: every class needs at least one training sample; classes {missing} have none")
    means = torch.zeros(num_classes, x.shape[1], dtype=x.dtype).index_add_(0, labels, x) / counts[:, None]
    centred = x - means[labels]
    d = x.shape[1]
    cov = torch.cov(centred.t())
    precision = d * torch.linalg.pinv((len(x) - 1) * cov + cov.trace() * torch.eye(d, dtype=x.dtype))
    weight = means @ precision
    bias = math.log(1.0 / num_classes) - 0.5 * (weight * means).sum(-1)
    return weight.float(), bias.float()


class GDA(Adapter):
    method = "gda"
    uses_views = True

    @dataclasses.dataclass
    class Config(Adapter.Config):
        alpha: float | None = None  # None: choose on validation data (1.0 without)
        augment_views: int = 10

    config: Config
    text_weights: torch.Tensor  # buffers
    weight: torch.Tensor
    bias: torch.Tensor

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        d = self.backbone.embed_dim
        self.register_buffer("text_weights", self.zeroshot_weights(), persistent=False)
        self.register_buffer("weight", torch.zeros(self.num_classes, d))
        self.register_buffer("bias", torch.zeros(self.num_classes))
        self.alpha = 1.0 if self.config.alpha is None else float(self.config.alpha)
        self.scale = self.backbone.logit_scale

    def _fit(self, train, val) -> None:
        if train.views is None and train.images is not None and self.config.augment_views > 0:
            train.ensure(self.backbone, views=self.config.augment_views)
        train.ensure(self.backbone, features=train.views is None)
        if train.views is not None:
            feats, labels = train.views.reshape(-1, train.views.shape[-1]), train.labels.repeat(len(train.views))
        else:
            feats, labels = train.features, train.labels
        self.weight, self.bias = gda_fit(self.normalize(feats), labels, self.num_classes)
        if self.config.alpha is None and val is not None:
            val.ensure(self.backbone, features=True)
            f = self.normalize(val.features)
            zs, gda = self.scale * f @ self.text_weights.t(), f @ self.weight.t() + self.bias
            accs = [float(((zs + a * gda).argmax(-1) == val.labels).float().mean()) for a in ALPHA_GRID]
            self.alpha = ALPHA_GRID[max(range(len(accs)), key=lambda i: accs[i])]

    def gda_logits(self, f: torch.Tensor) -> torch.Tensor:
        return f @ self.weight.t() + self.bias

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        f = self.normalize(inputs)
        return self.scale * f @ self.text_weights.t() + self.alpha * self.gda_logits(f)

    def _extra_state(self) -> dict:
        return {"alpha": self.alpha}

    def _set_extra_state(self, extra: dict) -> None:
        self.alpha = float(extra.get("alpha", self.alpha))
