"""The encoder protocol: what every model-like object in clipforge offers, for real.

The plain `CLIP` module, every inference engine (`clipforge.fast.FastCLIP`: fp32/bf16/int8,
ONNX Runtime) and an adapted model's encoder satisfy it, so callers never probe with `getattr`.
It is checked statically (mypy over the package in CI) and by a conformance test that runs each
implementation through the same assertions (tests/test_encoder_protocol.py).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Encoder(Protocol):
    """Images and texts → embeddings in one space, plus the scale (and bias) that turns them into logits.

    Inputs are preprocessed pixels `[B, 3, H, W]` in `dtype` on `device` and token ids `[B, L]`;
    outputs are `[B, embed_dim]` (L2-normalised when `normalize=True`). `runtime` names how the
    numbers are computed ("plain model float32", "torch onednn bf16 fp32-residual", ...): it is part
    of every feature-cache key, so features of different precisions are never mixed.
    """

    @property
    def name(self) -> str:
        """The model's name for reports (the config's name; "" when it has none)."""
        ...

    @property
    def embed_dim(self) -> int: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    @property
    def logit_scale(self) -> torch.Tensor: ...

    @property
    def logit_bias(self) -> torch.Tensor | None: ...

    @property
    def runtime(self) -> str: ...

    def encode_image(self, pixels: torch.Tensor, normalize: bool = False) -> torch.Tensor: ...

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor: ...

    def logits(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """`exp(logit_scale) · cos (+ logit_bias)` of normalised features [N, d] × [C, d] → [N, C]."""
        ...

    def fingerprint(self) -> str:
        """Identifies the weights (not the runtime): feature caches and saved adapters record it."""
        ...


def pixel_input(encoder: Encoder, pixels: torch.Tensor) -> torch.Tensor:
    """`pixels` moved to the encoder's device and input dtype."""
    return pixels.to(device=encoder.device, dtype=encoder.dtype)
