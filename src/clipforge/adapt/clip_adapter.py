"""CLIP-Adapter (METHODS §8): a residual bottleneck MLP on the frozen image feature.

`g' = ρ·ReLU(W2·ReLU(W1·g)) + (1 − ρ)·g` (no biases, reduction 4, ρ = 0.2), then
`logits = s·normalize(g')·W_textᵀ`; trained with cross-entropy on augmented-view features.
Schedule: the CoOp trainer's defaults it was built on (SGD 0.002, batch 32, cosine), [assumed].
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from .base import Adapter
from .training import Schedule


class ClipAdapter(Adapter):
    method = "clip-adapter"
    uses_views = True

    @dataclasses.dataclass
    class Config(Adapter.Config):
        reduction: int = 4
        ratio: float = 0.2
        optimizer: str = "sgd"
        lr: float = 0.002
        epochs: int = 200
        batch_size: int = 32
        seed: int = 0

    config: Config
    text_weights: torch.Tensor  # buffer

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        d = self.backbone.embed_dim
        self.register_buffer("text_weights", self.zeroshot_weights(), persistent=False)
        self.fc = nn.Sequential(
            nn.Linear(d, d // self.config.reduction, bias=False),
            nn.ReLU(),
            nn.Linear(d // self.config.reduction, d, bias=False),
            nn.ReLU(),
        )
        self.scale = self.backbone.logit_scale

    def _fit(self, train, val) -> None:
        train.ensure(self.backbone, features=train.views is None)
        cfg = self.config
        torch.manual_seed(cfg.seed)
        for layer in self.fc:
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()
        gen = torch.Generator().manual_seed(cfg.seed)
        feats: dict[int, torch.Tensor] = {}

        def step_loss(idx: torch.Tensor, epoch: int) -> torch.Tensor:
            if epoch not in feats:
                feats.clear()
                feats[epoch] = train.view_features(epoch, gen).float()
            return F.cross_entropy(self.logits(feats[epoch][idx]), train.labels[idx])

        sched = Schedule(cfg.optimizer, cfg.lr, cfg.epochs, cfg.batch_size)
        self._train_loop(self.fc.parameters(), len(train), step_loss, sched, cfg.seed)

    def adapt_features(self, features: torch.Tensor) -> torch.Tensor:
        g = features.float()
        return self.config.ratio * self.fc(g) + (1 - self.config.ratio) * g

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.scale * self.normalize(self.adapt_features(inputs)) @ self.text_weights.t()
