"""TPT (METHODS §12): test-time prompt tuning, one episode per test image.

For each image: the original plus `n_views − 1` random resized crops (+ flips); keep the `rho`
fraction of views with the lowest prediction entropy; take `steps` AdamW steps (lr 5e-3) on the
context vectors to minimise the entropy of their *averaged* probability; classify the original
view with the tuned prompt; then reset the prompt and the optimiser. Context: 4 vectors
initialised from "a photo of a" (or a trained CoOp context via `from_coop`). The crops of an
image are seeded by its pixels, so a result does not depend on batch composition.
"""

from __future__ import annotations

import dataclasses
import math
import zlib

import torch
import torch.nn.functional as F
from torch import nn

from ..transforms import random_resized_crop_params
from .base import Adapter, as_pair
from .coop import CoOp, PromptLearner
from .prompts import PromptTokens, encode_prompts, init_context


def augmented_views(
    image: torch.Tensor, n: int, scale: tuple[float, float], gen: torch.Generator, hflip: bool = True
) -> torch.Tensor:
    """`image` [3, H, W] followed by n − 1 RandomResizedCrop(scale) (+ flip) views of it: [n, 3, H, W]."""
    _, h, w = image.shape
    views = [image]
    for _ in range(n - 1):
        top, left, ch, cw = random_resized_crop_params(w, h, scale, (3 / 4, 4 / 3), gen)
        crop = image[None, :, top : top + ch, left : left + cw]
        view = F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False, antialias=True)[0]
        if hflip and torch.rand(1, generator=gen).item() < 0.5:
            view = view.flip(-1)
        views.append(view)
    return torch.stack(views)


def average_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the mean of the rows' softmax distributions."""
    logp = logits.log_softmax(-1)
    avg = torch.logsumexp(logp, dim=0) - math.log(len(logits))
    return -(avg.exp() * avg).sum()


class TPT(PromptLearner):
    method = "tpt"
    input = "pixels"

    @dataclasses.dataclass
    class Config(Adapter.Config):
        n_ctx: int = 4
        ctx_init: str | None = "a photo of a"
        n_views: int = 64
        rho: float = 0.1
        lr: float = 5e-3
        steps: int = 1
        crop_scale: tuple[float, float] = (0.08, 1.0)
        hflip: bool = True
        seed: int = 0

    config: Config

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.config
        cfg.crop_scale = as_pair("crop_scale", cfg.crop_scale)
        tok = self.backbone.tokenizer
        n_ctx = len(tok.encode(cfg.ctx_init)) if cfg.ctx_init else cfg.n_ctx
        self.prompts = PromptTokens(tok, self.classnames, n_ctx)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.ctx = nn.Parameter(init_context(self.text, tok, n_ctx, cfg.ctx_init))
        self.fitted = True  # test-time method: nothing to fit beforehand

    @classmethod
    def from_coop(cls, coop: CoOp, **hparams) -> "TPT":
        """TPT starting from a trained (unified-context, class-at-end) CoOp prompt ("TPT + CoOp")."""
        if coop.config.csc or coop.config.position != "end":
            raise ValueError("TPT starts from a unified context with the class name at the end")
        tpt = cls(coop.backbone, coop.classnames, coop.templates, ctx_init=None, n_ctx=coop.ctx.shape[0], **hparams)
        tpt.ctx = nn.Parameter(coop.ctx.detach().clone())
        return tpt

    def _fit(self, train, val) -> None:
        pass  # nothing is learned before test time

    def _encode_classes(self, ctx: torch.Tensor | None = None) -> torch.Tensor:
        return encode_prompts(self.text, self.prompts.tokens, self.prompts.slots, self.ctx if ctx is None else ctx)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels.float()

    def _view_features(self, views: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return F.normalize(self.backbone.model.encode_image(views.to(self.backbone.device)).float(), dim=-1)

    def adapt_one(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits of the original view after tuning, the tuned context) for one image [3, H, W]."""
        cfg = self.config
        seed = zlib.crc32(image.detach().cpu().numpy().tobytes()) ^ cfg.seed
        views = augmented_views(image, cfg.n_views, cfg.crop_scale, torch.Generator().manual_seed(seed), cfg.hflip)
        feats = self._view_features(views)
        ctx = self.ctx.detach().clone().requires_grad_(True)  # a fresh episode: prompt and optimiser reset
        opt = torch.optim.AdamW([ctx], lr=cfg.lr, weight_decay=0.0)
        keep = max(1, int(cfg.rho * len(views)))
        with torch.enable_grad():
            for _ in range(cfg.steps):
                text = F.normalize(self._encode_classes(ctx).float(), dim=-1)
                logits = self.scale * feats @ text.t()
                entropy = -(logits.softmax(-1) * logits.log_softmax(-1)).sum(-1)
                chosen = logits[entropy.argsort()[:keep]]
                loss = average_entropy(chosen)
                opt.zero_grad()
                loss.backward()
                opt.step()
        with torch.no_grad():
            text = F.normalize(self._encode_classes(ctx).float(), dim=-1)
            return self.scale * feats[:1] @ text.t(), ctx.detach()

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        size = self.backbone.preprocess.config.image_size
        pixels = inputs.reshape(len(inputs), 3, size, size) if inputs.dim() == 2 else inputs
        out = [self.adapt_one(x)[0] for x in pixels]
        return torch.cat(out) if out else torch.zeros(0, self.num_classes)
