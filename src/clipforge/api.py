"""The public entry points: create a model, load any checkpoint, get its tokenizer, save it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch

from .checkpoints import Checkpoint, build_model, read_checkpoint, save_native
from .checkpoints.loader import ConfigLike
from .config import Activation, ModelConfig, get_config, list_configs
from .model import CLIP
from .tokenizer import BPETokenizer, Tokenizer, WordTokenizer, load_tokenizer
from .transforms import ImageTransform

Precision = Literal["fp32", "bf16", "fp16", "int8", "auto"]
Backend = Literal["torch", "onnx", "auto", "none"]
PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
#: what `load(precision=..., backend=...)` accepts
ALL_PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16", "int8")
ALL_BACKENDS: tuple[str, ...] = ("auto", "torch", "onnx", "none")
DEFAULT_MODEL_DIR = Path(__file__).parent / "assets" / "default-model"


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
    if not (DEFAULT_MODEL_DIR / "config.json").is_file():
        raise FileNotFoundError(
            f"the embedded default model is missing from {DEFAULT_MODEL_DIR}; pass a checkpoint path"
        )
    return DEFAULT_MODEL_DIR


def load(
    path: str | Path | None = None,
    device: str | torch.device | None = None,
    precision: Precision = "fp32",
    config: ConfigLike = None,
    activation: Activation | None = None,
    backend: Backend | None = None,
) -> tuple[Any, ImageTransform, Tokenizer]:
    """Load a checkpoint of any supported format → (model in eval mode, preprocess, tokenizer).

    `path=None` loads the embedded default model. `config` (preset name, ModelConfig, dict or JSON
    path) overrides architecture inference; `activation` sets QuickGELU/GELU for bare state dicts.

    `backend=None`/"none" returns the `CLIP` module (trainable, in `precision`: fp32/bf16/fp16).
    "torch" or "onnx" returns an inference engine (`clipforge.fast.FastCLIP`: `encode_image`,
    `encode_text`, `logits`; precision fp32/bf16/int8) over the same weights. "auto" picks per
    device (see `resolve_runtime`), as does `precision="auto"`.
    """
    dev = torch.device(device) if device else default_device()
    precision, backend = resolve_runtime(precision, backend, dev)
    ckpt = read_checkpoint(path if path is not None else default_model_path(), config=config, activation=activation)
    model = build_model(ckpt)
    model = model.to(device=dev, dtype=torch.float32 if backend != "none" else _dtype(precision))
    if backend != "none":
        from .fast import optimize

        model = optimize(model, precision, backend)  # type: ignore[arg-type]
    return model, ImageTransform(ckpt.config.preprocess), tokenizer_for(ckpt)


def runtime_of(model: Any) -> str:
    """How a loaded model computes, for result files: an engine's description or "plain model <dtype>"."""
    return getattr(model, "runtime", None) or f"plain model {str(model.dtype).replace('torch.', '')}"


def resolve_runtime(precision: str, backend: str | None, device: torch.device) -> tuple[str, str]:
    """(precision, backend) with "auto" resolved and combinations checked; backend "none" = the plain model.

    Automatic choices: on the CPU the prepared engine (backend "torch") in fp32, whose features stay
    within 1e-4 of the model's and which is faster (docs/performance.md); on CUDA the plain model, in bf16 where the
    GPU supports it (else fp16). bf16 and int8 on the CPU are opt-in, because they change the numbers.
    """
    if precision not in ALL_PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(ALL_PRECISIONS)}")
    backend = "none" if backend is None else backend
    if backend not in ALL_BACKENDS:
        raise ValueError(f"backend {backend!r}: expected one of {', '.join(ALL_BACKENDS)}")
    cuda = device.type == "cuda"
    if backend == "auto":
        backend = "torch" if precision == "int8" or not cuda else "none"
    if precision == "auto":
        if cuda:
            precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "fp32"
        if backend == "onnx" or (backend == "torch" and precision == "fp16"):
            precision = "fp32"
    if backend == "none" and precision == "int8":
        raise ValueError("precision int8 (dynamic quantisation) needs an engine: use backend 'torch' or 'onnx'")
    if backend != "none" and precision == "fp16":
        raise ValueError(f"backend {backend!r} runs fp32, bf16 or int8; fp16 needs backend 'none' (the plain model)")
    if backend == "onnx" and precision == "bf16":
        raise ValueError("backend 'onnx' runs fp32 or int8; for bf16 use backend 'torch'")
    if precision == "int8" and cuda:
        raise ValueError("precision int8 (dynamic quantisation) runs on the CPU only")
    return precision, backend


def _dtype(precision: str) -> torch.dtype:
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {sorted(PRECISIONS)}")
    return PRECISIONS[precision]


def tokenizer_for(ckpt: Checkpoint) -> Tokenizer:
    """The checkpoint's own tokenizer files if it has them, else the OpenAI BPE for BPE models."""
    ctx = ckpt.config.text.context_length
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
    if name_or_path is None:
        name_or_path = default_model_path()
    if isinstance(name_or_path, str) and name_or_path in list_configs():
        cfg = get_config(name_or_path)
        return BPETokenizer.from_bpe_file(context_length=context_length or cfg.text.context_length)
    path = Path(name_or_path)
    if not path.exists():
        raise FileNotFoundError(f"{name_or_path!r} is neither a model preset ({', '.join(list_configs())}) nor a path")
    try:
        return load_tokenizer(path, context_length=context_length)
    except FileNotFoundError:  # a checkpoint without tokenizer files: OpenAI/OpenCLIP models use the OpenAI BPE
        return BPETokenizer.from_bpe_file(context_length=context_length or 77)


def save(model: CLIP, directory: str | Path, tokenizer: Tokenizer | None = None) -> Path:
    """Save as a native clipforge directory (config.json, model.safetensors, tokenizer files)."""
    return save_native(model, directory, tokenizer)


__all__ = [
    "create_model",
    "list_models",
    "load",
    "resolve_runtime",
    "get_tokenizer",
    "save",
    "default_device",
    "WordTokenizer",
]
