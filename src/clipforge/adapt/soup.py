"""Model soups (METHODS §13): average the weights of several fine-tunes of the same zero-shot model.

Ingredients are `FineTune` runs that differ in hyperparameters (`ingredients`: a list of overrides
of the fine-tuning config). Uniform soup: the mean of all. Greedy soup: sort the ingredients by
held-out accuracy and add each one only if the running average's held-out accuracy improves — the
held-out set is the validation data given to `fit` (required for greedy).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import torch

from .base import Adapter, assign_state
from .finetune import FineTune

DEFAULT_INGREDIENTS = (
    {"lr": 3e-5, "seed": 0},
    {"lr": 1e-4, "seed": 1},
    {"lr": 1e-4, "seed": 2},
    {"lr": 3e-4, "seed": 3},
)


def average_states(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Element-wise mean of floating-point tensors (integer buffers from the first state)."""
    out = {}
    for k, v in states[0].items():
        out[k] = torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype) if v.is_floating_point() else v.clone()
    return out


def accuracy(adapter: Adapter, data) -> float:
    """Top-1 accuracy of an adapter on data with pixels (helper used for greedy selection)."""
    with torch.no_grad():
        pred = adapter.logits(adapter.encode(data.pixels)).argmax(-1)
    return float((pred == data.labels).float().mean())


class ModelSoup(Adapter):
    method = "soup"
    input = "encoded"

    @dataclasses.dataclass
    class Config(FineTune.Config):
        mode: str = "greedy"  # "greedy" or "uniform"
        ingredients: list = dataclasses.field(default_factory=lambda: [dict(x) for x in DEFAULT_INGREDIENTS])

    config: Config

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.config.mode not in ("greedy", "uniform"):
            raise ValueError(f"soup mode must be 'greedy' or 'uniform', got {self.config.mode!r}")
        self.soup = FineTune(self.backbone, self.classnames, self.templates, **self._ft_config()).requires_grad_(False)
        self.chosen: list[int] = []
        self.held_out: list[float] = []

    def _ft_config(self, **overrides) -> dict:
        base = {k: v for k, v in self.hparams.items() if k not in ("mode", "ingredients")}
        return base | overrides

    def _fit(self, train, val) -> None:
        if self.config.mode == "greedy" and val is None:
            raise ValueError("the greedy soup needs held-out validation data")
        models = [
            FineTune(self.backbone, self.classnames, self.templates, **self._ft_config(**ing)).fit(train)
            for ing in self.config.ingredients
        ]
        self.cook(models, val)

    def cook(self, models: Sequence[FineTune], val=None) -> "ModelSoup":
        """Make the soup from already fine-tuned ingredients (uniform, or greedy on `val`)."""
        states = [{k: v.detach() for k, v in m.state_dict().items()} for m in models]
        if self.config.mode == "uniform":
            self.chosen = list(range(len(models)))
            assign_state(self.soup, average_states(states))
        else:
            if val is None:
                raise ValueError("the greedy soup needs held-out validation data")
            val.ensure(self.backbone, pixels=True)
            scores = [accuracy(m, val) for m in models]
            order = sorted(range(len(models)), key=lambda i: -scores[i])
            self.chosen, best = [order[0]], scores[order[0]]
            for i in order[1:]:
                assign_state(self.soup, average_states([states[j] for j in self.chosen + [i]]))
                acc = accuracy(self.soup, val)
                if acc > best:
                    self.chosen, best = self.chosen + [i], acc
            self.held_out = scores + [best]
            assign_state(self.soup, average_states([states[j] for j in self.chosen]))
        self.eval()
        self.fitted = True
        return self

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.soup.encode(pixels)

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.soup.logits(inputs)

    def _extra_state(self) -> dict:
        return {"chosen": self.chosen, "held_out_accuracy": self.held_out}

    def _set_extra_state(self, extra: dict) -> None:
        self.chosen, self.held_out = list(extra.get("chosen", [])), list(extra.get("held_out_accuracy", []))
