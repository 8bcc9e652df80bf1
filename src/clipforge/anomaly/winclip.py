"""WinCLIP and WinCLIP+ (Jeong et al., CVPR 2023): zero-/few-shot anomaly classification and segmentation.

Zero-shot: each view (the whole image and every window at each scale) is scored by the softmax,
at temperature 0.07, of its cosine similarity to the normal and the anomalous text embeddings of
the compositional prompt ensemble (`prompts.StatePrompts`); the anomalous probability is the view's
score. Window scores become per-cell maps by harmonic averaging; the whole-image score and the
scales' maps are combined by a harmonic mean. Few-shot (WinCLIP+, `shots` ≥ 1): a memory of the
normal images' window embeddings at every scale and their dense patch embeddings; a view's score
is half its cosine distance to the nearest memory entry of the same scale; the scales' maps are
averaged, and the result is averaged with the zero-shot map. Image score: zero-shot, the whole
image's; few-shot, the mean of that and the few-shot map's maximum.

Windows here are pixel crops of a grid×grid grid over the working image (default 16 cells, window
sizes 3 and 5 cells — about WinCLIP's 2 and 3 of 15 patches at 240 px, scaled to a 2× working
resolution), so ResNet towers work too; WinCLIP masks ViT tokens instead.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from ..model.clip import CLIP
from .base import ANOMALY_METHODS, AnomalyMethod, AnomalyScores
from .features import (
    harmonic_aggregate,
    harmonic_mean,
    image_embeddings,
    input_size,
    patch_embeddings,
    window_boxes,
    window_embeddings,
    working_pixels,
)
from .prompts import ANOMALOUS_STATES, NORMAL_STATES, TEMPLATES, StatePrompts, category_words, state_embeddings

TEMPERATURE = 0.07


def association(features: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """Half the cosine distance of each feature [..., D] to its nearest memory row [M, D] (both normalised)."""
    flat = features.reshape(-1, features.shape[-1])
    memory = memory.to(flat)
    best = torch.cat([(chunk @ memory.T).amax(dim=1) for chunk in flat.split(4096)])
    return ((1 - best) / 2).view(features.shape[:-1])


@ANOMALY_METHODS.register("winclip")
class WinCLIP(AnomalyMethod):
    """WinCLIP (zero-shot) and, once fitted on normal shots, WinCLIP+."""

    name = "winclip"
    zero_shot = True

    def __init__(
        self,
        model: CLIP,
        tokenizer: Any,
        category: str = "object",
        *,
        object_name: str | None = None,
        normal_states: Sequence[str] = NORMAL_STATES,
        anomalous_states: Sequence[str] = ANOMALOUS_STATES,
        templates: Sequence[str] = TEMPLATES,
        grid: int = 16,
        scales: Sequence[int] = (3, 5),
        window_stride: int = 1,
        image_size: int | None = None,
        temperature: float = TEMPERATURE,
    ) -> None:
        image_size = image_size or 2 * input_size(model)
        scale_cells = [int(k) for k in scales]
        options: dict[str, Any] = dict(
            object_name=object_name,
            normal_states=list(normal_states),
            anomalous_states=list(anomalous_states),
            templates=list(templates),
            grid=grid,
            scales=scale_cells,
            window_stride=window_stride,
            image_size=image_size,
            temperature=temperature,
        )
        super().__init__(model, tokenizer, category, **options)
        for k in scale_cells:
            window_boxes(grid, k, window_stride)  # a window larger than the grid fails here, not mid-run
        if image_size % grid:
            raise ValueError(f"winclip: image_size {image_size} is not a multiple of grid {grid}")
        self.text = self._text_embeddings()

    def _text_embeddings(self) -> torch.Tensor:
        """[2, embed_dim]: the normal and the anomalous text embedding (the prompt ensemble's)."""
        o = self.options
        prompts = StatePrompts(o["normal_states"], o["anomalous_states"], o["templates"])
        return state_embeddings(self.model, self.tokenizer, o["object_name"] or category_words(self.category), prompts)

    @property
    def few_shot(self) -> bool:
        return "patch" in self.memory

    def forget_shots(self) -> None:
        """Drop the few-shot memory (back to zero-shot scoring)."""
        for key in [k for k in self.memory if k == "patch" or k.startswith("window_")]:
            del self.memory[key]
        self.shots = 0

    def views(self, images: Sequence[Image.Image]) -> dict[str, torch.Tensor]:
        """Every embedding WinCLIP reads of `images`: "image" [N, D], "window_K" [N, n_windows, D] per
        scale K and "patch" [N, h, w, D]. Scoring from views lets one embedding pass serve several
        memories (the 0/1/2/4-shot comparison of the benchmark)."""
        o = self.options
        n_windows = sum(len(window_boxes(o["grid"], k, o["window_stride"])) for k in o["scales"])
        step = max(1, 1024 // n_windows)
        parts: dict[str, list[torch.Tensor]] = {}
        for i in range(0, len(images), step):
            pixels = working_pixels(self.model, images[i : i + step], o["image_size"])
            found = {"image": image_embeddings(self.model, pixels, self.encoder)}
            for k in o["scales"]:
                windows = window_embeddings(self.model, pixels, o["grid"], k, o["window_stride"], self.encoder)
                found[f"window_{k}"] = windows
            found["patch"] = patch_embeddings(self.model, pixels)
            for key, value in found.items():
                parts.setdefault(key, []).append(value.float().cpu())
        return {key: torch.cat(values) for key, values in parts.items()}

    def _text_score(self, features: torch.Tensor) -> torch.Tensor:
        logits = features @ self.text.to(features).T / self.options["temperature"]
        return logits.softmax(dim=-1)[..., 1]

    def _fit(self, images: list[Image.Image]) -> None:
        views = self.views(images)
        self.memory.update({key: value.flatten(0, -2) for key, value in views.items() if key != "image"})

    def _score(self, images: list[Image.Image]) -> AnomalyScores:
        return self.score_views(self.views(images))

    def score_views(self, views: dict[str, torch.Tensor]) -> AnomalyScores:
        """Scores from `views(images)` with the current memory (zero-shot when there is none)."""
        o = self.options
        grid, stride = o["grid"], o["window_stride"]
        score = self._text_score(views["image"])
        zero = [score[:, None, None].expand(-1, grid, grid)]
        zero += [harmonic_aggregate(self._text_score(views[f"window_{k}"]), grid, k, stride) for k in o["scales"]]
        score_map = harmonic_mean(zero)
        if self.few_shot:
            few = [
                harmonic_aggregate(association(views[f"window_{k}"], self.memory[f"window_{k}"]), grid, k, stride)
                for k in o["scales"]
            ]
            patches = association(views["patch"], self.memory["patch"])
            few.append(F.interpolate(patches[:, None], size=(grid, grid), mode="bilinear", align_corners=False)[:, 0])
            few_map = torch.stack(few).mean(dim=0)
            score_map = (score_map + few_map) / 2
            score = (score + few_map.flatten(1).amax(dim=1)) / 2
        return AnomalyScores(score.float(), score_map.float())
