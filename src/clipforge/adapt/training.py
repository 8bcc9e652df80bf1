"""A small training loop shared by the trained adapters: SGD/AdamW, warm-up + cosine, shuffled batches."""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Iterable

import torch
from torch import nn
from tqdm.auto import tqdm


@dataclasses.dataclass
class Schedule:
    """How to train: optimiser, learning rate, epochs, batch size, warm-up (CoOp style: constant `warmup_lr`)."""

    optimizer: str = "sgd"  # "sgd" (momentum 0.9) or "adamw"
    lr: float = 0.002
    epochs: int = 50
    batch_size: int = 32
    weight_decay: float = 5e-4
    warmup_epochs: int = 1
    warmup_lr: float | None = 1e-5  # None: linear warm-up to lr instead of a constant
    eps: float = 1e-8


def make_optimizer(params: Iterable[nn.Parameter], s: Schedule) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: no parameter requires a gradient")
    if s.optimizer == "sgd":
        return torch.optim.SGD(params, lr=s.lr, momentum=0.9, weight_decay=s.weight_decay)
    if s.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay, eps=s.eps)
    raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {s.optimizer!r}")


def lr_at(step: int, total: int, warmup: int, s: Schedule) -> float:
    """Warm-up for `warmup` steps (constant `warmup_lr`, or linear), then cosine from `lr` to 0."""
    if step < warmup:
        return s.warmup_lr if s.warmup_lr is not None else s.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * s.lr * (1 + math.cos(math.pi * min(1.0, progress)))


def train_loop(
    params: Iterable[nn.Parameter],
    n: int,
    step_loss: Callable[[torch.Tensor, int], torch.Tensor],
    s: Schedule,
    seed: int = 0,
    after_epoch: Callable[[int], None] | None = None,
    *,
    progress: bool = False,
    desc: str = "training",
) -> list[float]:
    """Minimise `step_loss(batch_indices, epoch)` over shuffled batches of range(n); returns epoch losses.

    `after_epoch(epoch)` runs after each epoch (e.g. to keep the best epoch on validation data);
    `progress` shows a bar over the epochs with the last epoch's loss.
    """
    params = list(params)
    opt = make_optimizer(params, s)
    gen = torch.Generator().manual_seed(seed)
    per_epoch = max(1, math.ceil(n / s.batch_size))
    # Warm-up counts whole epochs as in CoOp, but never more than a tenth of a short run.
    total = per_epoch * s.epochs
    warmup = min(per_epoch * s.warmup_epochs, total // 10)
    history, step = [], 0
    bar = tqdm(range(s.epochs), desc=desc, unit="epoch", disable=not progress)
    for epoch in bar:
        order = torch.randperm(n, generator=gen)
        running = 0.0
        for b in range(per_epoch):
            idx = order[b * s.batch_size : (b + 1) * s.batch_size]
            if len(idx) == 0:
                continue
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, warmup, s)
            loss = step_loss(idx, epoch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running += float(loss.detach()) * len(idx)
            step += 1
        history.append(running / n)
        bar.set_postfix(loss=f"{history[-1]:.4f}")
        if after_epoch is not None:
            after_epoch(epoch)
    return history
