"""OpenAI / OpenCLIP key layout: detection, architecture inference, and the key map to native.

OpenAI and OpenCLIP (ViT and ModifiedResNet towers) share one layout. clipforge's native layout
keeps `visual.*` unchanged and moves the text tower's top-level keys under `text.`.
"""

from __future__ import annotations

import math
import re

import torch

from ..config import Activation, ModelConfig, TextConfig, VisionConfig
from . import families
from .families import HeadCount
from .io import CheckpointError

_TEXT_KEYS = ("transformer.", "token_embedding.", "positional_embedding", "ln_final.", "text_projection")
# Attributes OpenAI's TorchScript archives carry besides the weights.
_IGNORED = re.compile(r"(^|\.)(attn_mask|input_resolution|context_length|vocab_size)$")


def is_openai_layout(sd: dict[str, torch.Tensor]) -> bool:
    return "visual.conv1.weight" in sd and "token_embedding.weight" in sd


def is_native_layout(sd: dict[str, torch.Tensor]) -> bool:
    return "visual.conv1.weight" in sd and "text.token_embedding.weight" in sd


#: the CLIP BPE's vocabulary; its EOT (49407) is the largest id, so first-EOT pooling is OpenCLIP's argmax
CLIP_VOCAB = 49408
_LAYER_SCALE = re.compile(r"^(.*resblocks\.\d+)\.ls_([12])\.gamma$")


def fold_layer_scale(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenCLIP's LayerScale (`ls_init_value`: `x + gamma * f(x)`) folded into the linear that ends `f`
    (`attn.out_proj` for `ls_1`, `mlp.c_proj` for `ls_2`): `gamma * (W x + b) = (gamma W) x + gamma b`."""
    scales = {k: m for k in sd if (m := _LAYER_SCALE.match(k))}
    if not scales:
        return sd
    out = {k: v for k, v in sd.items() if k not in scales}
    for key, m in scales.items():
        linear = f"{m.group(1)}.{'attn.out_proj' if m.group(2) == '1' else 'mlp.c_proj'}"
        gamma = sd[key].float()
        for name, g in ((f"{linear}.weight", gamma[:, None]), (f"{linear}.bias", gamma)):
            if name not in sd:
                raise CheckpointError(f"LayerScale {key} without the linear it scales ({name})")
            out[name] = (sd[name].float() * g).to(sd[name].dtype)
    return out


def openai_to_native(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in fold_layer_scale(sd).items():
        if _IGNORED.search(key):
            continue
        out["text." + key if key.startswith(_TEXT_KEYS) else key] = value
    return out


def native_to_openai(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len("text.") :] if k.startswith("text.") else k: v for k, v in sd.items()}


def _count(sd: dict[str, torch.Tensor], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd if (m := rx.match(k))})


def config_from_openai_state(
    sd: dict[str, torch.Tensor], activation: Activation
) -> tuple[ModelConfig, list[HeadCount]]:
    """Infer the architecture from OpenAI-layout weights, and which head counts were guessed.

    Head counts are not stored in the weights: the known OpenAI/OpenCLIP families are recognised by
    their shapes (`families`); any other tower gets width // 64 (ViT and text) or width * 32 // 64
    (ResNet attention pool), as OpenAI and OpenCLIP default to, reported back as a guess. The
    activation cannot be inferred at all and must be given.
    """
    embed_dim = sd["text_projection"].shape[1]
    vocab = sd["token_embedding.weight"].shape[0]
    if vocab > CLIP_VOCAB:
        raise CheckpointError(
            f"the text vocabulary has {vocab} tokens, more than the CLIP BPE's {CLIP_VOCAB} (a multilingual "
            "model?): its tokenizer and text pooling are not recorded in bare weights. Put its "
            "open_clip_config.json beside the weights or pass config=..."
        )
    text_width = sd["ln_final.weight"].shape[0]
    text_mlp = sd["transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
    heads = {"text": families.text_heads(text_width, text_mlp)}
    text = TextConfig(
        context_length=sd["positional_embedding"].shape[0],
        vocab_size=vocab,
        width=text_width,
        heads=heads["text"].heads,
        layers=_count(sd, r"transformer\.resblocks\.(\d+)\."),
        mlp_ratio=text_mlp / text_width,
        act=activation,
    )
    if "visual.class_embedding" in sd:
        width = sd["visual.conv1.weight"].shape[0]
        n_stem = _count(sd, r"visual\.stem\.(\d+)\.conv\.weight")
        stem = tuple(sd[f"visual.stem.{i}.conv.weight"].shape[0] for i in range(n_stem))
        stem_depth = 1 + _count(sd, r"visual\.stem\.0\.blocks\.(\d+)\.conv1\.weight")
        patch = sd["visual.conv1.weight"].shape[-1] * 2**n_stem
        positions = sd["visual.positional_embedding"].shape[0] - 1
        grid = math.isqrt(positions)
        if grid * grid != positions:
            raise CheckpointError(
                f"the ViT has {positions} patch positions, not a square grid: non-square images "
                "(OpenCLIP image_size [height, width]) are not supported by clipforge"
            )
        if "visual.ln_pre.weight" not in sd:
            raise CheckpointError(
                "the ViT has no visual.ln_pre (OpenCLIP no_ln_pre, as in CLIPA models). Such models also pool "
                "and mask attention in ways their weights do not record: load them from a directory with their "
                "open_clip_config.json, or put that file beside the weights"
            )
        mlp = sd["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
        heads["vision"] = families.vit_heads(width, mlp, patch)
        vision = VisionConfig(
            kind="vit",
            image_size=patch * grid,
            width=width,
            layers=_count(sd, r"visual\.transformer\.resblocks\.(\d+)\."),
            heads=heads["vision"].heads,
            patch_size=patch,
            mlp_ratio=mlp / width,
            act=activation,
            stem_widths=stem,
            stem_depth=stem_depth,
        )
    elif "visual.layer1.0.conv1.weight" in sd:
        width = sd["visual.layer1.0.conv1.weight"].shape[0]
        spatial = round(math.sqrt(sd["visual.attnpool.positional_embedding"].shape[0] - 1))
        heads["vision"] = families.resnet_heads(width)
        vision = VisionConfig(
            kind="resnet",
            image_size=spatial * 32,
            width=width,
            layers=tuple(_count(sd, rf"visual\.layer{i}\.(\d+)\.") for i in range(1, 5)),
            heads=heads["vision"].heads,
            act=activation,
        )
    else:
        raise CheckpointError(
            "OpenAI-layout weights with neither a ViT (visual.class_embedding) nor a ResNet "
            "(visual.layer1.*) image tower"
        )
    bias = float(sd["logit_bias"]) if "logit_bias" in sd else None
    cfg = ModelConfig(embed_dim=embed_dim, vision=vision, text=text, init_logit_bias=bias)
    return cfg, [h for h in heads.values() if not h.known]
