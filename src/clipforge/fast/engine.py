"""`optimize(model)`: a loaded CLIP → an inference engine with the model's encode semantics."""

from __future__ import annotations

from typing import Callable, Literal

import torch
import torch.nn.functional as F

from ..model import CLIP
from ..model.vision import VisionTransformer
from .blocks import LinearSpec
from .linear import Kind, onednn_available
from .text import FastText
from .vision import FastResNet, FastViT

Precision = Literal["fp32", "bf16", "int8"]
Backend = Literal["torch", "onnx"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "int8")
BACKENDS: tuple[str, ...] = ("torch", "onnx")

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
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale

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


def default_options(device: str | torch.device | None = None) -> tuple[str, str]:
    """(precision, backend) for a device: fp32 on the CPU (features within 1e-4 of the model, about
    2× faster than it), bf16 on CUDA devices that support it. bf16 on the CPU is opt-in."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16", "torch"
    return "fp32", "torch"


def optimize(
    model: CLIP,
    precision: Precision | None = None,
    backend: Backend = "torch",
    compile: bool = False,
    onnx_dir: str | None = None,
    residual_fp32: bool = True,
) -> FastCLIP:
    """An inference engine for `model` (not modified; its weights are copied and prepared).

    precision: "fp32" (features within 1e-4 of the model), "bf16" (bf16 weights and activations,
    fp32 LayerNorm statistics) or "int8" (dynamic quantisation of every linear); None picks
    `default_options(model.device)`. backend: "torch" (prepared oneDNN kernels on CPU, plain
    kernels elsewhere) or "onnx" (ONNX Runtime; fp32 and int8). compile: additionally run the
    towers through `torch.compile` (inductor); the first calls of each new shape take much longer.
    residual_fp32 (bf16 only): keep the transformers' residual streams and LayerNorms in fp32, as
    bf16 autocast does (default); False runs everything in bf16: 5–15% faster, about twice the error.
    """
    if precision is None:
        precision = default_options(model.device)[0]  # type: ignore[assignment]
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {PRECISIONS}")
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: expected one of {BACKENDS}")
    model = model.eval()
    if backend == "onnx":
        from .onnx import onnx_engine

        return onnx_engine(model, precision, onnx_dir)
    if compile:
        from .compiled import compiled_engine

        return compiled_engine(model, precision)
    residual = torch.float32 if residual_fp32 or precision != "bf16" else None
    return torch_engine(model, precision, residual_dtype=residual)


def linear_kind(precision: str, device: torch.device) -> tuple[Kind, torch.dtype]:
    if precision == "int8":
        if device.type != "cpu":
            raise ValueError("int8 dynamic quantisation runs on the CPU only")
        return "int8", torch.float32
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    return ("onednn" if device.type == "cpu" and onednn_available() else "aten"), dtype


def torch_engine(
    model: CLIP, precision: str, kind: Kind | None = None, residual_dtype: torch.dtype | None = None
) -> FastCLIP:
    """The eager engine: prepared linears, packed text tokens, folded ResNet BatchNorm.

    `kind` forces the linear kernels ("onednn", "aten", "int8"); by default they follow the device.
    `residual_dtype` is the dtype of the transformer's residual stream (default: the compute dtype).
    """
    auto_kind, dtype = linear_kind(precision, model.device)
    kind = kind or auto_kind
    residual = residual_dtype or dtype
    with torch.no_grad():
        if isinstance(model.visual, VisionTransformer):
            image = FastViT(model.visual, LinearSpec(kind, dtype, IMAGE_ROWS), residual)
        else:
            image = FastResNet(model.visual, LinearSpec(kind, dtype, IMAGE_ROWS))
        text = FastText(model.text, LinearSpec(kind, dtype, TEXT_ROWS), residual)
    stream = " fp32-residual" if residual != dtype else ""
    return FastCLIP(model, image, text, precision, "torch", f"torch {kind} {precision}{stream}")
