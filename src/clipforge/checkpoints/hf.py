"""Hugging Face `CLIPModel` and `SiglipModel` layouts: config translation and the explicit key map
to and from native.

HF splits the fused QKV projection into q/k/v, stores the projections as transposed `Linear`
weights and names the vision pre-norm `pre_layrnorm` (sic). SigLIP's encoder layers use the same
names; its towers differ at the ends: no class token and a biased patch embedding, a multihead
attention-pooling `vision_model.head` instead of a projection, a biased `text_model.head` linear on
the last token of a non-causal text tower, and `logit_scale`/`logit_bias` of shape [1].
"""

from __future__ import annotations

import math
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
# Defaults of transformers' SigLIP configs (where they differ from CLIP's).
_SIGLIP_TEXT_DEFAULTS = {
    **_HF_TEXT_DEFAULTS,
    **dict(vocab_size=32000, hidden_size=768, intermediate_size=3072, num_attention_heads=12),
    **dict(max_position_embeddings=64, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6, projection_size=None),
}
_SIGLIP_VISION_DEFAULTS = {
    **_HF_VISION_DEFAULTS,
    **dict(patch_size=16, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6, vision_use_head=True),
}
_ACTS: dict[str, Activation] = {"quick_gelu": "quick_gelu", "gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh"}
_HF_ACT = {"quick_gelu": "quick_gelu", "gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh"}

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
    # SigLIP
    "vision_model.embeddings.patch_embedding.bias": "visual.conv1.bias",
    "vision_model.head.probe": "visual.attn_pool.probe",
    "vision_model.head.attention.in_proj_weight": "visual.attn_pool.attn.in_proj_weight",
    "vision_model.head.attention.in_proj_bias": "visual.attn_pool.attn.in_proj_bias",
    "vision_model.head.attention.out_proj": "visual.attn_pool.attn.out_proj",
    "vision_model.head.layernorm": "visual.attn_pool.ln",
    "vision_model.head.mlp.fc1": "visual.attn_pool.mlp.c_fc",
    "vision_model.head.mlp.fc2": "visual.attn_pool.mlp.c_proj",
    "text_model.head.bias": "text.text_projection_bias",
}
#: HF linear weights stored transposed in native (projection matrices)
_TRANSPOSED = {
    "visual_projection.weight": "visual.proj",
    "text_projection.weight": "text.text_projection",
    "text_model.head.weight": "text.text_projection",
}
_LAYER = re.compile(r"^(vision_model|text_model)\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$")
_TOWER = {"vision_model": "visual.transformer.resblocks", "text_model": "text.transformer.resblocks"}


def is_siglip_config(data: dict[str, Any]) -> bool:
    architectures = data.get("architectures")
    return data.get("model_type") == "siglip" or (isinstance(architectures, list) and "SiglipModel" in architectures)


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
    """Translate an HF `CLIPConfig` or `SiglipConfig` dict (config.json) and optional preprocessor_config.json.

    Malformed values (a size that is a string, zero, negative; an unknown activation) are a
    `CheckpointError` naming `source` and the field."""
    try:
        if is_siglip_config(data):
            return _siglip_config(data, preprocessor, str(source))
        return _config_from_hf(data, preprocessor, str(source))
    except CheckpointError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise CheckpointError(f"{source}: invalid Hugging Face CLIP config ({type(exc).__name__}: {exc})") from None


def _text_fields(t: dict[str, Any], source: str) -> dict[str, Any]:
    """TextConfig fields shared by HF CLIP and SigLIP text configs."""
    return dict(
        context_length=t["max_position_embeddings"],
        vocab_size=t["vocab_size"],
        width=t["hidden_size"],
        heads=t["num_attention_heads"],
        layers=t["num_hidden_layers"],
        mlp_ratio=t["intermediate_size"] / t["hidden_size"],
        act=_act(t["hidden_act"], f"{source}: text_config"),
        layer_norm_eps=t["layer_norm_eps"],
    )


