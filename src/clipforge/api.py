"""The public entry points: create a model, load any checkpoint, get its tokenizer, save it."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal, overload

import torch

from .checkpoints import Checkpoint, build_model, read_checkpoint, save_native
from .checkpoints.loader import ConfigLike
from .checkpoints.openclip import hf_tokenizer_refusal, tokenizer_of_config_file
from .config import Activation, ModelConfig, PreprocessConfig, get_config, list_configs
from .fast import FastCLIP, engine_refusal, optimize
from .model import CLIP
from .runtime import Backend, Precision, model_dtype, resolve_runtime
from .tokenizer import (
    HF_TOKENIZER_FILES,
    TOKENIZER_CONFIG_NAME,
    BPETokenizer,
    HFTokenizer,
    MissingTokenizer,
    Tokenizer,
    WordTokenizer,
    has_hf_tokenizer,
    load_tokenizer,
)
from .transforms import ImageTransform

ASSETS_DIR = Path(__file__).parent / "assets"
DEFAULT_MODEL_DIR = ASSETS_DIR / "default-model"
#: Models trained on the shapes world that ship inside the package, by the name `load` accepts.
EMBEDDED_MODELS = {"default": DEFAULT_MODEL_DIR, "default-rn": ASSETS_DIR / "default-rn"}


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def create_model(name: str | ModelConfig, **overrides: Any) -> CLIP:
    """A randomly initialised model from a preset name (see `list_models`) or a config, in eval mode."""
    cfg = get_config(name, **overrides) if isinstance(name, str) else (name.replace(**overrides) if overrides else name)
    return CLIP(cfg).eval()


def list_models() -> list[str]:
    return list_configs()


def default_model_path() -> Path:
    """The small model trained on the shapes world that ships inside the package."""
    return embedded_model_path("default")


def embedded_model_path(name: str) -> Path:
    """The directory of the embedded model `name` (a key of `EMBEDDED_MODELS`)."""
    if name not in EMBEDDED_MODELS:
        raise ValueError(f"no embedded model {name!r}; the package ships {', '.join(EMBEDDED_MODELS)}")
    path = EMBEDDED_MODELS[name]
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"the embedded model {name!r} is missing from {path}; pass a checkpoint path")
    return path


def resolve_model_path(path: str | Path | None) -> Path | str:
    """A checkpoint path as given, or the directory of an embedded model named by it (None = the default).

    A file or folder that exists under the same name wins over the embedded model's name.
    """
    if path is None:
        return default_model_path()
    if str(path) in EMBEDDED_MODELS and not Path(path).exists():
        return embedded_model_path(str(path))
    return path


# For the type checker: backend None/"none" always gives the plain `CLIP` module, other backends may
# give an engine (`resolve_runtime` decides "auto" per device).
@overload
def load(
    path: str | Path | None = None,
    device: str | torch.device | None = None,
    precision: Precision = "fp32",
    config: ConfigLike = None,
    activation: Activation | None = None,
    backend: Literal["none"] | None = None,
) -> tuple[CLIP, ImageTransform, Tokenizer]: ...


@overload
def load(
    path: str | Path | None = None,
    device: str | torch.device | None = None,
    precision: Precision = "fp32",
    config: ConfigLike = None,
    activation: Activation | None = None,
    backend: Backend | None = None,
) -> tuple[CLIP | FastCLIP, ImageTransform, Tokenizer]: ...


def load(
    path: str | Path | None = None,
    device: str | torch.device | None = None,
    precision: Precision = "fp32",
    config: ConfigLike = None,
    activation: Activation | None = None,
    backend: Backend | None = None,
) -> tuple[CLIP | FastCLIP, ImageTransform, Tokenizer]:
    """Load a checkpoint of any supported format → (model in eval mode, preprocess, tokenizer).

    `path=None` loads the embedded default model; the names of `EMBEDDED_MODELS` load the others.
    `config` (preset name, ModelConfig, dict or JSON path) overrides architecture inference;
    `activation` sets QuickGELU/GELU for bare state dicts.

    `backend=None`/"none" returns the `CLIP` module (trainable, in `precision`: fp32/bf16/fp16).
    "torch" or "onnx" returns an inference engine (`clipforge.fast.FastCLIP`: `encode_image`,
    `encode_text`, `logits`; precision fp32/bf16/int8) over the same weights. "auto" picks per
    device (see `resolve_runtime`), as does `precision="auto"`, and takes the plain model for
    architectures the engines do not run (`clipforge.fast.engine_refusal`, e.g. SigLIP's).
    """
    dev = torch.device(device) if device else default_device()
    run_precision, run_backend = resolve_runtime(precision, backend, dev)
    ckpt = read_checkpoint(resolve_model_path(path), config=config, activation=activation)
    if backend == "auto" and run_backend != "none" and run_precision != "int8" and engine_refusal(ckpt.config):
        run_backend = "none"  # "auto" picks what runs the model: the plain module where no engine does
    model = build_model(ckpt)
    model = model.to(device=dev, dtype=torch.float32 if run_backend != "none" else model_dtype(run_precision))
    encoder: CLIP | FastCLIP = model if run_backend == "none" else optimize(model, run_precision, run_backend)
    return encoder, ImageTransform(preprocess_config(ckpt.config)), tokenizer_for(ckpt)


def preprocess_config(config: ModelConfig) -> PreprocessConfig:
    """The config's preprocessing (`ModelConfig` fills it in from the image size when none is given)."""
    if config.preprocess is None:
        raise ValueError(f"model config {config.name!r} has no preprocessing settings")
    return config.preprocess


def tokenizer_for(ckpt: Checkpoint) -> Tokenizer:
    """The checkpoint's own tokenizer files if it has them, else the OpenAI BPE for BPE models.

    Models whose tokenizer is a Hugging Face one (SigLIP, OpenCLIP `hf_tokenizer_name`) use the files
    beside the weights (`HFTokenizer`); without them a SigLIP model still loads, with a warning and a
    `MissingTokenizer` that names the files when text is encoded."""
    ctx = ckpt.config.text.context_length
    kind = ckpt.config.tokenizer.get("kind")
    if kind in ("hf", "hf-files"):
        if ckpt.tokenizer_dir is not None and has_hf_tokenizer(ckpt.tokenizer_dir):
            return HFTokenizer(ckpt.tokenizer_dir, context_length=ctx)
        if kind == "hf":
            raise hf_tokenizer_refusal(ckpt.path, ckpt.config.tokenizer)
        where = ckpt.path if ckpt.path.is_dir() else ckpt.path.parent
        reason = (
            f"{ckpt.path}: the model's tokenizer files are missing; put its Hugging Face tokenizer files "
            f"({TOKENIZER_CONFIG_NAME} and one of {', '.join(HF_TOKENIZER_FILES)}, e.g. SigLIP's spiece.model) "
            f"in {where}"
        )
        warnings.warn(f"{reason}. Images encode; text will not.", stacklevel=3)
        return MissingTokenizer(reason, ctx)
    if ckpt.tokenizer_dir is not None:
        try:
            return load_tokenizer(ckpt.tokenizer_dir, context_length=ctx)
        except FileNotFoundError:  # e.g. an HF directory with tokenizer_config.json but no vocabulary
            pass
    if ckpt.config.tokenizer.get("kind", "bpe") == "bpe":
        return BPETokenizer.from_bpe_file(context_length=ctx)
    raise FileNotFoundError(
        f"{ckpt.path}: the model uses a {ckpt.config.tokenizer.get('kind')!r} tokenizer but its files are missing"
    )


def get_tokenizer(name_or_path: str | Path | None = None, context_length: int | None = None) -> Tokenizer:
    """The tokenizer of a preset name, a checkpoint path, or (None) the default model."""
    name_or_path = resolve_model_path(name_or_path)
    if isinstance(name_or_path, str) and name_or_path in list_configs():
        cfg = get_config(name_or_path)
        return BPETokenizer.from_bpe_file(context_length=context_length or cfg.text.context_length)
    path = Path(name_or_path)
    if not path.exists():
        raise FileNotFoundError(f"{name_or_path!r} is neither a model preset ({', '.join(list_configs())}) nor a path")
    try:
        return load_tokenizer(path, context_length=context_length)
    except FileNotFoundError:  # a checkpoint without tokenizer files: OpenAI/OpenCLIP models use the OpenAI BPE
        hf_tokenizer = tokenizer_of_config_file(path)
        if hf_tokenizer is not None:  # ...unless its OpenCLIP config names another tokenizer
            raise hf_tokenizer_refusal(path, hf_tokenizer) from None
        return BPETokenizer.from_bpe_file(context_length=context_length or 77)


def save(model: CLIP, directory: str | Path, tokenizer: Tokenizer | None = None) -> Path:
    """Save as a native clipforge directory (config.json, model.safetensors, tokenizer files)."""
    return save_native(model, directory, tokenizer)


__all__ = [
    "create_model",
    "list_models",
    "load",
    "get_tokenizer",
    "save",
    "default_device",
    "WordTokenizer",
]
