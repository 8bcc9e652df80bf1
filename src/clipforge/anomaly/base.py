"""The anomaly-method interface: fit on a few normal images (or none), score images, save, load.

Every method returns an image score and a score map per image (higher = more anomalous), on its
own grid; `upsample_map` brings a map to an image's size for pixel metrics and overlays. A fitted
method saves to a folder (`anomaly.json`: method, options, shots; `memory.safetensors`: what it
learnt) and loads back bit-identically with the same model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

from ..checkpoints.io import save_safetensors
from ..fast.encoder import plain_clip
from ..files import write_json_atomic
from ..registry import Registry

#: anomaly methods: name → an `AnomalyMethod` class (`clipforge.anomaly`)
ANOMALY_METHODS: Registry[type] = Registry("anomaly method")
FORMAT = "clipforge-anomaly/1"


@dataclass
class AnomalyScores:
    """`image` [N] and `maps` [N, h, w] (float32, higher = more anomalous)."""

    image: torch.Tensor
    maps: torch.Tensor


def upsample_map(score_map: torch.Tensor, size: tuple[int, int], sigma: float = 0.0) -> np.ndarray:
    """One map [h, w] → [H, W] (bilinear), optionally Gaussian-smoothed with `sigma` output pixels."""
    up = F.interpolate(score_map[None, None].float(), size=size, mode="bilinear", align_corners=False)[0, 0]
    out = up.cpu().numpy()
    if sigma > 0:
        from scipy.ndimage import gaussian_filter  # scipy comes with the anomaly extra (scikit-learn)

        out = gaussian_filter(out, sigma=sigma)
    return out


def heat_overlay(image: Image.Image, heat: np.ndarray, lo: float, hi: float) -> Image.Image:
    """The image under a jet-coloured heat map [H, W] (alpha 0.5), scaled from `lo` to `hi`."""
    from matplotlib import colormaps  # matplotlib: the anomaly extra

    scaled = np.clip((heat - lo) / max(hi - lo, 1e-12), 0, 1)
    colour = colormaps["jet"](scaled)[..., :3] * 255
    rgb = np.asarray(image.convert("RGB").resize((heat.shape[1], heat.shape[0])), dtype=np.float32)
    return Image.fromarray((0.5 * rgb + 0.5 * colour).clip(0, 255).astype(np.uint8))


class AnomalyMethod:
    """Base class: subclasses set `name`, `zero_shot`, implement `_fit`/`_score` and list their
    learnt tensors in `memory` (a dict of name → tensor) and their settings in `options`."""

    name: ClassVar[str] = ""
    zero_shot: ClassVar[bool] = False  # scores without any normal shot
    map_sigma: ClassVar[float] = 0.0  # Gaussian smoothing of upsampled maps, in output pixels

    def __init__(self, model: Any, tokenizer: Any, category: str = "object", **options: Any) -> None:
        self.encoder = model  # whole-image and window embeddings: a fast engine's path when given one
        self.model = plain_clip(model, f"anomaly method {self.name}")  # block-level readouts
        self.tokenizer, self.category = tokenizer, category
        self.options: dict[str, Any] = options
        self.memory: dict[str, torch.Tensor] = {}
        self.shots = 0

    def fit(self, normal_images: Sequence[Image.Image]) -> "AnomalyMethod":
        """Remember `normal_images` (the k shots); methods without a memory ignore them."""
        if not normal_images and not self.zero_shot:
            raise ValueError(f"{self.name} needs at least one normal image (--shots ≥ 1)")
        self.shots = len(normal_images)
        if normal_images:
            self._fit(list(normal_images))
        return self

    def score(self, images: Sequence[Image.Image]) -> AnomalyScores:
        if not self.zero_shot and not self.memory:
            raise ValueError(f"{self.name} has no memory: fit it on normal images first")
        if not images:
            raise ValueError("score: no images given")
        return self._score(list(images))

    def _fit(self, images: list[Image.Image]) -> None:
        raise NotImplementedError

    def _score(self, images: list[Image.Image]) -> AnomalyScores:
        raise NotImplementedError

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_safetensors({k: v.detach().cpu() for k, v in self.memory.items()}, directory / "memory.safetensors")
        meta = {"format": FORMAT, "method": self.name, "category": self.category, "shots": self.shots,
                "model_fingerprint": self.model.fingerprint()}
        write_json_atomic(directory / "anomaly.json", {**meta, "options": self.options})
        return directory

    @staticmethod
    def load(directory: str | Path, model: Any, tokenizer: Any) -> "AnomalyMethod":
        """A method saved by `save`, with its memory, for `model` (the one it was fitted with)."""
        directory = Path(directory)
        meta_path = directory / "anomaly.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{directory}: no anomaly.json (expected a folder written by `anomaly fit`)")
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{meta_path}: not valid JSON ({exc.msg}, line {exc.lineno})") from exc
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError(f"{meta_path}: not a clipforge anomaly memory (expected format {FORMAT!r})")
        cls = ANOMALY_METHODS.get(str(meta.get("method")))
        options = meta.get("options", {})
        if not isinstance(options, dict):
            raise ValueError(f"{meta_path}: 'options' must be an object of the method's settings")
        want = meta.get("model_fingerprint")
        plain = plain_clip(model, "anomaly memories")
        if want and plain.fingerprint() != want:
            raise ValueError(f"{directory}: this memory was fitted with another model (fingerprint {want}); "
                             f"pass the --model it was fitted with")
        try:
            method: AnomalyMethod = cls(model, tokenizer, category=meta.get("category", "object"), **options)
        except TypeError as exc:
            raise ValueError(f"{meta_path}: options the {meta.get('method')} method does not take ({exc})") from exc
        memory_path = directory / "memory.safetensors"
        if not memory_path.is_file():
            raise FileNotFoundError(f"{directory}: no memory.safetensors beside anomaly.json")
        method.memory = {k: v.to(model.device) for k, v in load_file(str(memory_path)).items()}
        method.shots = int(meta.get("shots", 0))
        method._loaded()
        return method

    def _loaded(self) -> None:
        """Hook: rebuild derived state after `load` (e.g. a search index over the memory)."""