def _vision_fields(v: dict[str, Any], source: str) -> dict[str, Any]:
    """VisionConfig fields shared by HF CLIP and SigLIP vision configs (3-channel ViTs)."""
    if v["num_channels"] != 3:
        raise CheckpointError(f"{source}: vision_config.num_channels is {v['num_channels']}; expected 3")
    return dict(
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


def _config_from_hf(data: dict[str, Any], preprocessor: dict[str, Any] | None, source: str) -> ModelConfig:
    if data.get("model_type") not in (None, "clip"):
        raise CheckpointError(f"{source} has model_type {data.get('model_type')!r}; expected 'clip'")
    t = _sub(data, "text_config", _HF_TEXT_DEFAULTS, source)
    v = _sub(data, "vision_config", _HF_VISION_DEFAULTS, source)
    vision = VisionConfig(**_vision_fields(v, source))
    legacy_eos = t["eos_token_id"] == 2  # HF pools at argmax(input_ids) for such configs
    text = TextConfig(
        **_text_fields(t, source),
        eot_token_id=49407 if legacy_eos else t["eos_token_id"],
        pooling="argmax" if legacy_eos else "first_eot",
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


def _siglip_config(data: dict[str, Any], preprocessor: dict[str, Any] | None, source: str) -> ModelConfig:
    t = _sub(data, "text_config", _SIGLIP_TEXT_DEFAULTS, source)
    v = _sub(data, "vision_config", _SIGLIP_VISION_DEFAULTS, source)
    if not v["vision_use_head"]:
        raise CheckpointError(f"{source}: vision_config.vision_use_head is false: the model has no image embedding")
    embed = t["projection_size"] or t["hidden_size"]
    if embed != v["hidden_size"]:
        raise CheckpointError(
            f"{source}: text_config.projection_size {embed} differs from vision_config.hidden_size {v['hidden_size']}"
        )
    text = TextConfig(
        **_text_fields(t, source),
        eot_token_id=t["eos_token_id"] if isinstance(t["eos_token_id"], int) else 1,
        pooling="last",
        causal=False,
        proj_bias=True,
    )
    vision = VisionConfig(
        **_vision_fields(v, source),
        pool="map",
        ln_pre=False,
        class_token=False,
        patch_bias=True,
        proj=False,
    )
    pre = preprocessor or {}
    size = pre.get("size") or {}
    preprocess = PreprocessConfig(
        image_size=int(size.get("height", vision.image_size)) if isinstance(size, dict) else vision.image_size,
        mean=tuple(pre.get("image_mean", (0.5, 0.5, 0.5))),
        std=tuple(pre.get("image_std", (0.5, 0.5, 0.5))),
        interpolation="bilinear" if pre.get("resample", 3) == 2 else "bicubic",
        resize_mode="squash",
    )
    return ModelConfig(
        embed_dim=embed,
        vision=vision,
        text=text,
        init_logit_scale=math.log(10.0),
        init_logit_bias=-10.0,
        preprocess=preprocess,
        tokenizer={"kind": "hf-files"},
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
        if key in _TRANSPOSED:
            out[_TRANSPOSED[key]] = value.t()
        elif key in ("logit_scale", "logit_bias"):
            out[key] = value.reshape(())  # SigLIP stores them with shape [1]
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


def is_siglip_layout(cfg: ModelConfig) -> bool:
    """True for a model of SigLIP's architecture (what `SiglipModel` can hold)."""
    v, t = cfg.vision, cfg.text
    vision = v.kind == "vit" and v.pool == "map" and not (v.class_token or v.proj or v.ln_pre or v.stem_widths)
    return vision and v.patch_bias and not t.causal and t.pooling == "last" and t.proj_bias


def native_to_hf(sd: dict[str, torch.Tensor], siglip: bool = False) -> dict[str, torch.Tensor]:
    """Native keys → `CLIPModel` keys, or `SiglipModel` keys with `siglip` (whose text projection is `text_model.head`
    and whose logit scale and bias have shape [1])."""
    if siglip:
        special = ("text.text_projection", "logit_scale", "logit_bias")
        mapped = native_to_hf({k: v for k, v in sd.items() if k not in special})
        mapped["text_model.head.weight"] = sd["text.text_projection"].t().contiguous()
        mapped.update({k: sd[k].reshape(1) for k in ("logit_scale", "logit_bias")})
        return mapped
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


def _tower_json(tower: VisionConfig | TextConfig) -> dict[str, Any]:
    """The config keys HF CLIP and SigLIP towers share."""
    layers = tower.depth if isinstance(tower, VisionConfig) else tower.layers
    return {
        "hidden_size": tower.width,
        "intermediate_size": int(round(tower.width * tower.mlp_ratio)),
        "num_hidden_layers": layers,
        "num_attention_heads": tower.heads,
        "hidden_act": _HF_ACT[tower.act],
        "layer_norm_eps": tower.layer_norm_eps,
        "attention_dropout": 0.0,
    }


def hf_config_json(cfg: ModelConfig) -> dict[str, Any]:
    """A complete transformers `CLIPConfig` (or, for SigLIP's architecture, `SiglipConfig`) dict for `cfg`
    (every field written, none left to defaults)."""
    v, t = cfg.vision, cfg.text
    if is_siglip_layout(cfg):
        return _siglip_config_json(cfg)
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
    if v.patch_bias or not v.proj or t.proj_bias:
        raise CheckpointError(
            "Hugging Face CLIPModel has no patch-embedding bias, always a vision projection and an unbiased text "
            "projection; only SigLIP's whole architecture exports as SiglipModel; export this model as native"
        )
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
        **_tower_json(t),
        "vocab_size": t.vocab_size,
        "projection_dim": cfg.embed_dim,
        "max_position_embeddings": t.context_length,
        "bos_token_id": 49406 if cfg.tokenizer.get("kind") == "bpe" else 1,
        "eos_token_id": t.eot_token_id,
        "pad_token_id": 1,
        "dropout": 0.0,
        "initializer_factor": 1.0,
        "initializer_range": 0.02,
        "model_type": "clip_text_model",
    }
    vision_config = {
        **_tower_json(v),
        "projection_dim": cfg.embed_dim,
        "num_channels": 3,
        "image_size": v.image_size,
        "patch_size": v.patch_size,
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


def _siglip_config_json(cfg: ModelConfig) -> dict[str, Any]:
    v, t = cfg.vision, cfg.text
    if cfg.init_logit_bias is None:
        raise CheckpointError("SiglipModel has a logit bias; this model has none: export it as native")
    text_config = {
        **_tower_json(t),
        "vocab_size": t.vocab_size,
        "max_position_embeddings": t.context_length,
        "projection_size": cfg.embed_dim,
        "eos_token_id": t.eot_token_id,
        "model_type": "siglip_text_model",
    }
    vision_config = {
        **_tower_json(v),
        "num_channels": 3,
        "image_size": v.image_size,
        "patch_size": v.patch_size,
        "vision_use_head": True,
        "model_type": "siglip_vision_model",
    }
    return {
        "architectures": ["SiglipModel"],
        "model_type": "siglip",
        "initializer_factor": 1.0,
        "text_config": text_config,
        "vision_config": vision_config,
    }


def hf_preprocessor_json(cfg: ModelConfig) -> dict[str, Any]:
    p = cfg.preprocess
    common = {
        "do_resize": True,
        "resample": 3 if p.interpolation == "bicubic" else 2,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(p.mean),
        "image_std": list(p.std),
        "do_convert_rgb": True,
    }
    if is_siglip_layout(cfg):
        if p.resize_mode != "squash":
            raise CheckpointError("SiglipImageProcessor resizes to a square; this model resizes the shortest edge")
        return {"image_processor_type": "SiglipImageProcessor", "size": {"height": p.image_size, "width": p.image_size},
                **common}
    if p.resize_mode != "shortest":
        raise CheckpointError("CLIPImageProcessor only resizes the shortest edge; this model squashes images")
    return {
        "image_processor_type": "CLIPImageProcessor",
        "size": {"shortest_edge": p.image_size},
        "do_center_crop": True,
        "crop_size": {"height": p.image_size, "width": p.image_size},
        **common,
    }
