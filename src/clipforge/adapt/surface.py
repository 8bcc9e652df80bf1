"""What `clipforge classify` and `clipforge eval` need from an adapted model: an image "encoder" and a head.

`load_adapted(dir)` returns an `AdaptedModel`: `.encoder` has the model surface those commands use
(`encode_image(pixels, normalize=...)`, `config.embed_dim`, `device`, `dtype`, `state_dict()`), and
`.classnames` / `.logits(x)` / `.probabilities(x)` match `ZeroShotClassifier`. The encoder returns
the adapter's *input* (backbone features, the adapter's own features, or flattened pixels for
test-time methods); it ignores `normalize`, because each adapter expects its own representation.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .base import Adapter, Backbone, load_adapter


@dataclasses.dataclass
class EncoderConfig:
    embed_dim: int
    method: str
    backbone: str
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class AdapterEncoder(nn.Module):
    """Maps preprocessed pixels to the adapter's input, flattened to [N, embed_dim]."""

    def __init__(self, adapter: Adapter) -> None:
        super().__init__()
        self.adapter = adapter
        bb = adapter.backbone
        size = bb.preprocess.config.image_size
        dim = 3 * size * size if adapter.input == "pixels" else bb.embed_dim
        self.config = EncoderConfig(dim, adapter.method, bb.fingerprint, f"{adapter.method}-adapted")

    @property
    def device(self) -> torch.device:
        return self.adapter.backbone.device

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.adapter.backbone.model.logit_scale

    @torch.no_grad()
    def encode_image(self, pixels: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        return self.adapter.encode(pixels.float()).reshape(len(pixels), -1)


@dataclasses.dataclass
class AdaptedModel:
    """An adapter with its preprocessing and the encoder surface; `logits` takes `encoder.encode_image` output."""

    adapter: Adapter
    encoder: AdapterEncoder
    preprocess: Any
    tokenizer: Any

    @classmethod
    def wrap(cls, adapter: Adapter) -> "AdaptedModel":
        bb = adapter.backbone
        return cls(adapter, AdapterEncoder(adapter), bb.preprocess, bb.tokenizer)

    @property
    def classnames(self) -> list[str]:
        return self.adapter.classnames

    @property
    def logit_bias(self) -> None:
        return None

    @torch.no_grad()
    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.adapter.logits(inputs.float())

    def probabilities(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.logits(inputs).softmax(dim=-1)


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
