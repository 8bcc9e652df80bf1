"""An adapted model for `clipforge classify`, `clipforge eval` and Python: a real encoder and a classifier head.

`load_adapted(dir)` returns an `AdaptedModel`. Its `encoder` satisfies the encoder protocol
(`clipforge.runtime.Encoder`) for real: image features are the adapter's own image tower for
methods that change it (fine-tuning, LoRA, WiSE-FT, soups, MaPLe) and the frozen backbone's
otherwise; text features, logit scale and bias are the backbone's. The head (`classnames`,
`logits(features)`, `probabilities(features)`, like `ZeroShotClassifier`) takes the encoder's
*un-normalised* image features, so features can be cached once and classified many times.
Test-time methods (TPT) adapt on each image's augmented views; they need the pixels and are used
through `Adapter.logits` in Python, not through cached features.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F

from ..model.clip import CLIP, weights_fingerprint
from .base import Adapter, Backbone, load_adapter


class AdaptedEncoder:
    """The encoder protocol over a fitted adapter: its image features, the backbone's text features."""

    def __init__(self, adapter: Adapter) -> None:
        if adapter.input == "pixels":
            raise ValueError(
                f"{adapter.method} adapts at test time on each image's augmented views, so it has no fixed "
                "image encoder; call the adapter's logits on pixels in Python instead of classify/eval --adapter"
            )
        self.adapter = adapter
        self.backbone = cast(CLIP, adapter.backbone.model)
        self.name = f"{adapter.method}-adapted"

    @property
    def embed_dim(self) -> int:
        return self.adapter.backbone.embed_dim

    @property
    def device(self) -> torch.device:
        return self.adapter.backbone.device

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.backbone.logit_scale

    @property
    def logit_bias(self) -> torch.Tensor | None:
        return self.backbone.logit_bias

    @property
    def runtime(self) -> str:
        return f"{self.adapter.method} adapter on {self.backbone.runtime}"

    @torch.no_grad()
    def encode_image(self, pixels: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        feats = self.adapter.encode(pixels.float())
        return F.normalize(feats, dim=-1) if normalize else feats

    @torch.no_grad()
    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        return self.backbone.encode_text(tokens, normalize=normalize)

    def logits(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        return self.backbone.logits(image_features, text_features)

    def fingerprint(self) -> str:
        """The backbone's weights and the adapter's own tensors."""
        meta = {"backbone": self.adapter.backbone.fingerprint, "method": self.adapter.method}
        return weights_fingerprint(meta, self.adapter.state_dict())


@dataclasses.dataclass
class AdaptedModel:
    """An adapter with its encoder, preprocessing and tokenizer; `logits` takes `encoder.encode_image` output."""

    adapter: Adapter
    encoder: AdaptedEncoder
    preprocess: Any
    tokenizer: Any

    @classmethod
    def wrap(cls, adapter: Adapter) -> "AdaptedModel":
        bb = adapter.backbone
        return cls(adapter, AdaptedEncoder(adapter), bb.preprocess, bb.tokenizer)

    @property
    def classnames(self) -> list[str]:
        return self.adapter.classnames

    @torch.no_grad()
    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.adapter.logits(features.float())

    def probabilities(self, features: torch.Tensor) -> torch.Tensor:
        return self.logits(features).softmax(dim=-1)


def check_runtime(precision: str, backend: str | None) -> None:
    """Adapters compute on the fp32 model: refuse other precision/backend choices with the reason."""
    if precision not in ("auto", "fp32") or backend not in (None, "auto", "none"):
        raise ValueError("adapters run on the fp32 model: drop --precision/--backend when giving --adapter")


def load_adapted(
    directory: str | Path, model: Backbone | str | Path | None = None, device: str | None = "cpu"
) -> AdaptedModel:
    """Load a saved adapter (and its backbone: `model`, or the checkpoint path recorded in the adapter)."""
    if model is not None and not isinstance(model, Backbone):
        model = Backbone.load(model, device=device)
    return AdaptedModel.wrap(load_adapter(directory, model))
