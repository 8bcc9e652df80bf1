"""WinCLIP's compositional prompt ensemble: state words × templates, for "normal" and "anomalous".

A class's text embedding is the mean of all its L2-normalised prompt embeddings (every template
filled with every state, each state filled with the object's name), L2-normalised again. The
state words and templates are WinCLIP's (Jeong et al., 2023, appendix); users pass their own for
models with another vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..zeroshot import check_queries, classifier_weights, warn_unknown_words

NORMAL_STATES: tuple[str, ...] = (
    "{}",
    "flawless {}",
    "perfect {}",
    "unblemished {}",
    "{} without flaw",
    "{} without defect",
    "{} without damage",
)
ANOMALOUS_STATES: tuple[str, ...] = ("damaged {}", "{} with flaw", "{} with defect", "{} with damage")
TEMPLATES: tuple[str, ...] = (
    "a cropped photo of the {}.",
    "a close-up photo of a {}.",
    "a close-up photo of the {}.",
    "a bright photo of a {}.",
    "a bright photo of the {}.",
    "a dark photo of the {}.",
    "a dark photo of a {}.",
    "a jpeg corrupted photo of the {}.",
    "a blurry photo of the {}.",
    "a blurry photo of a {}.",
    "a photo of a {}.",
    "a photo of the {}.",
    "a photo of a small {}.",
    "a photo of the small {}.",
    "a photo of a large {}.",
    "a photo of the large {}.",
    "a photo of the {} for visual inspection.",
    "a photo of a {} for visual inspection.",
    "a photo of the {} for anomaly detection.",
    "a photo of a {} for anomaly detection.",
)


@dataclass(frozen=True)
class StatePrompts:
    """The prompt ensemble's parts; `prompts(object_name)` lists (normal, anomalous) sentences."""

    normal: Sequence[str] = NORMAL_STATES
    anomalous: Sequence[str] = ANOMALOUS_STATES
    templates: Sequence[str] = TEMPLATES

    def prompts(self, object_name: str) -> tuple[list[str], list[str]]:
        def fill(states: Sequence[str]) -> list[str]:
            return [t.format(s.format(object_name)) for s in states for t in self.templates]

        return fill(self.normal), fill(self.anomalous)


def category_words(category: str) -> str:
    """A category folder's name as words ("metal_nut" → "metal nut")."""
    return category.replace("_", " ").replace("-", " ").strip() or "object"


@torch.no_grad()
def state_embeddings(model, tokenizer, name: str, prompts: StatePrompts | None = None) -> torch.Tensor:
    """[2, embed_dim]: the normal and the anomalous text embeddings of `name` (rows L2-normalised)."""
    normal, anomalous = (prompts or StatePrompts()).prompts(name)
    warn_unknown_words(check_queries(tokenizer, normal + anomalous), stacklevel=3)
    rows = []
    for sentences in (normal, anomalous):
        per_prompt = classifier_weights(model, tokenizer, sentences, ["{}"], check=False)  # [P, D], normalised
        rows.append(torch.nn.functional.normalize(per_prompt.mean(dim=0), dim=-1))
    return torch.stack(rows)
