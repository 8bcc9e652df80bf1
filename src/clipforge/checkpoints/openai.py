"""OpenAI / OpenCLIP key layout: detection, architecture inference, and the key map to native.

OpenAI and OpenCLIP (ViT and ModifiedResNet towers) share one layout. clipforge's native layout
keeps `visual.*` unchanged and moves the text tower's top-level keys under `text.`.
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch

from ..config import Activation, ModelConfig, PreprocessConfig, TextConfig, VisionConfig
from .io import CheckpointError

_TEXT_KEYS = ("transformer.", "token_embedding.", "positional_embedding", "ln_final.", "text_projection")
# Attributes OpenAI's TorchScript archives carry besides the weights.
_IGNORED = re.compile(r"(^|\.)(attn_mask|input_resolution|context_length|vocab_size)$")


def is_openai_layout(sd: dict[str, torch.Tensor]) -> bool:
    return "visual.conv1.weight" in sd and "token_embedding.weight" in sd


def is_native_layout(sd: dict[str, torch.Tensor]) -> bool:
    return "visual.conv1.weight" in sd and "text.token_embedding.weight" in sd


def openai_to_native(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in sd.items():
        if _IGNORED.search(key):
            continue
        out["text." + key if key.startswith(_TEXT_KEYS) else key] = value
    return out


def native_to_openai(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len("text.") :] if k.startswith("text.") else k: v for k, v in sd.items()}


def _count(sd: dict[str, torch.Tensor], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd if (m := rx.match(k))})


def config_from_openai_state(sd: dict[str, torch.Tensor], activation: Activation) -> ModelConfig:
    """Infer the architecture from OpenAI-layout weights.

    Head counts are not stored in the weights; like OpenAI and OpenCLIP we use width // 64 (ViT and
    text) and width * 32 // 64 (ResNet attention pool). The activation cannot be inferred at all
    and must be given.
    """
    embed_dim = sd["text_projection"].shape[1]
    text_width = sd["ln_final.weight"].shape[0]
    text = TextConfig(
        context_length=sd["positional_embedding"].shape[0],
        vocab_size=sd["token_embedding.weight"].shape[0],
        width=text_width,
        heads=max(1, text_width // 64),
        layers=_count(sd, r"transformer\.resblocks\.(\d+)\."),
        mlp_ratio=sd["transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / text_width,
        act=activation,
    )
    if "visual.class_embedding" in sd:
        width = sd["visual.conv1.weight"].shape[0]
        n_stem = _count(sd, r"visual\.stem\.(\d+)\.conv\.weight")
        stem = tuple(sd[f"visual.stem.{i}.conv.weight"].shape[0] for i in range(n_stem))
        stem_depth = 1 + _count(sd, r"visual\.stem\.0\.blocks\.(\d+)\.conv1\.weight")
        patch = sd["visual.conv1.weight"].shape[-1] * 2**n_stem
        grid = round(math.sqrt(sd["visual.positional_embedding"].shape[0] - 1))
        vision = VisionConfig(
            kind="vit",
            image_size=patch * grid,
            width=width,
            layers=_count(sd, r"visual\.transformer\.resblocks\.(\d+)\."),
            heads=max(1, width // 64),
            patch_size=patch,
            mlp_ratio=sd["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / width,
            act=activation,
            stem_widths=stem,
            stem_depth=stem_depth,
        )
    elif "visual.layer1.0.conv1.weight" in sd:
        width = sd["visual.layer1.0.conv1.weight"].shape[0]
        spatial = round(math.sqrt(sd["visual.attnpool.positional_embedding"].shape[0] - 1))
        vision = VisionConfig(
            kind="resnet",
            image_size=spatial * 32,
            width=width,
            layers=tuple(_count(sd, rf"visual\.layer{i}\.(\d+)\.") for i in range(1, 5)),
            heads=width * 32 // 64,
            act=activation,
        )
    else:
        raise CheckpointError(
            "OpenAI-layout weights with neither a ViT (visual.class_embedding) nor a ResNet "
            "(visual.layer1.*) image tower"
        )
    bias = float(sd["logit_bias"]) if "logit_bias" in sd else None
    return ModelConfig(embed_dim=embed_dim, vision=vision, text=text, init_logit_bias=bias)


def config_from_openclip_json(data: dict[str, Any]) -> ModelConfig:
    """Build a config from OpenCLIP's `open_clip_config.json` (`model_cfg` + `preprocess_cfg`)."""
    mc = data.get("model_cfg", data)
    vc, tc = mc.get("vision_cfg", {}), mc.get("text_cfg", {})
    unsupported = [
        k for k in ("timm_model_name", "hf_model_name", "ls_init_value", "attentional_pool") if vc.get(k) or tc.get(k)
    ]
    if unsupported:
        raise CheckpointError(f"open_clip_config.json uses {unsupported}, which clipforge does not support yet")
    act: Activation = "quick_gelu" if mc.get("quick_gelu") else "gelu"
    pool_type, ln_after_pool = vc.get("pool_type", "tok"), bool(vc.get("final_ln_after_pool", False))
    if pool_type not in ("tok", "avg") or (pool_type == "avg" and ln_after_pool):
        raise CheckpointError(
            f"open_clip_config.json vision pool_type={pool_type!r}, final_ln_after_pool={ln_after_pool} is not "
            "supported; clipforge reads 'tok' (class token) and 'avg' with the LayerNorm before pooling"
        )
    layers = vc.get("layers", 12)
    is_rn = isinstance(layers, (list, tuple))
    width = vc.get("width", 768)
    head_width = vc.get("head_width", 64)
    vision = VisionConfig(
        kind="resnet" if is_rn else "vit",
        image_size=_as_int(vc.get("image_size", 224)),
        width=width,
        layers=tuple(layers) if is_rn else layers,
        heads=width * 32 // head_width if is_rn else width // head_width,
        patch_size=vc.get("patch_size", 16),
        mlp_ratio=vc.get("mlp_ratio", 4.0),
        act=act,
        pool="mean" if pool_type == "avg" else "cls",
    )
    text = TextConfig(
        context_length=tc.get("context_length", 77),
        vocab_size=tc.get("vocab_size", 49408),
        width=tc.get("width", 512),
        heads=tc.get("heads", 8),
        layers=tc.get("layers", 12),
        mlp_ratio=tc.get("mlp_ratio", 4.0),
        act=act,
    )
    pc = data.get("preprocess_cfg", {})
    preprocess = PreprocessConfig(
        image_size=vision.image_size,
        mean=tuple(pc.get("mean", PreprocessConfig.mean)),
        std=tuple(pc.get("std", PreprocessConfig.std)),
        interpolation=pc.get("interpolation", "bicubic"),
        resize_mode="squash" if pc.get("resize_mode") == "squash" else "shortest",
    )
    return ModelConfig(
        embed_dim=mc.get("embed_dim", 512),
        vision=vision,
        text=text,
        init_logit_bias=mc.get("init_logit_bias"),
        preprocess=preprocess,
    )


