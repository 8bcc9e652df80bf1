"""Zero-shot CLIP with prompt-template ensembles (METHODS §1): the training-free baseline."""

from __future__ import annotations

import torch

from .base import Adapter


class ZeroShot(Adapter):
    """`logits = s · normalize(f) · W_textᵀ` with W the template-ensembled class embeddings; `fit` only builds W."""

    method = "zeroshot"
    supports_new_classes = True
    weights: torch.Tensor  # buffer

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.register_buffer("weights", self.zeroshot_weights(), persistent=False)
        self.scale = self.backbone.logit_scale
        self.fitted = True  # nothing to learn

    def _fit(self, train, val) -> None:
        pass

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.scale * self.normalize(inputs) @ self.weights.t()
