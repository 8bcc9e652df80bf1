"""One optimiser step's forward and backward: towers, loss, teacher targets, gradient-cached accumulation.

A step consumes this rank's micro-batches. With accumulation the loss still sees every negative of
the whole step: features of all micro-batches are computed without gradients first, then each
micro-batch is recomputed with gradients and spliced into the full feature matrix
(`losses.splice_features`), so the summed gradient equals the large-batch gradient exactly.
"""

from __future__ import annotations

import contextlib
from typing import ContextManager, cast

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..losses import build_loss, splice_features
from ..model import CLIP
from .config import TrainConfig
from .distributed import DistEnv

Micro = tuple[torch.Tensor, torch.Tensor]
Logs = dict[str, torch.Tensor]
Targets = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class Towers(nn.Module):
    """What DDP wraps: normalised features plus the exp'ed logit scale and the bias."""

    def __init__(self, model: CLIP) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, pixels: torch.Tensor, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        m = self.model
        bias = m.logit_bias
        return m.encode_image(pixels, normalize=True), m.encode_text(tokens, normalize=True), m.logit_scale.exp(), bias


def wrap_ddp(towers: Towers, env: DistEnv) -> nn.Module:
    """`towers` under DistributedDataParallel when there are several processes, else itself."""
    if not env.distributed:
        return towers
    ids = [env.device.index] if env.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(towers, device_ids=ids)


def build_train_loss(cfg: TrainConfig, env: DistEnv) -> nn.Module:
    """The configured `clipforge.losses` loss, bound to this process's rank."""
    return build_loss(cfg.loss, rank=env.rank, world_size=env.world_size, **cfg.loss_kwargs())


def autocast(precision: str, device_type: str) -> ContextManager:
    """Mixed-precision context for bf16/fp16 (nothing for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type, dtype=dtype)


def _f(bias: torch.Tensor | None) -> torch.Tensor | None:
    return None if bias is None else bias.float()


class ContrastiveStep:
    """Forward + backward of one step over its micro-batches; gradients accumulate in the model.

    `teacher` (distillation): a frozen model whose features of the same batch, and logit scale,
    are passed to the loss as targets.
    """

    def __init__(
        self,
        towers: Towers,
        ddp: nn.Module,
        loss_fn: nn.Module,
        scaler: torch.amp.GradScaler,
        precision: str,
        teacher: CLIP | None = None,
    ) -> None:
        self.towers, self.ddp, self.loss_fn, self.scaler = towers, ddp, loss_fn, scaler
        self.precision, self.teacher = precision, teacher
        self.device = towers.model.device
        self.distributed = isinstance(ddp, nn.parallel.DistributedDataParallel)

    def _autocast(self) -> ContextManager:
        return autocast(self.precision, self.device.type)

    def _loss(
        self,
        img: torch.Tensor,
        txt: torch.Tensor,
        scale: torch.Tensor,
        bias: torch.Tensor | None,
        targets: Targets | None,
    ) -> tuple[torch.Tensor, Logs]:
        """The loss on (full-batch) features: contrastive, or against the teacher's targets when distilling."""
        if targets is None:
            return self.loss_fn(img, txt, scale.float(), _f(bias))
        return self.loss_fn(img, txt, *targets[:2], scale.float(), targets[2])

    @torch.no_grad()
    def _targets(self, micro: list[Micro]) -> Targets | None:
        """The teacher's normalised features of the whole step (this rank) and its logit scale."""
        if self.teacher is None:
            return None
        with self._autocast():
            img = [self.teacher.encode_image(p, normalize=True).float() for p, _ in micro]
            txt = [self.teacher.encode_text(t, normalize=True).float() for _, t in micro]
        return torch.cat(img), torch.cat(txt), self.teacher.logit_scale.exp().float()

    def __call__(self, micro: list[Micro]) -> tuple[torch.Tensor, Logs]:
        """Forward + backward for one optimiser step; returns the loss and its logged values."""
        micro = [(p.to(self.device, non_blocking=True), t.to(self.device, non_blocking=True)) for p, t in micro]
        targets = self._targets(micro)
        if len(micro) == 1:
            with self._autocast():
                img, txt, scale, bias = self.ddp(*micro[0])
                loss, logs = self._loss(img.float(), txt.float(), scale, bias, targets)
            self.scaler.scale(loss).backward()
            return loss.detach(), logs
        with torch.no_grad(), self._autocast():
            cached = [self.towers(p, t)[:2] for p, t in micro]
        all_img = torch.cat([c[0] for c in cached]).float()
        all_txt = torch.cat([c[1] for c in cached]).float()
        offset = 0
        for j, (p, t) in enumerate(micro):
            last = j == len(micro) - 1
            ddp = cast(DistributedDataParallel, self.ddp)
            sync = contextlib.nullcontext() if last or not self.distributed else ddp.no_sync()
            with sync:
                with self._autocast():
                    img, txt, scale, bias = self.ddp(p, t)
                img_full = splice_features(all_img, img, offset)
                txt_full = splice_features(all_txt, txt, offset)
                if not last:  # the scale/bias gradient is taken once, in the last (synchronised) pass
                    scale, bias = scale.detach(), None if bias is None else bias.detach()
                loss, logs = self._loss(img_full, txt_full, scale, bias, targets)
                self.scaler.scale(loss).backward()
            offset += img.shape[0]
        return loss.detach(), logs
