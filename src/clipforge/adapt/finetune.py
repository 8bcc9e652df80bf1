"""End-to-end fine-tuning of the image encoder with a zero-shot-initialised linear head (WiSE-FT's θ₁).

The model is `head(normalize(visual(x)))` with the head's weight initialised to `s·W_text` (so the
untrained model is exactly zero-shot CLIP) and both trained with cross-entropy on augmented images
(AdamW, linear warm-up, cosine). The text tower is only used to initialise the head.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from .base import Adapter, as_pair
from .data import augment_images, hash_seed, materialize
from .training import Schedule


class FineTune(Adapter):
    method = "finetune"
    input = "encoded"

    @dataclasses.dataclass
    class Config(Adapter.Config):
        lr: float = 1e-4
        epochs: int = 20
        batch_size: int = 32
        weight_decay: float = 0.1
        crop_scale: tuple[float, float] = (0.5, 1.0)
        hflip: bool = True
        seed: int = 0

    config: Config

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.config.crop_scale = as_pair("crop_scale", self.config.crop_scale)
        self.visual = copy.deepcopy(self.backbone.model.visual).requires_grad_(True)
        self.head = nn.Linear(self.backbone.embed_dim, self.num_classes)
        with torch.no_grad():
            self.head.weight.copy_(self.backbone.logit_scale * self.zeroshot_weights())
            self.head.bias.zero_()

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.visual(pixels.to(self.head.weight.device)).float()

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        was = self.training
        self.eval()
        out = [self.image_features(pixels[i : i + batch_size]).cpu() for i in range(0, len(pixels), batch_size)]
        self.train(was)
        return torch.cat(out) if out else torch.zeros(0, self.backbone.embed_dim)

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.normalize(inputs))

    def _fit(self, train, val) -> None:
        cfg = self.config
        images = materialize(train.need_images(self.method))

        def step_loss(idx: torch.Tensor, epoch: int) -> torch.Tensor:
            seeds = [hash_seed(cfg.seed, epoch, int(i)) for i in idx]
            pixels = augment_images(self.backbone, images, idx.tolist(), seeds, cfg.crop_scale, cfg.hflip)
            return F.cross_entropy(self.logits(self.image_features(pixels)), train.labels[idx])

        sched = Schedule("adamw", cfg.lr, cfg.epochs, cfg.batch_size, cfg.weight_decay, warmup_lr=None)
        self._train_loop(self.parameters(), len(train), step_loss, sched, cfg.seed)

    def zeroshot_state(self) -> dict[str, torch.Tensor]:
        """θ₀: the backbone's image encoder and the zero-shot head, in this adapter's key layout."""
        head = {
            "head.weight": self.backbone.logit_scale * self.zeroshot_weights(),
            "head.bias": torch.zeros(self.num_classes),
        }
        return {f"visual.{k}": v for k, v in self.backbone.model.visual.state_dict().items()} | head
