"""Every model config the installed open_clip_torch ships is read exactly or refused naming its option.

The configs are read from the package's data files (no `import open_clip`, which needs torchvision);
`tests/test_interop_open_clip.py` compares the models built from them with OpenCLIP's own.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from clipforge.checkpoints import CheckpointError, families
from clipforge.checkpoints.openclip import config_from_openclip_json


def openclip_config_files() -> list[Path]:
    """The `model_configs/*.json` of the installed open_clip_torch (empty when it is not installed)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return []
    return sorted((Path(next(iter(spec.submodule_search_locations))) / "model_configs").glob("*.json"))


CONFIGS = openclip_config_files()
needs_configs = pytest.mark.skipif(not CONFIGS, reason="open_clip_torch is not installed")


def _flat_keys(cfg: dict) -> set[str]:
    """Every option of a model config, as written: `vision_cfg.pool_type`, `quick_gelu`, ..."""
    keys = set()
    for key, value in cfg.items():
        keys.add(key)
        if key in ("vision_cfg", "text_cfg") and isinstance(value, dict):
            keys |= {f"{key}.{k}" for k in value}
    return keys


@needs_configs
@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_config_is_read_exactly_or_refused_by_name(path):
    data = json.loads(path.read_text())
    try:
        cfg = config_from_openclip_json(data)
    except CheckpointError as exc:  # refused: the message names one of the config's own options
        assert any(key in str(exc) for key in _flat_keys(data)), str(exc)
        return
    vc, tc = data["vision_cfg"], data["text_cfg"]
    v, t = cfg.vision, cfg.text
    assert cfg.embed_dim == data["embed_dim"]
    assert v.act == t.act == ("quick_gelu" if data.get("quick_gelu") else "gelu")
    assert (v.width, v.layers, v.image_size) == (vc["width"], tuple(vc["layers"]) if v.kind == "resnet" else
                                                 vc["layers"], vc["image_size"])
    assert (t.width, t.heads, t.layers, t.context_length, t.vocab_size) == (
        tc["width"], tc["heads"], tc["layers"], tc["context_length"], tc["vocab_size"]
    )
    assert int(round(t.width * t.mlp_ratio)) == int(t.width * tc.get("mlp_ratio", 4.0))
    assert t.causal is not tc.get("no_causal_mask", False)
    assert t.pooling == {"eos": "eos", "last": "last"}.get(tc.get("pool_type"), "first_eot")
    if t.pooling == "eos":
        assert t.eot_token_id == tc["eos_id"]
    hf_name = tc.get("hf_tokenizer_name")
    assert cfg.tokenizer == ({"kind": "hf", "name": hf_name, "kwargs": tc.get("tokenizer_kwargs") or {}}
                             if hf_name else {"kind": "bpe"})
    if v.kind == "resnet":
        assert v.heads == vc["width"] * 32 // vc.get("head_width", 64)
        return
    assert v.heads == vc["width"] // vc.get("head_width", 64) and v.patch_size == vc["patch_size"]
    assert int(round(v.width * v.mlp_ratio)) == int(v.width * vc.get("mlp_ratio", 4.0))
    assert v.ln_pre is not vc.get("no_ln_pre", False)
    pool = {"tok": "cls", "avg": "mean_then_ln" if vc.get("final_ln_after_pool") else "mean"}
    assert v.pool == pool[vc.get("pool_type", "tok")]


@needs_configs
@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_family_head_counts_match_the_shipped_configs(path):
    """The shape table bare state dicts are read with gives every shipped config's head counts."""
    data = json.loads(path.read_text())
    vc, tc = data["vision_cfg"], data["text_cfg"]
    try:
        config_from_openclip_json(data)
    except CheckpointError:
        pytest.skip("refused (timm, Hugging Face or CoCa towers)")
    width = vc["width"]
    if isinstance(vc["layers"], list):
        found = families.resnet_heads(width)
        assert found.known and found.heads == width * 32 // vc.get("head_width", 64)
    else:
        found = families.vit_heads(width, int(width * vc.get("mlp_ratio", 4.0)), vc["patch_size"])
        assert found.known and found.heads == width // vc.get("head_width", 64)
    text = families.text_heads(tc["width"], int(tc["width"] * tc.get("mlp_ratio", 4.0)))
    assert text.known and text.heads == tc["heads"]


def _vit_b_32() -> dict:
    return {
        "embed_dim": 512,
        "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 32},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12},
    }


@pytest.mark.parametrize(
    "where, option, value, match",
    [
        ("vision_cfg", "frobnicate", 1, r"vision_cfg has option\(s\) \['frobnicate'\]"),
        ("text_cfg", "frobnicate", 1, r"text_cfg has option\(s\) \['frobnicate'\]"),
        (None, "frobnicate", 1, r"model_cfg has option\(s\) \['frobnicate'\]"),
        ("vision_cfg", "qk_norm", True, "vision_cfg.qk_norm=True: LayerNorm on queries and keys"),
        ("vision_cfg", "attentional_pool", True, "attentional pooling"),
        ("vision_cfg", "pool_type", "none", "vision_cfg.pool_type='none' is not supported"),
        ("vision_cfg", "image_size", [224, 448], "square images"),
        ("vision_cfg", "norm_kwargs", {"elementwise_affine": False}, "takes only 'eps'"),
        ("vision_cfg", "act_kwargs", {"approximate": "tanh"}, "act_kwargs"),
        ("text_cfg", "pool_type", "first", "text_cfg.pool_type='first' is not supported"),
        ("text_cfg", "embed_cls", True, "text class token"),
        ("text_cfg", "proj_bias", True, "text projection with a bias"),
        ("text_cfg", "tokenizer_kwargs", {"clean": "whitespace"}, "takes no options"),
        (None, "multimodal_cfg", {"width": 512}, "multimodal text decoder"),
    ],
)
def test_options_clipforge_cannot_compute_are_refused_by_name(where, option, value, match):
    data = _vit_b_32()
    (data[where] if where else data)[option] = value
    with pytest.raises(CheckpointError, match=match):
        config_from_openclip_json({"model_cfg": data})


def test_cheap_exact_options_are_read():
    data = _vit_b_32()
    data["vision_cfg"].update(norm_kwargs={"eps": 1e-6}, act_kwargs={"approximate": "none"}, no_ln_pre=True,
                              pool_type="avg", final_ln_after_pool=True, patch_dropout=0.5, image_size=[224, 224])
    data["text_cfg"].update(pool_type="eos", eos_id=2, no_causal_mask=True, norm_kwargs={"eps": 1e-6},
                            hf_tokenizer_name="org/tok", tokenizer_kwargs={"clean": "canonicalize"})
    cfg = config_from_openclip_json({"model_cfg": data})
    assert cfg.vision.layer_norm_eps == cfg.text.layer_norm_eps == 1e-6
    assert (cfg.vision.ln_pre, cfg.vision.pool, cfg.vision.image_size) == (False, "mean_then_ln", 224)
    assert (cfg.text.pooling, cfg.text.eot_token_id, cfg.text.causal) == ("eos", 2, False)
    assert cfg.tokenizer == {"kind": "hf", "name": "org/tok", "kwargs": {"clean": "canonicalize"}}
