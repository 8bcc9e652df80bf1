"""Hugging Face `CLIPModel` layout: config translation and the explicit key map to and from native.

HF splits the fused QKV projection into q/k/v, stores the two projections as transposed `Linear`
weights and names the vision pre-norm `pre_layrnorm` (sic).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from ..config import Activation, ModelConfig, PreprocessConfig, TextConfig, VisionConfig
from .io import CheckpointError

# Defaults of transformers' CLIP configs, for fields a saved config.json may omit.
_HF_TEXT_DEFAULTS = dict(
    vocab_size=49408,
    hidden_size=512,
    intermediate_size=2048,
    num_hidden_layers=12,
    num_attention_heads=8,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
    eos_token_id=49407,
    bos_token_id=49406,
    pad_token_id=1,
)
_HF_VISION_DEFAULTS = dict(
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    image_size=224,
    patch_size=32,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
    num_channels=3,
)
_ACTS: dict[str, Activation] = {"quick_gelu": "quick_gelu", "gelu": "gelu"}

_BLOCK = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "self_attn.out_proj": "attn.out_proj",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}
_TOP = {
    "vision_model.embeddings.class_embedding": "visual.class_embedding",
    "vision_model.embeddings.patch_embedding.weight": "visual.conv1.weight",
    "vision_model.embeddings.position_embedding.weight": "visual.positional_embedding",
    "vision_model.pre_layrnorm": "visual.ln_pre",
    "vision_model.post_layernorm": "visual.ln_post",
    "text_model.embeddings.token_embedding.weight": "text.token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "text.positional_embedding",
    "text_model.final_layer_norm": "text.ln_final",
    "logit_scale": "logit_scale",
    "logit_bias": "logit_bias",
}
_LAYER = re.compile(r"^(vision_model|text_model)\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$")
_TOWER = {"vision_model": "visual.transformer.resblocks", "text_model": "text.transformer.resblocks"}


def is_hf_layout(sd: dict[str, torch.Tensor]) -> bool:
    return (
        "vision_model.embeddings.patch_embedding.weight" in sd and "text_model.embeddings.token_embedding.weight" in sd
    )


def _pick(data: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    return {k: data.get(k, v) for k, v in defaults.items()}


def _act(name: str, where: str) -> Activation:
    if not isinstance(name, str) or name not in _ACTS:
        raise CheckpointError(f"{where}: hidden_act {name!r} is not supported (expected one of {sorted(_ACTS)})")
    return _ACTS[name]


_INT_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
               "max_position_embeddings", "image_size", "patch_size", "num_channels")


def _sub(data: dict[str, Any], name: str, defaults: dict[str, Any], source: str) -> dict[str, Any]:
    """`text_config`/`vision_config` with defaults, each size a positive integer (named if not)."""
    raw = data.get(name) or {}
    if not isinstance(raw, dict):
        raise CheckpointError(f"{source}: {name} must be an object, got {type(raw).__name__}")
    sub = _pick(raw, defaults)
    for key in _INT_FIELDS:
        if key in sub and (isinstance(sub[key], bool) or not isinstance(sub[key], int) or sub[key] < 1):
            raise CheckpointError(f"{source}: {name}.{key} must be a positive integer, got {sub[key]!r}")
    return sub


def config_from_hf(
    data: dict[str, Any], preprocessor: dict[str, Any] | None = None, source: str | Path = "config.json"
) -> ModelConfig:
    """Translate an HF `CLIPConfig` dict (config.json) and optional preprocessor_config.json.

    Malformed values (a size that is a string, zero, negative; an unknown activation) are a
    `CheckpointError` naming `source` and the field."""
    try:
        return _config_from_hf(data, preprocessor, str(source))
    except CheckpointError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise CheckpointError(f"{source}: invalid Hugging Face CLIP config ({type(exc).__name__}: {exc})") from None


def _config_from_hf(data: dict[str, Any], preprocessor: dict[str, Any] | None, source: str) -> ModelConfig:
    if data.get("model_type") not in (None, "clip"):
        raise CheckpointError(f"{source} has model_type {data.get('model_type')!r}; expected 'clip'")
    t = _sub(data, "text_config", _HF_TEXT_DEFAULTS, source)
    v = _sub(data, "vision_config", _HF_VISION_DEFAULTS, source)
    if v["num_channels"] != 3:
        raise CheckpointError(f"{source}: vision_config.num_channels is {v['num_channels']}; expected 3")
    legacy_eos = t["eos_token_id"] == 2  # HF pools at argmax(input_ids) for such configs
    text = TextConfig(
        context_length=t["max_position_embeddings"],
        vocab_size=t["vocab_size"],
        width=t["hidden_size"],
        heads=t["num_attention_heads"],
        layers=t["num_hidden_layers"],
        mlp_ratio=t["intermediate_size"] / t["hidden_size"],
        act=_act(t["hidden_act"], f"{source}: text_config"),
        layer_norm_eps=t["layer_norm_eps"],
        eot_token_id=49407 if legacy_eos else t["eos_token_id"],
        pooling="argmax" if legacy_eos else "first_eot",
    )
    vision = VisionConfig(
        kind="vit",
        image_size=v["image_size"],
        width=v["hidden_size"],
        layers=v["num_hidden_layers"],
        heads=v["num_attention_heads"],
        patch_size=v["patch_size"],
        mlp_ratio=v["intermediate_size"] / v["hidden_size"],
        act=_act(v["hidden_act"], f"{source}: vision_config"),
        layer_norm_eps=v["layer_norm_eps"],
    )
    preprocess = PreprocessConfig(image_size=vision.image_size)
    if preprocessor:
        preprocess = PreprocessConfig(
            image_size=_crop_size(preprocessor, vision.image_size),
            mean=tuple(preprocessor.get("image_mean", preprocess.mean)),
            std=tuple(preprocessor.get("image_std", preprocess.std)),
            interpolation="bilinear" if preprocessor.get("resample", 3) == 2 else "bicubic",
        )
    return ModelConfig(
        embed_dim=data.get("projection_dim", 512),
        vision=vision,
        text=text,
        init_logit_scale=data.get("logit_scale_init_value", 2.6592),
        preprocess=preprocess,
    )


def _crop_size(pre: dict[str, Any], default: int) -> int:
    crop = pre.get("crop_size", default)
    return int(crop.get("height", default) if isinstance(crop, dict) else crop)


def hf_to_native(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map HF keys to native; q/k/v are fused. Unknown keys are kept so the caller can report them."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in sd.items():
        if key.endswith("position_ids"):
            continue
        if key == "visual_projection.weight":
            out["visual.proj"] = value.t()
        elif key == "text_projection.weight":
            out["text.text_projection"] = value.t()
        elif m := _LAYER.match(key):
            tower, idx, name, kind = m.groups()
            base = f"{_TOWER[tower]}.{idx}"
            if name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
                qkv.setdefault((base, kind), {})[name[-6]] = value
            elif name in _BLOCK:
                out[f"{base}.{_BLOCK[name]}.{kind}"] = value
            else:
                out[key] = value
        else:
            stem, _, leaf = key.rpartition(".")
            if key in _TOP:
                out[_TOP[key]] = value
            elif stem in _TOP:
                out[f"{_TOP[stem]}.{leaf}"] = value
            else:
                out[key] = value
    for (base, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise CheckpointError(f"HF weights for {base} have only {sorted(parts)} of the q/k/v projections")
        name = "in_proj_weight" if kind == "weight" else "in_proj_bias"
        out[f"{base}.attn.{name}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


def native_to_hf(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    inverse_top = {v: k for k, v in _TOP.items()}
    inverse_block = {v: k for k, v in _BLOCK.items()}
    towers = {v: k for k, v in _TOWER.items()}
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if key == "visual.proj":
            out["visual_projection.weight"] = value.t().contiguous()
        elif key == "text.text_projection":
            out["text_projection.weight"] = value.t().contiguous()
        elif m := re.match(r"^(visual\.transformer\.resblocks|text\.transformer\.resblocks)\.(\d+)\.(.+)$", key):
            base, idx, rest = m.groups()
            prefix = f"{towers[base]}.encoder.layers.{idx}"
            if rest.startswith("attn.in_proj_"):
                kind = "weight" if rest.endswith("weight") else "bias"
                for name, part in zip("qkv", value.chunk(3, dim=0)):
                    out[f"{prefix}.self_attn.{name}_proj.{kind}"] = part.contiguous()
            else:
                stem, _, leaf = rest.rpartition(".")
                out[f"{prefix}.{inverse_block[stem]}.{leaf}"] = value
        else:
            stem, _, leaf = key.rpartition(".")
            if key in inverse_top:
                out[inverse_top[key]] = value
            elif stem in inverse_top:
                out[f"{inverse_top[stem]}.{leaf}"] = value
            else:
                raise CheckpointError(f"native key {key!r} has no Hugging Face CLIPModel equivalent")
    return out


def hf_config_json(cfg: ModelConfig) -> dict[str, Any]:
    """A complete transformers `CLIPConfig` dict for `cfg` (every field written, none left to defaults)."""
    v, t = cfg.vision, cfg.text
    if v.kind != "vit":
        raise CheckpointError(
            "Hugging Face CLIPModel has no ResNet image tower; export ResNet models as native or openclip"
        )
    if v.stem_widths:
        raise CheckpointError(
            "Hugging Face CLIPModel has no convolutional stem (vision.stem_widths); export this model as native"
        )
    if v.pool != "cls":
        raise CheckpointError(
            "Hugging Face CLIPModel pools the class token only; export this mean-pooled model as native or openclip"
        )
    if cfg.init_logit_bias is not None:
        raise CheckpointError("Hugging Face CLIPModel has no logit bias; export this model as native or openclip")
    if not v.ln_pre:
        raise CheckpointError("Hugging Face CLIPModel always has pre_layrnorm (vision.ln_pre); export as openclip")
    if not t.causal or t.pooling in ("eos", "last"):
        raise CheckpointError(
            f"Hugging Face CLIPModel's text tower is causal and pools at the EOT (this model: causal={t.causal}, "
            f"pooling={t.pooling!r}); export this model as native or openclip"
        )
    if cfg.tokenizer.get("kind") == "hf":
        raise CheckpointError(
            f"this model's tokenizer is {cfg.tokenizer.get('name')!r}, not the CLIP BPE an HF CLIPModel export "
            "writes; export this model as native or openclip"
        )
    if t.pooling == "argmax" and t.eot_token_id != t.vocab_size - 1:
        raise CheckpointError("argmax pooling with an EOT id other than the largest id cannot be expressed in HF")
    if t.pooling == "first_eot" and t.eot_token_id == 2:
        raise CheckpointError("HF reads eos_token_id 2 as its legacy argmax pooling; this model's EOT id is 2")
    text_config = {
        "vocab_size": t.vocab_size,
        "hidden_size": t.width,
        "intermediate_size": int(round(t.width * t.mlp_ratio)),
        "projection_dim": cfg.embed_dim,
        "num_hidden_layers": t.layers,
        "num_attention_heads": t.heads,
        "max_position_embeddings": t.context_length,
        "hidden_act": t.act,
        "layer_norm_eps": t.layer_norm_eps,
        "bos_token_id": 49406 if cfg.tokenizer.get("kind") == "bpe" else 1,
        "eos_token_id": t.eot_token_id,
        "pad_token_id": 1,
        "attention_dropout": 0.0,
        "dropout": 0.0,
        "initializer_factor": 1.0,
        "initializer_range": 0.02,
        "model_type": "clip_text_model",
    }
    vision_config = {
        "hidden_size": v.width,
        "intermediate_size": int(round(v.width * v.mlp_ratio)),
        "projection_dim": cfg.embed_dim,
        "num_hidden_layers": v.layers,
        "num_attention_heads": v.heads,
        "num_channels": 3,
        "image_size": v.image_size,
        "patch_size": v.patch_size,
        "hidden_act": v.act,
        "layer_norm_eps": v.layer_norm_eps,
        "attention_dropout": 0.0,
        "dropout": 0.0,
        "initializer_factor": 1.0,
        "initializer_range": 0.02,
        "model_type": "clip_vision_model",
    }
    return {
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": cfg.embed_dim,
        "logit_scale_init_value": cfg.init_logit_scale,
        "initializer_factor": 1.0,
        "text_config": text_config,
        "vision_config": vision_config,
    }


def hf_preprocessor_json(cfg: ModelConfig) -> dict[str, Any]:
    p = cfg.preprocess
    if p.resize_mode != "shortest":
        raise CheckpointError("CLIPImageProcessor only resizes the shortest edge; this model squashes images")
    return {
        "image_processor_type": "CLIPImageProcessor",
        "do_resize": True,
        "size": {"shortest_edge": p.image_size},
        "resample": 3 if p.interpolation == "bicubic" else 2,
        "do_center_crop": True,
        "crop_size": {"height": p.image_size, "width": p.image_size},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(p.mean),
        "image_std": list(p.std),
        "do_convert_rgb": True,
    }