def _as_int(size: int | list[int]) -> int:
    if isinstance(size, (list, tuple)):
        if len(set(size)) != 1:
            raise CheckpointError(f"non-square image_size {size} is not supported")
        return int(size[0])
    return int(size)


def openclip_json(cfg: ModelConfig) -> dict[str, Any]:
    """`open_clip_config.json` contents for an OpenCLIP-layout export of `cfg`."""
    if cfg.vision.act != cfg.text.act:
        raise CheckpointError("OpenCLIP configs use one activation for both towers; this model mixes them")
    v, t = cfg.vision, cfg.text
    if v.stem_widths:
        raise CheckpointError(
            "OpenCLIP's VisionTransformer has no convolutional stem (vision.stem_widths); "
            "export this model as native"
        )
    vision_cfg: dict[str, Any] = {
        "image_size": v.image_size,
        "layers": list(v.layers) if v.kind == "resnet" else v.layers,
        "width": v.width,
        "mlp_ratio": v.mlp_ratio,
    }
    if v.kind == "vit":
        vision_cfg.update(patch_size=v.patch_size, head_width=v.width // v.heads)
        if v.pool == "mean":  # LN on every token, then the mean of the patch tokens
            vision_cfg.update(pool_type="avg", final_ln_after_pool=False)
    else:
        vision_cfg.update(head_width=v.width * 32 // v.heads)
    model_cfg: dict[str, Any] = {
        "embed_dim": cfg.embed_dim,
        "quick_gelu": v.act == "quick_gelu",
        "vision_cfg": vision_cfg,
        "text_cfg": {
            "context_length": t.context_length,
            "vocab_size": t.vocab_size,
            "width": t.width,
            "heads": t.heads,
            "layers": t.layers,
            "mlp_ratio": t.mlp_ratio,
        },
    }
    if cfg.init_logit_bias is not None:
        model_cfg["init_logit_bias"] = cfg.init_logit_bias
    p = cfg.preprocess
    return {
        "model_cfg": model_cfg,
        "preprocess_cfg": {
            "mean": list(p.mean),
            "std": list(p.std),
            "interpolation": p.interpolation,
            "resize_mode": "squash" if p.resize_mode == "squash" else "shortest",
        },
    }
