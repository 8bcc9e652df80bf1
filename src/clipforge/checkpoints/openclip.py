"""OpenCLIP's model config (`open_clip_config.json` / `model_configs/*.json`), read exactly or refused.

Every option of OpenCLIP's own towers (`CLIPVisionCfg`, `CLIPTextCfg`, the `CLIP` keyword arguments)
is listed here as one of: read into the native config; without effect on an evaluated model (with
the reason); or refused with a message naming it. Keys OpenCLIP does not know are refused too, so a
config never loads with an option silently dropped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..config import Activation, ModelConfig, PreprocessConfig, TextConfig, VisionConfig
from .io import CheckpointError

#: options that change nothing an evaluated model computes, and why
_NO_EFFECT = {
    "patch_dropout": "drops patches in training only",
    "output_tokens": "adds token outputs beside the features",
    "attn_pooler_queries": "used only by attentional_pool",
    "attn_pooler_heads": "used only by attentional_pool",
    "timm_model_pretrained": "used only with timm_model_name",
    "timm_pool": "used only with timm_model_name",
    "timm_proj": "used only with timm_model_name",
    "timm_proj_bias": "used only with timm_model_name",
    "timm_drop": "used only with timm_model_name",
    "timm_drop_path": "used only with timm_model_name",
    "hf_model_pretrained": "used only with hf_model_name",
    "hf_proj_type": "used only with hf_model_name",
    "hf_pooler_type": "used only with hf_model_name",
    "pad_id": "used only with embed_cls or a padding mask, neither of which OpenCLIP's CLIP text tower sets",
    "init_logit_scale": "an initial value; the weights hold the trained logit scale",
    "cast_dtype": "a compute precision, chosen when loading",
    "output_dict": "the form of OpenCLIP's forward output",
    "custom_text": "a key layout (text.*), read from the weights",
}
#: options that clipforge cannot compute: refused unless they hold OpenCLIP's default (or an equivalent)
_REFUSED = {
    "timm_model_name": (None, "timm image towers"),
    "hf_model_name": (None, "Hugging Face text towers"),
    "attentional_pool": (False, "attentional pooling (CoCa)"),
    "embed_cls": (False, "a text class token (CoCa)"),
    "block_type": ((None, "default"), "custom attention blocks"),
    "qk_norm": (False, "LayerNorm on queries and keys"),
    "scaled_cosine_attn": (False, "scaled cosine attention"),
    "scale_heads": (False, "per-head attention scales"),
    "scale_attn_inner": (False, "LayerNorm inside attention"),
    "scale_attn": (False, "LayerNorm after attention"),
    "scale_fc": (False, "LayerNorm inside the MLP"),
    "proj_bias": (False, "a text projection with a bias"),
    "proj_type": ("linear", "text projections other than 'linear'"),
    "tokenizer_mode": (None, "tokenizer modes"),
    "multimodal_cfg": (None, "a multimodal text decoder (CoCa)"),
    "nonscalar_logit_scale": (False, "a logit scale of shape [1]"),
}
_VISION_READ = {"layers", "width", "head_width", "mlp_ratio", "patch_size", "image_size", "ls_init_value",
                "no_ln_pre", "final_ln_after_pool", "pool_type", "act_kwargs", "norm_kwargs", "pos_embed_type"}
_TEXT_READ = {"context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio", "ls_init_value", "eos_id",
              "no_causal_mask", "final_ln_after_pool", "pool_type", "act_kwargs", "norm_kwargs",
              "hf_tokenizer_name", "tokenizer_kwargs"}
_MODEL_READ = {"embed_dim", "vision_cfg", "text_cfg", "quick_gelu", "init_logit_bias"}


def _check_options(cfg: dict[str, Any], read: set[str], where: str) -> None:
    """Refuse unknown keys and options clipforge cannot compute, naming them."""
    if not isinstance(cfg, dict):
        raise CheckpointError(f"open_clip_config.json: {where} must be an object, got {type(cfg).__name__}")
    unknown = sorted(k for k in cfg if k not in read and k not in _NO_EFFECT and k not in _REFUSED)
    if unknown:
        raise CheckpointError(f"open_clip_config.json: {where} has option(s) {unknown} that clipforge does not know")
    for key, value in cfg.items():
        if key in _REFUSED:
            allowed, what = _REFUSED[key]
            if value not in (allowed if isinstance(allowed, tuple) else (allowed,)):
                raise CheckpointError(
                    f"open_clip_config.json: {where}.{key}={value!r}: {what} are not supported by clipforge"
                )


def _refuse(where: str, key: str, value: Any, why: str) -> CheckpointError:
    return CheckpointError(f"open_clip_config.json: {where}.{key}={value!r} is not supported: {why}")


def _norm_eps(cfg: dict[str, Any], where: str) -> float:
    kwargs = cfg.get("norm_kwargs") or {}
    if not isinstance(kwargs, dict) or set(kwargs) - {"eps"}:
        raise _refuse(where, "norm_kwargs", kwargs, "clipforge's LayerNorm takes only 'eps'")
    return float(kwargs.get("eps", 1e-5))


def _check_act_kwargs(cfg: dict[str, Any], where: str, act: Activation) -> None:
    kwargs = cfg.get("act_kwargs") or {}
    plain = {} if act == "quick_gelu" else {"approximate": "none"}
    if not isinstance(kwargs, dict) or any(plain.get(k, object()) != v for k, v in kwargs.items()):
        raise _refuse(where, "act_kwargs", kwargs, f"clipforge runs {act} without arguments")


def _side(value: Any, where: str, key: str) -> int:
    """A square size (image or patch) as one int; OpenCLIP also accepts [height, width]."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] != value[1]:
            raise _refuse(where, key, value, "clipforge's ViT takes square images and patches only")
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int):
        raise _refuse(where, key, value, "expected an integer size")
    return value


