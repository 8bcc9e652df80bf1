"""Model configuration as data: dataclasses that round-trip through JSON, plus named presets.

Every behaviour that changes the numbers a model computes (activation, heads, pooling, logit bias,
preprocessing statistics) is an explicit field here, never guessed from a model's name.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .registry import ARCHITECTURES

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

Activation = Literal["quick_gelu", "gelu", "gelu_tanh"]
ACTIVATIONS: tuple[str, ...] = ("quick_gelu", "gelu", "gelu_tanh")


def _check_numbers(obj: Any, where: str, ints: tuple[str, ...], floats: tuple[str, ...] = ()) -> None:
    """Refuse non-numbers, bools, zero and negative sizes early, naming the field (a config from a file
    may hold anything: `"hidden_size": "768"` or `0` must not surface later as a TypeError or ZeroDivisionError)."""
    for name in ints:
        value = getattr(obj, name)
        values = value if isinstance(value, tuple) else (value,)
        if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
            raise ValueError(f"{where}.{name} must be a positive integer, got {value!r}")
    for name in floats:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            raise ValueError(f"{where}.{name} must be a positive number, got {value!r}")


@dataclass
class VisionConfig:
    """Image tower. `kind="vit"` is a Vision Transformer; `kind="resnet"` is OpenAI's ModifiedResNet.

    For ResNets `layers` holds the four stage depths and `width` the stem width; `heads` is the
    number of heads of the attention pool.

    ViT-only options (the defaults are the OpenAI/OpenCLIP ViT, so existing checkpoints load unchanged):

    - `stem_widths`: a convolutional stem before the patch embedding ("Early convolutions help
      transformers see better", Xiao et al. 2021): one 3×3 stride-2 conv + BatchNorm + ReLU per entry,
      with that many output channels. The patch embedding then covers the remaining
      `patch_size // 2**len(stem_widths)` pixels of the stem's output, so the token grid is unchanged.
      Empty (the default): a plain linear patchify. `stem_depth` > 1 adds `stem_depth - 1` residual
      3×3 blocks after each stride-2 conv (a small ResNet body before the transformer, as in hybrid ViTs).
    - `pool`: how the image embedding is read from the output tokens. `"cls"`: the class token
      (`ln_post(x[:, 0]) @ proj`); `"mean"`: the mean over patch tokens of `ln_post(x) @ proj`
      (OpenCLIP's `pool_type="avg"`), so the embedding is exactly the average of the per-patch
      readouts a MaskCLIP-style dense map uses; `"mean_then_ln"`: `ln_post(mean of patch tokens) @ proj`
      (OpenCLIP's `pool_type="avg"` with `final_ln_after_pool`, as CLIPA models use).
    - `ln_pre`: the LayerNorm on the embedded tokens before the transformer (OpenCLIP's `no_ln_pre`
      turns it off; the weights then have no `visual.ln_pre.*`).
    - SigLIP's layout: `class_token=False` (no class token: the tokens are the patches alone),
      `patch_bias=True` (the patch embedding has a bias), `pool="map"` (multihead attention pooling:
      a learnt probe attends over `ln_post` of every output token, then LN + MLP with a residual,
      `visual.attn_pool.*`), `proj=False` (no projection: the embedding is the pooled width, so
      `embed_dim` must equal `width`).
    """

    kind: Literal["vit", "resnet"] = "vit"
    image_size: int = 224
    width: int = 768
    layers: int | tuple[int, ...] = 12
    heads: int = 12
    patch_size: int = 32
    mlp_ratio: float = 4.0
    act: Activation = "quick_gelu"
    layer_norm_eps: float = 1e-5
    stem_widths: tuple[int, ...] = ()
    stem_depth: int = 1
    pool: Literal["cls", "mean", "mean_then_ln", "map"] = "cls"
    ln_pre: bool = True
    class_token: bool = True
    patch_bias: bool = False
    proj: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.layers, list):
            self.layers = tuple(self.layers)
        self.stem_widths = tuple(int(w) for w in self.stem_widths)
        if self.kind not in ("vit", "resnet"):
            raise ValueError(f"vision.kind must be 'vit' or 'resnet', got {self.kind!r}")
        if self.kind == "resnet" and (not isinstance(self.layers, tuple) or len(self.layers) != 4):
            raise ValueError(f"vision.layers must be four stage depths for a ResNet, got {self.layers!r}")
        _check_numbers(self, "vision", ("image_size", "width", "layers", "heads", "patch_size"),
                       ("mlp_ratio", "layer_norm_eps"))
        if self.kind == "vit":
            if not isinstance(self.layers, int):
                raise ValueError(f"vision.layers must be an int for a ViT, got {self.layers!r}")
            if self.image_size % self.patch_size:
                raise ValueError(
                    f"vision.image_size {self.image_size} is not a multiple of patch_size {self.patch_size}"
                )
        if self.width % self.heads and self.kind == "vit":
            raise ValueError(f"vision.width {self.width} is not divisible by heads {self.heads}")
        _check_act(self.act, "vision.act")
        if self.pool not in ("cls", "mean", "mean_then_ln", "map"):
            raise ValueError(f"vision.pool must be 'cls', 'mean', 'mean_then_ln' or 'map', got {self.pool!r}")
        _check_flags(self, "vision", ("ln_pre", "class_token", "patch_bias", "proj"))
        vit_only = self.stem_widths or self.pool != "cls" or not self.ln_pre or not self.class_token
        if self.kind == "resnet" and (vit_only or self.patch_bias or not self.proj):
            raise ValueError(
                "vision.stem_widths, pool, ln_pre, class_token, patch_bias and proj apply to ViTs only "
                "(a ResNet has its own stem and pool)"
            )
        if self.pool == "cls" and not self.class_token:
            raise ValueError("vision.pool 'cls' reads the class token, but vision.class_token is false")
        if self.stem_depth < 1:
            raise ValueError(f"vision.stem_depth must be >= 1, got {self.stem_depth}")
        if any(w < 1 for w in self.stem_widths):
            raise ValueError(f"vision.stem_widths must be positive channel counts, got {self.stem_widths!r}")
        if self.kind == "vit" and self.patch_size % 2 ** len(self.stem_widths):
            raise ValueError(
                f"vision.patch_size {self.patch_size} is not divisible by the conv stem's stride "
                f"{2 ** len(self.stem_widths)} ({len(self.stem_widths)} stride-2 convs)"
            )

    @property
    def grid_size(self) -> int:
        return self.image_size // (self.patch_size if self.kind == "vit" else 32)

    @property
    def depth(self) -> int:
        """A ViT's transformer blocks (`layers`, checked to be an int for a ViT)."""
        if not isinstance(self.layers, int):
            raise ValueError(f"vision.layers {self.layers!r} are ResNet stage depths, not a ViT's depth")
        return self.layers

    @property
    def stages(self) -> tuple[int, ...]:
        """A ResNet's four stage depths (`layers`, checked to be a 4-tuple for a ResNet)."""
        if isinstance(self.layers, int):
            raise ValueError(f"vision.layers {self.layers!r} is a ViT's depth, not ResNet stage depths")
        return self.layers


@dataclass
class TextConfig:
    """Causal text transformer.

    `pooling="first_eot"` takes the sentence feature at the first `eot_token_id` (rows without one
    fall back to argmax); `"argmax"` takes it at the largest token id, as OpenAI's code and
    Hugging Face configs with the legacy `eos_token_id == 2` do; `"eos"` at the first `eot_token_id`
    with position 0 for rows without one (OpenCLIP's `pool_type="eos"`); `"last"` at the last position
    of the token row (OpenCLIP's `pool_type="last"`).

    `causal=False` lets every token attend to every other, padding included (OpenCLIP's
    `no_causal_mask`, SigLIP): the features then depend on the whole padded row, which is never cut.
    `proj_bias=True` adds a bias to the text projection (SigLIP's text head is a biased linear).
    """

    context_length: int = 77
    vocab_size: int = 49408
    width: int = 512
    heads: int = 8
    layers: int = 12
    mlp_ratio: float = 4.0
    act: Activation = "quick_gelu"
    layer_norm_eps: float = 1e-5
    eot_token_id: int = 49407
    pooling: Literal["first_eot", "argmax", "eos", "last"] = "first_eot"
    causal: bool = True
    proj_bias: bool = False

    def __post_init__(self) -> None:
        if self.pooling not in ("first_eot", "argmax", "eos", "last"):
            raise ValueError(f"text.pooling must be 'first_eot', 'argmax', 'eos' or 'last', got {self.pooling!r}")
        _check_flags(self, "text", ("causal", "proj_bias"))
        _check_numbers(self, "text", ("context_length", "vocab_size", "width", "heads", "layers"),
                       ("mlp_ratio", "layer_norm_eps"))
        if isinstance(self.eot_token_id, bool) or not isinstance(self.eot_token_id, int) or self.eot_token_id < 0:
            raise ValueError(f"text.eot_token_id must be a non-negative integer, got {self.eot_token_id!r}")
        if self.width % self.heads:
            raise ValueError(f"text.width {self.width} is not divisible by heads {self.heads}")
        _check_act(self.act, "text.act")


@dataclass
class PreprocessConfig:
    """Eval preprocessing: resize the shortest side, centre crop, scale to [0, 1], normalise."""

    image_size: int = 224
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    interpolation: Literal["bicubic", "bilinear"] = "bicubic"
    resize_mode: Literal["shortest", "squash"] = "shortest"

    def __post_init__(self) -> None:
        _check_numbers(self, "preprocess", ("image_size",))
        try:
            self.mean = tuple(float(x) for x in self.mean)  # type: ignore[assignment]
            self.std = tuple(float(x) for x in self.std)  # type: ignore[assignment]
        except (TypeError, ValueError):
            raise ValueError(f"preprocess.mean/std must be three numbers, got {self.mean!r} / {self.std!r}") from None
        if len(self.mean) != 3 or len(self.std) != 3 or not all(x > 0 for x in self.std):
            raise ValueError(f"preprocess.mean/std must be three numbers (std > 0), got {self.mean} / {self.std}")


def _sub_config(cls: type, value: Any, where: str) -> Any:
    """A tower/preprocess config from a dict (unknown fields named), or as it is."""
    if isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise ValueError(f"model.{where} must be an object, got {type(value).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(map(str, set(value) - known))
    if unknown:
        raise ValueError(f"unknown {where} config field(s) {unknown}; expected some of {sorted(known)}")
    return cls(**value)


@dataclass
class ModelConfig:
    """A whole CLIP model: two towers, the shared embedding size and the logit scale/bias."""

    embed_dim: int = 512
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    init_logit_scale: float = math.log(1 / 0.07)
    init_logit_bias: float | None = None
    #: None (the default) becomes a PreprocessConfig of the vision tower's image size in __post_init__
    preprocess: PreprocessConfig = None  # type: ignore[assignment]
    tokenizer: dict[str, Any] = field(default_factory=lambda: {"kind": "bpe"})
    name: str = ""

    def __post_init__(self) -> None:
        self.vision = _sub_config(VisionConfig, self.vision, "vision")
        self.text = _sub_config(TextConfig, self.text, "text")
        if self.preprocess is not None:
            self.preprocess = _sub_config(PreprocessConfig, self.preprocess, "preprocess")
        _check_numbers(self, "model", ("embed_dim",))
        if self.vision.kind == "vit" and not self.vision.proj and self.embed_dim != self.vision.width:
            raise ValueError(
                f"vision.proj is false, so the image embedding is the tower's width {self.vision.width}, "
                f"but embed_dim is {self.embed_dim}"
            )
        if self.preprocess is None:
            self.preprocess = PreprocessConfig(image_size=self.vision.image_size)

    @property
    def has_logit_bias(self) -> bool:
        return self.init_logit_bias is not None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def identity(self) -> dict[str, Any]:
        """`to_dict()` without the fields added after models were first fingerprinted, while they hold
        their defaults: weights fingerprints (feature caches, saved adapters, indexes) stay valid."""
        data = self.to_dict()
        for tower, defaults in LATER_FIELDS.items():
            for name, default in defaults.items():
                if data[tower].get(name) == default:
                    del data[tower][name]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config field(s) {sorted(unknown)}; expected some of {sorted(known)}")
        return cls(**copy.deepcopy(data))

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> "ModelConfig":
        p = Path(text_or_path)
        text = p.read_text() if not str(text_or_path).lstrip().startswith("{") and p.exists() else str(text_or_path)
        return cls.from_dict(json.loads(text))

    def replace(self, **overrides: Any) -> "ModelConfig":
        """A copy with overrides; `vision`/`text`/`preprocess` accept dicts of field overrides."""
        data = self.to_dict()
        for key, value in overrides.items():
            if key in ("vision", "text", "preprocess") and isinstance(value, dict):
                data[key] = {**(data[key] or {}), **value}
            elif key not in data:
                raise ValueError(f"unknown model config field {key!r}")
            else:
                data[key] = value
        if "vision" in overrides and "preprocess" not in overrides:
            data["preprocess"]["image_size"] = data["vision"]["image_size"]
        return ModelConfig.from_dict(data)


#: per tower, fields added after fingerprints were first recorded, with their defaults (see `ModelConfig.identity`)
LATER_FIELDS: dict[str, dict[str, Any]] = {
    "vision": {"class_token": True, "patch_bias": False, "proj": True},
    "text": {"proj_bias": False},
}


def _check_act(act: str, where: str) -> None:
    if act not in ACTIVATIONS:
        raise ValueError(f"{where} must be one of {', '.join(ACTIVATIONS)}, got {act!r}")


def _check_flags(obj: Any, where: str, names: tuple[str, ...]) -> None:
    for name in names:
        if not isinstance(getattr(obj, name), bool):
            raise ValueError(f"{where}.{name} must be true or false, got {getattr(obj, name)!r}")


def _openai_vit(embed: int, image: int, width: int, layers: int, patch: int, text_width: int) -> ModelConfig:
    return ModelConfig(
        embed_dim=embed,
        vision=VisionConfig(
            kind="vit", image_size=image, width=width, layers=layers, heads=width // 64, patch_size=patch
        ),
        text=TextConfig(width=text_width, heads=text_width // 64, layers=12),
    )


def _openai_rn(embed: int, image: int, layers: tuple[int, ...], width: int, text_width: int) -> ModelConfig:
    return ModelConfig(
        embed_dim=embed,
        vision=VisionConfig(kind="resnet", image_size=image, width=width, layers=layers, heads=width * 32 // 64),
        text=TextConfig(width=text_width, heads=text_width // 64, layers=12),
    )


def _small(vision_kind: str = "vit") -> ModelConfig:
    """Small config for tests and CPU training (the training benchmark's architecture)."""
    return ModelConfig(
        embed_dim=256,
        vision=VisionConfig(image_size=64, width=256, layers=6, heads=4, patch_size=16, act="gelu"),
        text=TextConfig(context_length=32, width=256, heads=4, layers=6, act="gelu"),
    )


def _shapes_vit() -> ModelConfig:
    """A 64 px ViT (8 px patches) and a short-context text tower for the shapes world (~2M parameters)."""
    return ModelConfig(
        embed_dim=128,
        vision=VisionConfig(image_size=64, width=128, layers=6, heads=2, patch_size=8, act="gelu"),
        text=TextConfig(context_length=32, width=128, heads=2, layers=4, act="gelu"),
    )


def _shapes_vit_hybrid() -> ModelConfig:
    """`shapes-vit` with a convolutional body before the patch embedding, and mean-pooled patch tokens.

    Three 3x3 stride-2 convs (32, 64, 128 channels), each followed by one residual 3x3 block, turn a
    64 px image into an 8x8 grid that a 1x1 patch embedding reads, so the token grid is the plain ViT's
    (8 px patches). On the shapes world it learns shapes from little data far faster than the plain
    patchify; the image embedding is the mean of the per-patch readouts. The embedded default model.
    """
    base = _shapes_vit()
    return base.replace(vision={"stem_widths": (32, 64, 128), "stem_depth": 2, "pool": "mean"})


def _shapes_rn() -> ModelConfig:
    """A small ModifiedResNet variant of `shapes-vit` (convolutions learn shapes from little data)."""
    return ModelConfig(
        embed_dim=128,
        vision=VisionConfig(kind="resnet", image_size=64, width=24, layers=(2, 2, 2, 2), heads=12),
        text=TextConfig(context_length=32, width=128, heads=2, layers=4, act="gelu"),
    )


def _tiny() -> ModelConfig:
    """A tiny model for unit tests (head width 64, like the OpenAI family, so inference recovers it)."""
    return ModelConfig(
        embed_dim=32,
        vision=VisionConfig(image_size=32, width=128, layers=2, heads=2, patch_size=8),
        text=TextConfig(context_length=16, width=64, heads=1, layers=2),
    )


def _tiny_rn() -> ModelConfig:
    return ModelConfig(
        embed_dim=32,
        vision=VisionConfig(kind="resnet", image_size=64, width=16, layers=(1, 1, 1, 1), heads=8),
        text=TextConfig(context_length=16, width=64, heads=1, layers=2),
    )


ARCHITECTURES.register("RN50", lambda: _openai_rn(1024, 224, (3, 4, 6, 3), 64, 512))
ARCHITECTURES.register("RN101", lambda: _openai_rn(512, 224, (3, 4, 23, 3), 64, 512))
ARCHITECTURES.register("RN50x4", lambda: _openai_rn(640, 288, (4, 6, 10, 6), 80, 640))
ARCHITECTURES.register("RN50x16", lambda: _openai_rn(768, 384, (6, 8, 18, 8), 96, 768))
ARCHITECTURES.register("RN50x64", lambda: _openai_rn(1024, 448, (3, 15, 36, 10), 128, 1024))
ARCHITECTURES.register("ViT-B-32", lambda: _openai_vit(512, 224, 768, 12, 32, 512))
ARCHITECTURES.register("ViT-B-16", lambda: _openai_vit(512, 224, 768, 12, 16, 512))
ARCHITECTURES.register("ViT-L-14", lambda: _openai_vit(768, 224, 1024, 24, 14, 768))
ARCHITECTURES.register("ViT-L-14-336", lambda: _openai_vit(768, 336, 1024, 24, 14, 768))
ARCHITECTURES.register("small", _small)
ARCHITECTURES.register("shapes-vit", _shapes_vit)
ARCHITECTURES.register("shapes-vit-hybrid", _shapes_vit_hybrid)
ARCHITECTURES.register("shapes-rn", _shapes_rn)
ARCHITECTURES.register("tiny", _tiny)
ARCHITECTURES.register("tiny-rn", _tiny_rn)


def list_configs() -> list[str]:
    return sorted(ARCHITECTURES.list())


def get_config(name: str, **overrides: Any) -> ModelConfig:
    """A named preset (OpenAI architectures use QuickGELU, as their weights were trained with it)."""
    cfg = ARCHITECTURES.create(name)
    cfg.name = name
    return cfg.replace(**overrides) if overrides else cfg
