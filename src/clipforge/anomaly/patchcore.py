"""A PatchCore-style baseline (Roth et al., CVPR 2022): nearest normal patch, no language at all.

Memory: the mid-level, neighbourhood-averaged feature of every patch of the normal shots
(`features.mid_level_maps`), cut to at most `memory_size` rows by greedy k-center coreset
selection (on a random projection, as in PatchCore). A patch's score is its Euclidean distance to
the nearest memory row (exact, by chunked distance matrices on the model's device); an image's
score is its largest patch score; maps are smoothed with a Gaussian of σ = 4 output pixels when
upsampled. It measures what the same image tower's features give without text, so the CLIP
methods have a non-language reference.
"""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

from ..model.clip import CLIP
from .base import ANOMALY_METHODS, AnomalyMethod, AnomalyScores
from .features import input_size, mid_level_maps, working_pixels


def greedy_coreset(features: torch.Tensor, size: int, projection_dim: int = 128, seed: int = 0) -> torch.Tensor:
    """Indices of `size` rows chosen by greedy k-center (each pick the row farthest from those chosen)."""
    n = features.shape[0]
    if size >= n:
        return torch.arange(n)
    g = torch.Generator().manual_seed(seed)
    dim = features.shape[1]
    if dim > projection_dim:
        projection = torch.randn(dim, projection_dim, generator=g) / projection_dim**0.5
        features = features @ projection.to(features)
    chosen = [int(torch.randint(n, (1,), generator=g))]
    distance = torch.cdist(features, features[chosen]).squeeze(1)
    for _ in range(size - 1):
        nxt = int(distance.argmax())
        chosen.append(nxt)
        distance = torch.minimum(distance, torch.cdist(features, features[nxt : nxt + 1]).squeeze(1))
    return torch.tensor(chosen)


@ANOMALY_METHODS.register("patchcore")
class PatchCore(AnomalyMethod):
    """Nearest-neighbour patch distances to a memory of normal mid-level features (few-shot only)."""

    name = "patchcore"
    map_sigma = 4.0

    def __init__(
        self,
        model: CLIP,
        tokenizer: Any = None,
        category: str = "object",
        *,
        image_size: int | None = None,
        memory_size: int = 20000,
    ) -> None:
        if memory_size < 1:
            raise ValueError(f"patchcore: memory_size must be at least 1, got {memory_size}")
        image_size = image_size or 2 * input_size(model)
        super().__init__(model, tokenizer, category, image_size=image_size, memory_size=memory_size)

    def _features(self, images: list[Image.Image]) -> torch.Tensor:
        return mid_level_maps(self.model, working_pixels(self.model, images, self.options["image_size"]))

    def _fit(self, images: list[Image.Image]) -> None:
        rows = torch.cat([self._features(images[i : i + 16]).flatten(0, 2) for i in range(0, len(images), 16)])
        keep = greedy_coreset(rows.float().cpu(), self.options["memory_size"])
        self.memory = {"patches": rows.float()[keep.to(rows.device)].contiguous()}

    def _score(self, images: list[Image.Image]) -> AnomalyScores:
        memory = self.memory["patches"].float()
        image_scores, maps = [], []
        for i in range(0, len(images), 16):
            feats = self._features(images[i : i + 16]).float().to(memory.device)
            n, h, w, d = feats.shape
            flat = feats.reshape(-1, d)
            nearest = torch.cat([torch.cdist(chunk, memory).amin(dim=1) for chunk in flat.split(1024)])
            score_map = nearest.view(n, h, w).cpu()
            maps.append(score_map)
            image_scores.append(score_map.flatten(1).amax(dim=1))
        return AnomalyScores(torch.cat(image_scores), torch.cat(maps))
