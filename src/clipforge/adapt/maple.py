"""MaPLe (METHODS §6): deep text prompts coupled to deep vision prompts by linear maps, frozen CLIP.

Layer 0: the text prompt `[SOS] p1 p2 of a {class}. [EOS]` with p1, p2 initialised from "a photo";
the vision prompt `Linear_0(p)` is appended after the patch tokens. Layers 1 … J−1: fresh learned
text prompts replace the prompt slots, and `Linear_i` of each gives the vision prompts that replace
the last tokens of the image sequence. J = min(depth, layers of either tower). Trained on augmented
images (SGD lr 0.0035, batch 4, 5 epochs, one warm-up epoch at 1e-5).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from .base import Adapter
from .coop import PromptLearner
from .data import augment_images, hash_seed, materialize
from .prompts import PromptTokens, encode_image_prompted, encode_prompts, init_context
from .towers import vit_tower
from .training import Schedule


class MaPLe(PromptLearner):
    method = "maple"
    input = "encoded"  # image features come from the prompted image encoder

    @dataclasses.dataclass
    class Config(Adapter.Config):
        n_ctx: int = 2
        ctx_init: str | None = "a photo"  # first n_ctx words of "a photo of a"
        suffix: str = "of a {}."
        depth: int = 9
        lr: float = 0.0035
        epochs: int = 5
        batch_size: int = 4
        crop_scale: tuple[float, float] = (0.5, 1.0)
        hflip: bool = True
        seed: int = 0

    config: Config

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.config
        tok, model = self.backbone.tokenizer, self.backbone.model
        visual = vit_tower(model.visual, "maple prompts a Vision Transformer; this model's image tower is a ResNet")
        n_ctx = len(tok.encode(cfg.ctx_init)) if cfg.ctx_init else cfg.n_ctx
        if n_ctx < 1:
            raise ValueError("maple needs at least one prompt token")
        self.prompts = PromptTokens(tok, self.classnames, n_ctx, suffix=cfg.suffix)
        layers = min(len(model.text.transformer.resblocks), len(visual.transformer.resblocks))
        self.depth = max(1, min(cfg.depth, layers))
        text_w = model.text.token_embedding.weight.shape[1]
        vis_w = visual.conv1.weight.shape[0]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.ctx = nn.Parameter(init_context(model.text, tok, n_ctx, cfg.ctx_init))
            self.deep_ctx = nn.ParameterList(torch.randn(n_ctx, text_w) * 0.02 for _ in range(self.depth - 1))
            self.couplers = nn.ModuleList(nn.Linear(text_w, vis_w) for _ in range(self.depth))

    def text_prompts(self) -> list[torch.Tensor]:
        return [self.ctx, *self.deep_ctx]

    def vision_prompts(self) -> list[torch.Tensor]:
        return [proj(p) for proj, p in zip(self.couplers, self.text_prompts())]

    def _encode_classes(self) -> torch.Tensor:
        return encode_prompts(self.text, self.prompts.tokens, self.prompts.slots, self.ctx, list(self.deep_ctx))

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        return encode_image_prompted(self.backbone.model.visual, pixels.to(self.backbone.device), self.vision_prompts())

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        out = [self.encode_images(pixels[i : i + batch_size]).float().cpu() for i in range(0, len(pixels), batch_size)]
        return torch.cat(out) if out else torch.zeros(0, self.backbone.embed_dim)

    def _fit(self, train, val) -> None:
        cfg = self.config
        images = materialize(train.need_images(self.method))

        def step_loss(idx: torch.Tensor, epoch: int) -> torch.Tensor:
            seeds = [hash_seed(cfg.seed, epoch, int(i)) for i in idx]
            pixels = augment_images(self.backbone, images, idx.tolist(), seeds, cfg.crop_scale, cfg.hflip)
            return F.cross_entropy(self.logits(self.encode_images(pixels)), train.labels[idx])

        self._train_loop(
            self.parameters(), len(train), step_loss, Schedule("sgd", cfg.lr, cfg.epochs, cfg.batch_size), cfg.seed
        )
