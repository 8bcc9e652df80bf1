"""`optimize(model)`: a loaded CLIP → an inference engine with the model's encode semantics."""

from __future__ import annotations

import torch

from ..config import ModelConfig
from ..model import CLIP
from ..model.vision import VisionTransformer
from ..runtime.policy import ENGINE_BACKENDS, ENGINE_PRECISIONS, engine_precision
from .blocks import LinearSpec
from .compiled import compiled_engine
from .encoder import IMAGE_ROWS, TEXT_ROWS, UNCHUNKED, FastCLIP, image_chunk
from .linear import Kind, onednn_available
from .onnx import onnx_engine
from .text import FastText
from .vision import FastResNet, FastViT

#: what an engine runs (`clipforge.runtime.policy` decides which one "auto" means)
PRECISIONS: tuple[str, ...] = ENGINE_PRECISIONS
BACKENDS: tuple[str, ...] = ENGINE_BACKENDS

def default_options(device: str | torch.device | None = None) -> tuple[str, str]:
    """(precision, backend) of an engine built with no precision given: the runtime policy's choice."""
    return engine_precision(device if device is not None else "cpu"), "torch"


def engine_refusal(config: ModelConfig) -> str | None:
    """Why the inference engines cannot run a model of `config` (None: they can)."""
    v, t = config.vision, config.text
    reasons = []
    if not t.causal:
        reasons.append("its text tower attends without a causal mask (OpenCLIP no_causal_mask, SigLIP)")
    if t.proj_bias:
        reasons.append("its text projection has a bias")
    if "gelu_tanh" in (v.act, t.act):
        reasons.append("it uses the tanh approximation of GELU")
    if v.kind == "vit" and (not v.class_token or v.patch_bias or not v.proj or v.pool == "map"):
        reasons.append("its image tower has SigLIP's layout (no class token, biased patches, attention pooling)")
    return "; ".join(reasons) or None


def optimize(
    model: CLIP,
    precision: str | None = None,
    backend: str = "torch",
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
        precision = engine_precision(model.device)
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {PRECISIONS}")
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: expected one of {BACKENDS}")
    refusal = engine_refusal(model.config)
    if refusal:
        raise ValueError(f"the engines do not run this model: {refusal}; use the plain model (backend 'none')")
    model = model.eval()
    if backend == "onnx":
        return onnx_engine(model, precision, onnx_dir)
    if compile:
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
        image: FastViT | FastResNet
        if isinstance(model.visual, VisionTransformer):
            image = FastViT(model.visual, LinearSpec(kind, dtype, IMAGE_ROWS), residual)
        else:
            image = FastResNet(model.visual, LinearSpec(kind, dtype, IMAGE_ROWS))
        text = FastText(model.text, LinearSpec(kind, dtype, TEXT_ROWS), residual)
    stream = " fp32-residual" if residual != dtype else ""
    return FastCLIP(model, image, text, precision, "torch", f"torch {kind} {precision}{stream}")


__all__ = [
    "BACKENDS", "IMAGE_ROWS", "PRECISIONS", "TEXT_ROWS", "UNCHUNKED", "FastCLIP",
    "default_options", "image_chunk", "linear_kind", "optimize", "torch_engine",
]