def _mlp_ratio(width: int, ratio: float) -> float:
    """The ratio giving OpenCLIP's MLP width `int(width * ratio)` (floored) under clipforge's rounding."""
    return int(width * ratio) / width


def _vision(vc: dict[str, Any], act: Activation) -> VisionConfig:
    _check_options(vc, _VISION_READ, "vision_cfg")
    layers = vc.get("layers", 12)
    width, head_width = vc.get("width", 768), vc.get("head_width", 64)
    size = _side(vc.get("image_size", 224), "vision_cfg", "image_size")
    if isinstance(layers, (list, tuple)):  # OpenCLIP's ModifiedResNet reads only these four options
        return VisionConfig(kind="resnet", image_size=size, width=width, layers=tuple(layers),
                            heads=width * 32 // head_width, act=act)
    pool_type, ln_after = vc.get("pool_type", "tok"), bool(vc.get("final_ln_after_pool", False))
    if pool_type not in ("tok", "avg"):
        raise _refuse("vision_cfg", "pool_type", pool_type, "clipforge pools 'tok' or 'avg'")
    if vc.get("pos_embed_type", "learnable") not in ("learnable", "sin_cos_2d"):  # both are stored in the weights
        raise _refuse("vision_cfg", "pos_embed_type", vc["pos_embed_type"], "OpenCLIP itself has no such type")
    _check_act_kwargs(vc, "vision_cfg", act)
    return VisionConfig(
        kind="vit",
        image_size=size,
        width=width,
        layers=layers,
        heads=width // head_width,
        patch_size=_side(vc.get("patch_size", 16), "vision_cfg", "patch_size"),
        mlp_ratio=_mlp_ratio(width, vc.get("mlp_ratio", 4.0)),
        act=act,
        layer_norm_eps=_norm_eps(vc, "vision_cfg"),
        # LN then the class token equals the class token then LN: final_ln_after_pool matters for 'avg' only
        pool="cls" if pool_type == "tok" else "mean_then_ln" if ln_after else "mean",
        ln_pre=not vc.get("no_ln_pre", False),
    )


_TEXT_POOLING = {"argmax": "argmax", "eos": "eos", "last": "last"}


def _text(tc: dict[str, Any], act: Activation) -> tuple[TextConfig, dict[str, Any]]:
    """The text tower and the tokenizer entry of the native config."""
    _check_options(tc, _TEXT_READ, "text_cfg")
    width, vocab = tc.get("width", 512), tc.get("vocab_size", 49408)
    pool_type = tc.get("pool_type", "argmax")
    if pool_type not in _TEXT_POOLING:
        raise _refuse("text_cfg", "pool_type", pool_type, "clipforge pools at 'argmax', 'eos' or 'last'")
    pooling = _TEXT_POOLING[pool_type]
    eot = tc.get("eos_id", 2) if pool_type == "eos" else 49407
    if pooling == "argmax" and vocab <= 49408:  # the EOT (49407) is then the largest id: argmax = first EOT
        pooling = "first_eot"
    _check_act_kwargs(tc, "text_cfg", act)
    text = TextConfig(
        context_length=tc.get("context_length", 77),
        vocab_size=vocab,
        width=width,
        heads=tc.get("heads", 8),
        layers=tc.get("layers", 12),
        mlp_ratio=_mlp_ratio(width, tc.get("mlp_ratio", 4.0)),
        act=act,
        layer_norm_eps=_norm_eps(tc, "text_cfg"),
        eot_token_id=eot,
        pooling=pooling,  # type: ignore[arg-type]
        causal=not tc.get("no_causal_mask", False),
    )
    kwargs = tc.get("tokenizer_kwargs") or {}
    if tc.get("hf_tokenizer_name"):
        return text, {"kind": "hf", "name": tc["hf_tokenizer_name"], "kwargs": kwargs}
    if kwargs:
        raise _refuse("text_cfg", "tokenizer_kwargs", kwargs, "clipforge's CLIP BPE tokenizer takes no options")
    return text, {"kind": "bpe"}


def uses_layer_scale(data: dict[str, Any]) -> bool:
    """Whether an OpenCLIP config's towers have LayerScale (`ls_init_value`); its weights then must hold
    `ls_1.gamma`/`ls_2.gamma` (folded into the preceding projections when read)."""
    mc = data.get("model_cfg", data)
    return any((mc.get(k) or {}).get("ls_init_value") is not None for k in ("vision_cfg", "text_cfg"))


def config_from_openclip_json(data: dict[str, Any]) -> ModelConfig:
    """A native config from OpenCLIP's `open_clip_config.json` (`model_cfg` + `preprocess_cfg`) or a bare
    `model_configs/*.json`; every option is read exactly or refused by name."""
    mc = data.get("model_cfg", data)
    _check_options(mc, _MODEL_READ, "model_cfg")
    act: Activation = "quick_gelu" if mc.get("quick_gelu") else "gelu"
    vision = _vision(mc.get("vision_cfg", {}), act)
    text, tokenizer = _text(mc.get("text_cfg", {}), act)
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
        tokenizer=tokenizer,
    )


