"""AdamW with CLIP's weight-decay exclusions, and a warm-up + cosine learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn


def no_decay(name: str, param: nn.Parameter) -> bool:
    """Biases, norms, gains, embeddings of rank < 2 and the logit scale/bias get no weight decay."""
    return param.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name


def build_optimizer(
    model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float], eps: float
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, weight decay only where `no_decay` does not exempt it."""
    decay: list[nn.Parameter] = []
    rest: list[nn.Parameter] = []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (rest if no_decay(name, param) else decay).append(param)
    if not decay and not rest:
        raise ValueError("no trainable parameters (are both towers locked?)")
    groups = [{"params": rest, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]
    fused = all(p.is_cuda for p in decay + rest)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused or None)


def warmup_cosine_lr(step: int, base_lr: float, warmup: int, total: int, min_lr: float = 0.0) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to `min_lr` at `total` steps."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's learning rate (the schedule is applied step by step)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
