"""LoRA fine-tuning (Hu et al. 2021; CLIP-LoRA recipe): low-rank updates `W + (α/r)·B·A` on chosen projections.

Targets are the attention projections `q`, `k`, `v` (slices of the fused in-projection), `out`, and
the MLP `fc`/`proj`, in the vision and/or text tower. A is Kaiming-uniform, B is zero, so the
untrained model *is* the base model. The update is a weight parametrisation, so `merged()` folds it
into plain weights exactly. With the text tower adapted, class embeddings are recomputed from the
prompts at every step. (CLIP-LoRA applies dropout 0.25 to the LoRA input; a weight-space update
cannot, so there is none here.)
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from ..data.embedding import encode_pixels
from ..model.clip import CLIP
from ..model.vision import ModifiedResNet
from .base import Adapter, as_pair
from .data import augment_images, hash_seed, materialize
from .towers import vision_tower
from .training import Schedule

QKV = ("q", "k", "v")
TARGETS = (*QKV, "out", "fc", "proj")
_M = TypeVar("_M", bound=nn.Module)


class LoRADelta(nn.Module):
    """Parametrisation `W ↦ W + scale·B·A`; for a fused [3w, w] in-projection, one (A, B) per chosen q/k/v slice."""

    def __init__(self, weight: torch.Tensor, rank: int, scale: float, parts: tuple[str, ...] = ("w",)) -> None:
        super().__init__()
        rows = weight.shape[0] // (3 if parts != ("w",) else 1)
        self.parts, self.rows, self.scale = parts, rows, scale
        self.lora_A = nn.ParameterDict()
        self.lora_B = nn.ParameterDict()
        for p in parts:
            a = torch.empty(rank, weight.shape[1])
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
            self.lora_A[p] = nn.Parameter(a)
            self.lora_B[p] = nn.Parameter(torch.zeros(rows, rank))

    def delta(self) -> torch.Tensor:
        if self.parts == ("w",):
            return self.lora_B["w"] @ self.lora_A["w"]
        blocks = []
        for p in QKV:
            if p in self.lora_A:
                blocks.append(self.lora_B[p] @ self.lora_A[p])
            else:
                blocks.append(self.lora_B[self.parts[0]].new_zeros(self.rows, self.lora_A[self.parts[0]].shape[1]))
        return torch.cat(blocks)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.scale * self.delta().to(weight.dtype)


def add_lora(model: CLIP, towers: tuple[str, ...], targets: tuple[str, ...], rank: int, alpha: float) -> int:
    """Register LoRA parametrisations on the CLIP model's transformer blocks; returns how many.

    A ResNet image tower has no transformer blocks: there q/k/v/out are its attention pool's projections.
    """
    bad = sorted(set(targets) - set(TARGETS))
    if bad:
        raise ValueError(f"unknown LoRA target(s) {bad}; choose from {', '.join(TARGETS)}")
    scale, count = alpha / rank, 0

    def lora_linear(module: nn.Linear) -> None:
        nonlocal count
        parametrize.register_parametrization(module, "weight", LoRADelta(module.weight, rank, scale))
        count += 1

    for tower in towers:
        if tower not in ("vision", "text"):
            raise ValueError(f"LoRA tower must be 'vision' or 'text', got {tower!r}")
        visual = vision_tower(model.visual) if tower == "vision" else None
        if isinstance(visual, ModifiedResNet):
            pool = visual.attnpool
            named = {"q": pool.q_proj, "k": pool.k_proj, "v": pool.v_proj, "out": pool.c_proj}
            for name in targets:
                if name in named:
                    lora_linear(named[name])
            continue
        root = model.text.transformer if visual is None else visual.transformer
        for block in root.blocks:
            qkv = tuple(p for p in QKV if p in targets)
            if qkv:
                delta = LoRADelta(block.attn.in_proj_weight, rank, scale, qkv)
                parametrize.register_parametrization(block.attn, "in_proj_weight", delta)
                count += 1
            for name, module in (("out", block.attn.out_proj), ("fc", block.mlp.c_fc), ("proj", block.mlp.c_proj)):
                if name in targets:
                    lora_linear(module)
    return count


def merge_lora(model: nn.Module, base: _M) -> _M:
    """A copy of `base` whose weights are `model`'s LoRA-updated ones: plain modules, same outputs.

    (`model` must be `base` with LoRA parametrisations; deep-copying a parametrised module is
    avoided because torch shares the generated parametrised class between copies.)
    """
    merged = copy.deepcopy(base)
    params = dict(merged.named_parameters())
    with torch.no_grad():
        for name, module in model.named_modules():
            if parametrize.is_parametrized(module):
                for tensor_name in module.parametrizations.keys():
                    params[f"{name}.{tensor_name}" if name else tensor_name].copy_(getattr(module, tensor_name))
    return merged


class LoRA(Adapter):
    method = "lora"
    input = "encoded"

    @dataclasses.dataclass
    class Config(Adapter.Config):
        rank: int = 2
        alpha: float = 1.0
        targets: str = "q,k,v"
        towers: str = "vision,text"
        lr: float = 2e-4
        epochs: int = 50
        iterations: int | None = None  # CLIP-LoRA counts optimiser steps (500 x shots); overrides epochs
        batch_size: int = 32
        weight_decay: float = 0.01
        crop_scale: tuple[float, float] = (0.5, 1.0)
        hflip: bool = True
        seed: int = 0

    config: Config
    text_weights: torch.Tensor  # buffer

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.config
        cfg.crop_scale = as_pair("crop_scale", cfg.crop_scale)
        self.towers = tuple(t.strip() for t in cfg.towers.split(",") if t.strip())
        targets = tuple(t.strip() for t in cfg.targets.split(",") if t.strip())
        self.model = copy.deepcopy(self.backbone.model).requires_grad_(False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            add_lora(self.model, self.towers, targets, cfg.rank, cfg.alpha)
        self.scale = self.backbone.logit_scale
        tok = self.backbone.tokenizer
        self.prompt_tokens = tok([t.format(c) for c in self.classnames for t in self.templates])
        self.register_buffer("text_weights", self.zeroshot_weights(), persistent=False)
        self._text_cache: torch.Tensor | None = None

    def lora_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if "lora_" in n]

    def train(self, mode: bool = True) -> "LoRA":
        self._text_cache = None
        return super().train(mode)

    def class_features(self) -> torch.Tensor:
        if "text" not in self.towers:
            return self.text_weights
        if self.training or self._text_cache is None:
            feats = F.normalize(self.model.encode_text(self.prompt_tokens.to(self.backbone.device)).float(), dim=-1)
            feats = F.normalize(feats.view(self.num_classes, len(self.templates), -1).mean(1), dim=-1)
            if self.training:
                return feats
            self._text_cache = feats.detach()
        return self._text_cache

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        return encode_pixels(self.model, pixels, batch_size)

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.scale * self.normalize(inputs) @ self.class_features().t()

    def _fit(self, train, val) -> None:
        cfg = self.config
        images = materialize(train.need_images(self.method))
        self.model.eval()  # no dropout/BN behaviour to switch; keeps the frozen base deterministic

        def step_loss(idx: torch.Tensor, epoch: int) -> torch.Tensor:
            seeds = [hash_seed(cfg.seed, epoch, int(i)) for i in idx]
            pixels = augment_images(self.backbone, images, idx.tolist(), seeds, cfg.crop_scale, cfg.hflip)
            feats = self.model.encode_image(pixels.to(self.backbone.device)).float()
            return F.cross_entropy(self.logits(feats), train.labels[idx])

        epochs = cfg.epochs
        if cfg.iterations:
            epochs = math.ceil(cfg.iterations / math.ceil(len(train) / cfg.batch_size))
        sched = Schedule("adamw", cfg.lr, epochs, cfg.batch_size, cfg.weight_decay, warmup_lr=None)
        self._train_loop(self.lora_parameters(), len(train), step_loss, sched, cfg.seed)

    def merged(self) -> CLIP:
        """The adapted CLIP model with the LoRA updates merged into its weights (no extra inference cost)."""
        return merge_lora(self.model, self.backbone.model)

    def _saved_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().cpu() for n, p in self.named_parameters() if "lora_" in n}

    def _load_saved_state(self, state: dict[str, torch.Tensor]) -> None:
        own = dict(self.named_parameters())
        unknown = sorted(set(state) - {n for n in own if "lora_" in n})
        missing = sorted({n for n in own if "lora_" in n} - set(state))
        if unknown or missing:
            raise ValueError(f"LoRA weights do not match: missing {missing[:5]}, unexpected {unknown[:5]}")
        with torch.no_grad():
            for n, v in state.items():
                own[n].copy_(v)
