"""`FastCLIP`: an inference engine's face, the encoder protocol over prepared towers."""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..model import CLIP
from ..model.vision import VisionTransformer

# Expected rows (batch × tokens) per linear call, the shape oneDNN packs the weights for.
IMAGE_ROWS = 32 * 50
TEXT_ROWS = 256 * 16
# Largest batch per call: bigger batches are run in chunks, because throughput falls once a call's
# activations outgrow the caches (ViT-B/32, whole batches vs chunks of 32 images / 128 captions: 128
# images fp32 -7%, int8 -22%; 256 captions fp32 -10%; bench/bench_chunks.py).
TEXT_CHUNK = 128
RESNET_IMAGE_CHUNK = 32
UNCHUNKED = 1 << 62


def image_chunk(model: CLIP) -> int:
    """Images per call: as many as fill IMAGE_ROWS token rows (32 for ViT-B/32, 8 for ViT-B/16)."""
    if not isinstance(model.visual, VisionTransformer):
        return RESNET_IMAGE_CHUNK
    return max(1, IMAGE_ROWS // (model.config.vision.grid_size**2 + 1))


def _in_chunks(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, size: int) -> torch.Tensor:
    if len(x) <= size:
        return fn(x)
    return torch.cat([fn(x[i : i + size]) for i in range(0, len(x), size)])


class FastCLIP:
    """Inference engine over a CLIP model's weights: `encode_image`, `encode_text`, `logits`.

    Inputs are the model's (fp32 pixels, int64 tokens); features come back as float32 whatever the
    compute precision. Holds its own prepared copies of the weights; the model is kept for
    `logit_scale`/`logit_bias` and as `engine.model`.
    """

    def __init__(
        self,
        model: CLIP,
        image_fn: Callable[[torch.Tensor], torch.Tensor],
        text_fn: Callable[[torch.Tensor], torch.Tensor],
        precision: str,
        backend: str,
        description: str,
    ) -> None:
        self.model = model
        self.config = model.config
        self.precision = precision
        self.backend = backend
        self.description = description
        self._image = image_fn
        self._text = text_fn
        #: largest batches per call of the prepared towers (larger inputs are split; see TEXT_CHUNK);
        #: CPU caches only: GPUs keep whole batches
        cpu = model.device.type == "cpu"
        self.image_chunk = image_chunk(model) if cpu else UNCHUNKED
        self.text_chunk = TEXT_CHUNK if cpu else UNCHUNKED

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype inputs are expected in (pixels are float32 whatever the compute precision)."""
        return torch.float32

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale

    def fingerprint(self) -> str:
        """The source model's weights (the engine's own prepared copies derive from them)."""
        return self.model.fingerprint()

    @property
    def logit_bias(self) -> torch.Tensor | None:
        return self.model.logit_bias

    @torch.inference_mode()
    def encode_image(self, pixels: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Image embeddings [B, embed_dim] (float32) from preprocessed pixels [B, 3, H, W]."""
        feats = _in_chunks(self._image, pixels, self.image_chunk)
        return F.normalize(feats, dim=-1) if normalize else feats

    @torch.inference_mode()
    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Text embeddings [B, embed_dim] (float32) from token ids [B, L]."""
        feats = _in_chunks(self._text, tokens, self.text_chunk)
        return F.normalize(feats, dim=-1) if normalize else feats

    def logits(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        return self.model.logits(image_features, text_features)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The source model's weights (what the engine computes with, before preparation)."""
        return self.model.state_dict()

    @property
    def runtime(self) -> str:
        """Backend, kernels and precision, e.g. "torch onednn fp32" (part of feature-cache keys)."""
        return self.description

    def __repr__(self) -> str:
        return f"FastCLIP({self.description})"


def plain_clip(model: Any, purpose: str) -> CLIP:
    """The `CLIP` module itself, or the one behind a fast engine: readouts that change the towers'
    blocks (dense features, mid-level maps) need the module, not an engine's compiled path."""
    if isinstance(model, CLIP):
        return model
    if isinstance(model, FastCLIP) and isinstance(model.model, CLIP):
        return model.model
    kind = type(model).__name__
    raise ValueError(f"{purpose} needs a CLIP model (its image tower is read block by block), got {kind}")

