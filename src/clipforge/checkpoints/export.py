"""Write a model as a native clipforge directory, a Hugging Face CLIPModel directory, or OpenCLIP files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..files import atomic_directory, canonical_path, write_text_atomic
from ..model import CLIP
from . import hf, openai, openclip
from .io import save_safetensors
from .loader import NATIVE_FORMAT, NATIVE_WEIGHTS

EXPORT_FORMATS = ("native", "hf", "openclip")


def _fp_state(model: CLIP, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    sd = model.state_dict()
    if dtype is None:
        return sd
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}


def _json(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def save_native(
    model: CLIP,
    directory: str | Path,
    tokenizer: Any | None = None,
    dtype: torch.dtype | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """config.json + model.safetensors (+ tokenizer files). Each file is written atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_safetensors(_fp_state(model, dtype), directory / NATIVE_WEIGHTS, metadata={"format": NATIVE_FORMAT})
    if tokenizer is not None:
        tokenizer.save(directory)
    _json(
        directory / "config.json",
        {"format": NATIVE_FORMAT, "format_version": 1, "model": model.config.to_dict(), **(extra or {})},
    )
    return directory


def export_hf(model: CLIP, directory: str | Path, tokenizer: Any | None = None) -> Path:
    """A directory `transformers.CLIPModel.from_pretrained` (or, for SigLIP's architecture,
    `SiglipModel.from_pretrained`) loads strictly, plus the processor's and tokenizer's files."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    config_json = hf.hf_config_json(cfg)
    pre_json = hf.hf_preprocessor_json(cfg)
    save_safetensors(
        hf.native_to_hf(_fp_state(model, None), siglip=hf.is_siglip_layout(cfg)),
        directory / "model.safetensors",
        metadata={"format": "pt"},
    )
    _json(directory / "config.json", config_json)
    _json(directory / "preprocessor_config.json", pre_json)
    if tokenizer is not None and cfg.tokenizer.get("kind") == "hf-files":
        tokenizer.save(directory)  # the model's own Hugging Face tokenizer files
    if tokenizer is not None and cfg.tokenizer.get("kind") == "bpe":
        tokenizer.save(directory)
        _json(
            directory / "tokenizer_config.json",
            {
                "tokenizer_class": "CLIPTokenizer",
                "model_max_length": cfg.text.context_length,
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
                "do_lower_case": True,
                "errors": "replace",
            },
        )
    return directory


def export_openclip(model: CLIP, directory: str | Path, tokenizer: Any | None = None) -> Path:
    """`open_clip_model.safetensors` + `open_clip_config.json`, the layout OpenCLIP's hub loader reads."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config_json = openclip.openclip_json(model.config)
    save_safetensors(openai.native_to_openai(_fp_state(model, None)), directory / "open_clip_model.safetensors")
    _json(directory / "open_clip_config.json", config_json)
    return directory


def export(
    model: CLIP,
    directory: str | Path,
    fmt: str,
    tokenizer: Any | None = None,
    replace: bool = False,
    source: str | Path | None = None,
) -> Path:
    """Write `model` as a `fmt` checkpoint directory, all or nothing (`clipforge.files.atomic_directory`):
    a non-empty `directory` is refused unless `replace`, and so is one that is (inside) the `source`
    checkpoint the model was read from."""
    writers = {"native": save_native, "hf": export_hf, "openclip": export_openclip}
    if fmt not in writers:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {EXPORT_FORMATS}")
    with atomic_directory(directory, replace=replace, source=source) as tmp:
        writers[fmt](model, tmp, tokenizer)
    return canonical_path(directory)
