"""CoCoOp (METHODS §5): CoOp's context shifted per image by a Meta-Net of the image feature.

`v_m(x) = v_m + π(x)`, `π = Linear(d → d/16) → ReLU → Linear(d/16 → w)` on the normalised image
feature; every image gets its own C prompts. Defaults: 4 context vectors initialised from
"a photo of a", SGD lr 0.002, batch 1, 10 epochs, one warm-up epoch at 1e-5.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from .base import Adapter
from .coop import PromptLearner
from .prompts import PromptTokens, encode_prompts, init_context
from .training import Schedule


class CoCoOp(PromptLearner):
    method = "cocoop"
    uses_views = True

    @dataclasses.dataclass
    class Config(Adapter.Config):
        n_ctx: int = 4
        ctx_init: str | None = "a photo of a"
        lr: float = 0.002
        epochs: int = 10
        batch_size: int = 1
        chunk: int = 32  # images per text-encoder call at inference
        seed: int = 0

    config: Config

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.config
        tok = self.backbone.tokenizer
        n_ctx = len(tok.encode(cfg.ctx_init)) if cfg.ctx_init else cfg.n_ctx
        self.prompts = PromptTokens(tok, self.classnames, n_ctx)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.ctx = nn.Parameter(init_context(self.text, tok, n_ctx, cfg.ctx_init))
            d, width = self.backbone.embed_dim, self.ctx.shape[-1]
            hidden = max(1, d // 16)
            self.meta_net = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, width))

    def _instance_logits(self, f: torch.Tensor) -> torch.Tensor:
        b, c = len(f), self.num_classes
        ctx = self.ctx[None] + self.meta_net(f)[:, None]  # [B, M, w]
        ctx = ctx[:, None].expand(b, c, *self.ctx.shape).reshape(b * c, *self.ctx.shape)
        tokens, slots = self.prompts.tokens.repeat(b, 1), self.prompts.slots.repeat(b, 1)
        t = F.normalize(encode_prompts(self.text, tokens, slots, ctx).float(), dim=-1).view(b, c, -1)
        return self.scale * torch.einsum("bd,bcd->bc", f, t)

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        f = self.normalize(inputs)
        if len(f) == 0:
            return torch.zeros(0, self.num_classes)
        step = len(f) if self.training else self.config.chunk
        return torch.cat([self._instance_logits(f[i : i + step]) for i in range(0, len(f), step)])

    def _fit(self, train, val) -> None:
        cfg = self.config
        self._train_on_features(train, cfg.epochs, Schedule("sgd", cfg.lr, cfg.epochs, cfg.batch_size), cfg.seed)