def _export_refusals(cfg: ModelConfig) -> list[tuple[bool, str]]:
    v = cfg.vision
    return [
        (v.act != cfg.text.act, "OpenCLIP configs use one activation for both towers; this model mixes them"),
        (bool(v.stem_widths), "OpenCLIP's VisionTransformer has no convolutional stem (vision.stem_widths)"),
        ("gelu_tanh" in (v.act, cfg.text.act), "OpenCLIP configs choose GELU or QuickGELU, not GELU's tanh form"),
        (
            v.kind == "vit" and (not v.class_token or v.patch_bias or not v.proj or v.pool == "map"),
            "OpenCLIP's own VisionTransformer has no SigLIP layout (its SigLIP models use timm towers)",
        ),
        (cfg.text.proj_bias, "OpenCLIP's text projection has no bias"),
    ]


def openclip_json(cfg: ModelConfig) -> dict[str, Any]:
    """`open_clip_config.json` contents for an OpenCLIP-layout export of `cfg`."""
    for refused, why in _export_refusals(cfg):
        if refused:
            raise CheckpointError(f"{why}; export this model as native")
    v, t = cfg.vision, cfg.text
    vision_cfg: dict[str, Any] = {
        "image_size": v.image_size,
        "layers": list(v.stages) if v.kind == "resnet" else v.depth,
        "width": v.width,
        "mlp_ratio": v.mlp_ratio,
    }
    if v.kind == "vit":
        vision_cfg.update(patch_size=v.patch_size, head_width=v.width // v.heads)
        _set(vision_cfg, v.layer_norm_eps != 1e-5, norm_kwargs={"eps": v.layer_norm_eps})
        _set(vision_cfg, not v.ln_pre, no_ln_pre=True)
        _set(vision_cfg, v.pool != "cls", pool_type="avg", final_ln_after_pool=v.pool == "mean_then_ln")
    else:
        vision_cfg.update(head_width=v.width * 32 // v.heads)
    text_cfg: dict[str, Any] = {
        "context_length": t.context_length,
        "vocab_size": t.vocab_size,
        "width": t.width,
        "heads": t.heads,
        "layers": t.layers,
        "mlp_ratio": t.mlp_ratio,
    }
    _set(text_cfg, t.layer_norm_eps != 1e-5, norm_kwargs={"eps": t.layer_norm_eps})
    _set(text_cfg, not t.causal, no_causal_mask=True)
    _text_pool_json(text_cfg, t)
    if cfg.tokenizer.get("kind") == "hf":
        _set(text_cfg, True, hf_tokenizer_name=cfg.tokenizer["name"])
        _set(text_cfg, bool(cfg.tokenizer.get("kwargs")), tokenizer_kwargs=cfg.tokenizer.get("kwargs"))
    model_cfg: dict[str, Any] = {
        "embed_dim": cfg.embed_dim,
        "quick_gelu": v.act == "quick_gelu",
        "vision_cfg": vision_cfg,
        "text_cfg": text_cfg,
    }
    if cfg.init_logit_bias is not None:
        model_cfg["init_logit_bias"] = cfg.init_logit_bias
    p = cfg.preprocess
    assert p is not None  # ModelConfig fills it in
    return {
        "model_cfg": model_cfg,
        "preprocess_cfg": {
            "mean": list(p.mean),
            "std": list(p.std),
            "interpolation": p.interpolation,
            "resize_mode": "squash" if p.resize_mode == "squash" else "shortest",
        },
    }


def _set(target: dict[str, Any], when: bool, **values: Any) -> None:
    if when:
        target.update(values)


def _text_pool_json(text_cfg: dict[str, Any], t: TextConfig) -> None:
    """OpenCLIP's text pool_type for `t.pooling`. Its default, 'argmax', is also clipforge's 'first_eot'
    when the EOT is the largest id (the CLIP BPE)."""
    if t.pooling == "first_eot" and t.eot_token_id != t.vocab_size - 1:
        raise CheckpointError(
            f"OpenCLIP cannot pool at the first EOT {t.eot_token_id} when larger ids exist (vocabulary "
            f"{t.vocab_size}); export this model as native"
        )
    if t.pooling == "last":
        text_cfg["pool_type"] = "last"
    elif t.pooling == "eos":
        text_cfg.update(pool_type="eos", eos_id=t.eot_token_id)


def hf_tokenizer_refusal(source: object, tokenizer: dict[str, Any]) -> CheckpointError:
    """The error for a model whose text tower needs a Hugging Face tokenizer (`hf_tokenizer_name`):
    clipforge cannot run one, and the CLIP BPE in its place would give wrong tokens without a word."""
    name = tokenizer.get("name")
    return CheckpointError(
        f"{source}: the text tower was trained with the Hugging Face tokenizer {name!r} (OpenCLIP "
        f"hf_tokenizer_name, options {tokenizer.get('kwargs') or {}}), which clipforge cannot run; it does "
        "not substitute the CLIP BPE. The weights load exactly with clipforge.checkpoints.read_checkpoint "
        f"and build_model: encode token ids made by {name!r}'s own files (tokenizer.json, "
        "tokenizer_config.json, special_tokens_map.json) with model.encode_text."
    )


def tokenizer_of_config_file(path: Path) -> dict[str, Any] | None:
    """The tokenizer entry of an `open_clip_config.json` at `path` (or in the directory `path`), if any."""
    file = path / "open_clip_config.json" if path.is_dir() else path.parent / "open_clip_config.json"
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        tc = data.get("model_cfg", data).get("text_cfg", {})
    except (OSError, ValueError, AttributeError):
        return None
    name = tc.get("hf_tokenizer_name") if isinstance(tc, dict) else None
    return {"kind": "hf", "name": name, "kwargs": tc.get("tokenizer_kwargs")} if name else None
