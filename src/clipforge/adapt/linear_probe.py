"""Linear probe (METHODS §1, CLIP protocol): L2-regularised logistic regression on frozen, un-normalised features.

C is searched on the validation few-shot set with the evaluation package's coarse grid + log-space
bisection (`clipforge.evaluate.search_C`); without a validation set C falls back to CLIP's README
value 0.316. The fitted scikit-learn model is stored as a plain linear layer.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..probe import search_C
from .base import Adapter

DEFAULT_C = 0.316


class LinearProbe(Adapter):
    method = "linear-probe"
    requires = ("sklearn", "threadpoolctl")

    @dataclasses.dataclass
    class Config(Adapter.Config):
        C: float | None = None  # None: search on val (or DEFAULT_C without val)
        max_iter: int = 1000
        seed: int = 0

    config: Config
    weight: torch.Tensor  # buffers
    bias: torch.Tensor

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.register_buffer("weight", torch.zeros(self.num_classes, self.backbone.embed_dim))
        self.register_buffer("bias", torch.zeros(self.num_classes))
        self.chosen_C: float | None = None

    def _fit(self, train, val) -> None:
        # optional (`eval` extra): only the linear probe needs scikit-learn
        from sklearn.linear_model import LogisticRegression


        train.ensure(self.backbone, features=True)
        x, y = train.features.numpy().astype(np.float32), train.labels.numpy()
        C = self.config.C
        if C is None and val is not None and len(np.unique(y)) > 1:
            val.ensure(self.backbone, features=True)
            C, _ = search_C((x, y), (val.features.numpy().astype(np.float32), val.labels.numpy()))
        C = DEFAULT_C if C is None else float(C)
        clf = LogisticRegression(C=C, max_iter=self.config.max_iter, random_state=self.config.seed)
        clf.fit(x, y)
        weight = torch.zeros(self.num_classes, x.shape[1])
        bias = torch.full((self.num_classes,), -1e4)  # classes absent from training are never predicted
        coef, intercept = torch.from_numpy(clf.coef_).float(), torch.from_numpy(clf.intercept_).float()
        classes = torch.from_numpy(clf.classes_).long()
        if len(classes) == 2:  # scikit-learn stores one row: logit difference of class 1 over class 0
            weight[classes[1]], bias[classes[1]], bias[classes[0]] = coef[0], intercept[0], 0.0
        else:
            weight[classes], bias[classes] = coef, intercept
        self.weight, self.bias, self.chosen_C = weight, bias, C

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs.float() @ self.weight.t() + self.bias

    def _extra_state(self) -> dict:
        return {"C": self.chosen_C}

    def _set_extra_state(self, extra: dict) -> None:
        self.chosen_C = extra.get("C")
