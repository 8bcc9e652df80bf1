"""CoOp (METHODS §4): learned context vectors in front of (or around) the class name, frozen CLIP.

Unified context `[M, w]` shared by all classes, or class-specific context (CSC) `[C, M, w]`;
class token at the end (default), middle or front; random N(0, 0.02²) init or the word
embeddings of a phrase. Trained with cross-entropy of `s·f·tᵀ` on augmented-view features with
SGD (lr 0.002, momentum 0.9, batch 32, cosine, one warm-up epoch at 1e-5); epochs default to the
paper's rule (50 for 1 shot, 100 for 2–4, 200 for 8+).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from ..model.clip import TextTransformer
from .base import Adapter
from .prompts import Position, PromptTokens, encode_prompts, init_context
from .training import Schedule


def coop_epochs(shots: int) -> int:
    return 50 if shots <= 1 else 100 if shots <= 4 else 200


class PromptLearner(Adapter):
    """Base of the text-prompt learners: prompt tokens per class, a cache of class text features."""

    supports_new_classes = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.scale = self.backbone.logit_scale
        self._text_cache: torch.Tensor | None = None

    @property
    def text(self) -> TextTransformer:
        return self.backbone.model.text

    def train(self, mode: bool = True) -> "PromptLearner":
        self._text_cache = None  # parameters may change while training
        return super().train(mode)

    def class_features(self) -> torch.Tensor:
        """L2-normalised class text features [C, d] (cached outside training)."""
        if self.training or self._text_cache is None:
            feats = F.normalize(self._encode_classes().float(), dim=-1)
            if self.training:
                return feats
            self._text_cache = feats.detach()
        return self._text_cache

    def _encode_classes(self) -> torch.Tensor:
        raise NotImplementedError

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.scale * self.normalize(inputs) @ self.class_features().t()

    def _train_on_features(self, train, epochs: int, sched: Schedule, seed: int) -> list[float]:
        train.ensure(self.backbone, features=train.views is None)
        gen = torch.Generator().manual_seed(seed)
        feats: dict[int, torch.Tensor] = {}

        def step_loss(idx: torch.Tensor, epoch: int) -> torch.Tensor:
            if epoch not in feats:
                feats.clear()
                feats[epoch] = train.view_features(epoch, gen).float()
            return F.cross_entropy(self.logits(feats[epoch][idx]), train.labels[idx])

        return self._train_loop([p for p in self.parameters() if p.requires_grad], len(train), step_loss, sched, seed)


class CoOp(PromptLearner):
    method = "coop"
    uses_views = True

    @dataclasses.dataclass
    class Config(Adapter.Config):
        n_ctx: int = 16
        ctx_init: str | None = None  # e.g. "a photo of a" (then n_ctx = its token count)
        csc: bool = False  # class-specific context
        position: Position = "end"  # class token position: end, middle, front
        lr: float = 0.002
        epochs: int | None = None  # None: the paper's rule from the number of shots
        batch_size: int = 32
        seed: int = 0

    config: Config

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.config
        n_ctx = len(self.backbone.tokenizer.encode(cfg.ctx_init)) if cfg.ctx_init else cfg.n_ctx
        self.prompts = PromptTokens(self.backbone.tokenizer, self.classnames, n_ctx, cfg.position)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            ctx = init_context(
                self.text, self.backbone.tokenizer, n_ctx, cfg.ctx_init, self.num_classes if cfg.csc else None
            )
        self.ctx = nn.Parameter(ctx)

    @property
    def open_vocabulary(self) -> bool:
        return not self.config.csc

    def _encode_classes(self) -> torch.Tensor:
        return encode_prompts(self.text, self.prompts.tokens, self.prompts.slots, self.ctx)

    def _fit(self, train, val) -> None:
        cfg = self.config
        shots = max(1, round(len(train) / max(1, len(train.labels.unique()))))
        epochs = cfg.epochs or coop_epochs(shots)
        self._train_on_features(train, epochs, Schedule("sgd", cfg.lr, epochs, cfg.batch_size), cfg.seed)
