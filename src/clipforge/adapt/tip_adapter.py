"""Tip-Adapter and Tip-Adapter-F (METHODS §9): a key/value cache of the few-shot set added to zero-shot logits.

Keys are the L2-normalised mean of each training image's augmented-view features, values its
one-hot label. `logits = s·f·Wᵀ + α·exp(−β(1 − f·Kᵀ))·L`. With a validation set, α and β are
searched on Tip-Adapter's grid (β from 0.1 to β_max in `beta_steps`, α from 0.1 to α_max in
`alpha_steps`). Tip-Adapter-F additionally trains the keys (AdamW, lr 1e-3, eps 1e-4, cosine),
keeps the epoch with the best validation accuracy, then searches α, β again.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from .base import Adapter
from .training import Schedule


def search_alpha_beta(
    zs: torch.Tensor, affinity: torch.Tensor, values: torch.Tensor, labels: torch.Tensor, cfg
) -> tuple[float, float, float]:
    """Best (α, β, val accuracy) on Tip-Adapter's grid; ties keep the first (smallest β, then α)."""
    betas = [0.1 + i * (cfg.beta_max - 0.1) / cfg.beta_steps for i in range(cfg.beta_steps)]
    alphas = torch.tensor([0.1 + i * (cfg.alpha_max - 0.1) / cfg.alpha_steps for i in range(cfg.alpha_steps)])
    best = (-1.0, cfg.alpha, cfg.beta)
    for beta in betas:
        cache = torch.exp(-beta * (1 - affinity)) @ values
        logits = zs[None] + alphas[:, None, None] * cache[None]
        accs = (logits.argmax(-1) == labels[None]).float().mean(-1)
        i = int(accs.argmax())
        if float(accs[i]) > best[0]:
            best = (float(accs[i]), float(alphas[i]), float(beta))
    return best[1], best[2], best[0]


class TipAdapter(Adapter):
    method = "tip-adapter"
    uses_views = True

    @dataclasses.dataclass
    class Config(Adapter.Config):
        alpha: float = 1.0
        beta: float = 1.0
        augment_views: int = 10  # views averaged into each key (used when the data lacks views)
        search: bool = True  # search α, β on the validation set when one is given
        alpha_max: float = 3.0
        beta_max: float = 7.0
        alpha_steps: int = 20
        beta_steps: int = 200

    config: Config
    text_weights: torch.Tensor  # buffers
    values: torch.Tensor

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        d = self.backbone.embed_dim
        self.register_buffer("text_weights", self.zeroshot_weights(), persistent=False)
        self.keys = nn.Parameter(torch.zeros(0, d), requires_grad=False)
        self.register_buffer("values", torch.zeros(0, self.num_classes))
        self.alpha, self.beta = self.config.alpha, self.config.beta
        self.scale = self.backbone.logit_scale

    def _build_cache(self, train) -> None:
        if train.views is None and train.images is not None and self.config.augment_views > 0:
            train.ensure(self.backbone, views=self.config.augment_views)
        train.ensure(self.backbone, features=train.views is None)
        feats = train.views.float().mean(0) if train.views is not None else train.features.float()
        self.keys = nn.Parameter(self.normalize(feats), requires_grad=False)
        self.values = F.one_hot(train.labels, self.num_classes).float()

    def _fit(self, train, val) -> None:
        self._build_cache(train)
        self._search(val)

    def _search(self, val) -> None:
        if val is None or not self.config.search:
            return
        val.ensure(self.backbone, features=True)
        f = self.normalize(val.features)
        with torch.no_grad():
            zs, affinity = self.scale * f @ self.text_weights.t(), f @ self.keys.t()
            self.alpha, self.beta, _ = search_alpha_beta(zs, affinity, self.values, val.labels, self.config)

    def cache_logits(self, f: torch.Tensor, beta: float | None = None) -> torch.Tensor:
        beta = self.beta if beta is None else beta
        return torch.exp(-beta * (1 - f @ self.keys.t())) @ self.values

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        f = self.normalize(inputs)
        return self.scale * f @ self.text_weights.t() + self.alpha * self.cache_logits(f)

    def _extra_state(self) -> dict:
        return {"alpha": self.alpha, "beta": self.beta}

    def _set_extra_state(self, extra: dict) -> None:
        self.alpha, self.beta = float(extra.get("alpha", self.alpha)), float(extra.get("beta", self.beta))


class TipAdapterF(TipAdapter):
    method = "tip-adapter-f"

    @dataclasses.dataclass
    class Config(TipAdapter.Config):
        lr: float = 1e-3
        epochs: int = 20
        batch_size: int = 256
        seed: int = 0

    config: Config

    def _fit(self, train, val) -> None:
        self._build_cache(train)
        self.keys.requires_grad_(True)
        cfg = self.config
        sched = Schedule("adamw", cfg.lr, cfg.epochs, cfg.batch_size, weight_decay=0.01, warmup_epochs=0, eps=1e-4)
        gen = torch.Generator().manual_seed(cfg.seed)
        epoch_feats: dict[int, torch.Tensor] = {}
        best = (-1.0, self.keys.detach().clone())
        if val is not None:
            val.ensure(self.backbone, features=True)

        def step_loss(idx: torch.Tensor, epoch: int) -> torch.Tensor:
            if epoch not in epoch_feats:  # a fresh augmented view of every image each epoch
                epoch_feats.clear()
                epoch_feats[epoch] = self.normalize(train.view_features(epoch, gen))
            return F.cross_entropy(self.logits(epoch_feats[epoch][idx]), train.labels[idx])

        def keep_best(epoch: int) -> None:
            nonlocal best
            if val is None:
                return
            with torch.no_grad():
                acc = float((self.logits(val.features).argmax(-1) == val.labels).float().mean())
            if acc > best[0]:
                best = (acc, self.keys.detach().clone())

        self._train_loop([self.keys], len(train), step_loss, sched, cfg.seed, keep_best)
        if val is not None:
            self.keys = nn.Parameter(best[1], requires_grad=False)
        self.keys.requires_grad_(False)
        self._search(val)
