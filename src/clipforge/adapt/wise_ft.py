"""WiSE-FT (METHODS §13): interpolate every weight between zero-shot (θ₀) and fine-tuned (θ₁) models.

`θ_α = (1 − α)·θ₀ + α·θ₁` over the image encoder and the (zero-shot-initialised) head; α = 0 is
zero-shot CLIP, α = 1 the fine-tuned model, default α = 0.5. `sweep` evaluates a list of α without
re-training. The fine-tuned θ₁ is what gets saved, so α can be changed after loading.
"""

from __future__ import annotations

import dataclasses

import torch

from .base import Adapter, assign_state
from .finetune import FineTune


def interpolate(
    theta0: dict[str, torch.Tensor], theta1: dict[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """`(1 − α)·θ₀ + α·θ₁` for floating-point tensors; integer buffers (e.g. BN counters) come from θ₁."""
    if theta0.keys() != theta1.keys():
        raise ValueError("the two models have different parameters")
    out = {}
    for k, b in theta1.items():
        a = theta0[k].to(b.device)
        out[k] = torch.lerp(a.to(b.dtype), b, alpha) if b.is_floating_point() else b.clone()
    return out


class WiSEFT(Adapter):
    method = "wise-ft"
    input = "encoded"

    @dataclasses.dataclass
    class Config(FineTune.Config):
        alpha: float = 0.5

    config: Config

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        ft = {k: v for k, v in self.hparams.items() if k != "alpha"}
        self.finetuned = FineTune(self.backbone, self.classnames, self.templates, **ft)
        self.merged = FineTune(self.backbone, self.classnames, self.templates, **ft).requires_grad_(False)
        self.alpha = self.config.alpha

    @classmethod
    def from_finetuned(cls, finetuned: FineTune, alpha: float = 0.5) -> "WiSEFT":
        """WiSE-FT of an already fine-tuned model (no training)."""
        wise = cls(finetuned.backbone, finetuned.classnames, finetuned.templates, alpha=alpha, **finetuned.hparams)
        assign_state(wise.finetuned, {k: v.detach().clone() for k, v in finetuned.state_dict().items()})
        wise.set_alpha(alpha)
        wise.eval()
        wise.fitted = True
        return wise

    def set_alpha(self, alpha: float) -> "WiSEFT":
        self.alpha = float(alpha)
        theta1 = {k: v.detach() for k, v in self.finetuned.state_dict().items()}
        assign_state(self.merged, interpolate(self.finetuned.zeroshot_state(), theta1, self.alpha))
        return self

    def _fit(self, train, val) -> None:
        self.finetuned.fit(train, val)
        self.set_alpha(self.alpha)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.merged.encode(pixels)

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.merged.logits(inputs)

    def sweep(self, alphas, score) -> list[tuple[float, float]]:
        """[(α, score(self))] for each α (e.g. score = accuracy on a shifted test set); restores α."""
        current, results = self.alpha, []
        for a in alphas:
            results.append((float(a), float(score(self.set_alpha(a)))))
        self.set_alpha(current)
        return results

    def _saved_state(self) -> dict[str, torch.Tensor]:
        return {f"finetuned.{k}": v.detach().cpu() for k, v in self.finetuned.state_dict().items()}

    def _load_saved_state(self, state: dict[str, torch.Tensor]) -> None:
        assign_state(self.finetuned, {k.removeprefix("finetuned."): v for k, v in state.items()})
        self.set_alpha(self.alpha)

    def _extra_state(self) -> dict:
        return {"alpha": self.alpha}

    def _set_extra_state(self, extra: dict) -> None:
        self.alpha = float(extra.get("alpha", self.alpha))
