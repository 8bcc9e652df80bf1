"""Find out what a checkpoint is, read it once, and turn it into a native config + state dict.

Formats: a native directory; an OpenAI TorchScript archive or state dict; OpenCLIP files (bare,
training checkpoints, or a hub directory with `open_clip_config.json`); a Hugging Face `CLIPModel`
directory. Layout and architecture come from the weights and config files, never from file names.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import Activation, ModelConfig, get_config
from ..model import CLIP
from . import hf, openai
from .io import CheckpointError, read_tensor_file

NATIVE_FORMAT = "clipforge"
NATIVE_WEIGHTS = "model.safetensors"
_WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")


@dataclass
class Checkpoint:
    """A checkpoint read into memory: native config, native-key tensors and where it came from."""

    config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    source_format: str
    path: Path
    tokenizer_dir: Path | None = None


ConfigLike = ModelConfig | str | dict[str, Any] | Path | None


def resolve_config(config: ConfigLike) -> ModelConfig | None:
    """Accept a ModelConfig, a preset name, a dict or a JSON file path."""
    if config is None or isinstance(config, ModelConfig):
        return config
    if isinstance(config, dict):
        return ModelConfig.from_dict(config)
    path = Path(config)
    if path.suffix == ".json" or path.is_file():
        data = json.loads(path.read_text())
        return ModelConfig.from_dict(data.get("model", data))
    return get_config(str(config))


def read_checkpoint(path: str | Path, config: ConfigLike = None, activation: Activation | None = None) -> Checkpoint:
    """Read any supported checkpoint. `config` overrides inference; `activation` sets QuickGELU vs GELU
    where the files do not say (bare OpenAI-layout state dicts)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory")
    override = resolve_config(config)
    ckpt = _read_dir(path, activation) if path.is_dir() else _read_file(path, activation)
    if override is not None:
        ckpt.config = override
    elif activation is not None:
        ckpt.config = ckpt.config.replace(vision={"act": activation}, text={"act": activation})
    return ckpt


def _read_dir(path: Path, activation: Activation | None) -> Checkpoint:
    cfg_file = path / "config.json"
    if cfg_file.is_file():
        data = _read_json(cfg_file)
        if data.get("format") == NATIVE_FORMAT:
            sd, _ = read_tensor_file(path / NATIVE_WEIGHTS)
            return Checkpoint(ModelConfig.from_dict(data["model"]), sd, "native", path, _tokenizer_dir(path))
        if data.get("model_type") == "clip" or "CLIPModel" in data.get("architectures", []):
            pre = path / "preprocessor_config.json"
            cfg = hf.config_from_hf(data, _read_json(pre) if pre.is_file() else None)
            sd = _convert_hf(_read_weights(path, ("model.safetensors", "pytorch_model.bin")), path)
            return Checkpoint(cfg, sd, "hf", path, _tokenizer_dir(path))
    oc_file = path / "open_clip_config.json"
    if oc_file.is_file():
        cfg = openai.config_from_openclip_json(_read_json(oc_file))
        sd = _read_weights(path, ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"))
        return Checkpoint(cfg, _convert_openai(sd, path), "openclip", path, _tokenizer_dir(path))
    weights = sorted(p for p in path.iterdir() if p.suffix in _WEIGHT_SUFFIXES)
    if len(weights) == 1:
        return _read_file(weights[0], activation)
    raise CheckpointError(
        f"{path}: not a recognised checkpoint directory. Expected a clipforge directory (config.json with "
        f'"format": "clipforge" + {NATIVE_WEIGHTS}), a Hugging Face CLIPModel directory (config.json + '
        "model.safetensors or pytorch_model.bin), an OpenCLIP directory (open_clip_config.json + weights), "
        f"or exactly one weights file; found {[p.name for p in path.iterdir()][:10]}"
    )


def _read_file(path: Path, activation: Activation | None) -> Checkpoint:
    sd, kind = read_tensor_file(path)
    if openai.is_native_layout(sd):  # a bare clipforge state dict
        sd = openai.native_to_openai(sd)
    sibling = path.parent / "open_clip_config.json"
    if openai.is_openai_layout(sd):
        if sibling.is_file():
            cfg = openai.config_from_openclip_json(_read_json(sibling))
            fmt = "openclip"
        else:
            if activation is None:
                activation = "quick_gelu" if kind == "torchscript" else "gelu"
                if kind != "torchscript":
                    warnings.warn(
                        f"{path}: the weights do not record their activation; assuming GELU (OpenCLIP's default). "
                        "OpenAI weights and '-quickgelu' OpenCLIP models need activation='quick_gelu' "
                        "(--activation quick_gelu); a wrong choice silently lowers accuracy.",
                        stacklevel=3,
                    )
            cfg = openai.config_from_openai_state(sd, activation)
            fmt = "openai-torchscript" if kind == "torchscript" else "openai"
        return Checkpoint(cfg, _convert_openai(sd, path), fmt, path, _tokenizer_dir(path.parent))
    if hf.is_hf_layout(sd):
        cfg_file = path.parent / "config.json"
        native = _convert_hf(sd, path)
        if cfg_file.is_file():
            cfg = hf.config_from_hf(_read_json(cfg_file))
        else:
            cfg = openai.config_from_openai_state(openai.native_to_openai(native), activation or "quick_gelu")
        return Checkpoint(cfg, native, "hf", path, _tokenizer_dir(path.parent))
    raise CheckpointError(
        f"{path}: unrecognised weight layout ({len(sd)} tensors, e.g. {sorted(sd)[:5]}). Expected OpenAI/OpenCLIP "
        "keys (visual.conv1.weight, token_embedding.weight, ...) or Hugging Face CLIPModel keys "
        "(vision_model.embeddings.patch_embedding.weight, ...)."
    )


def _convert_openai(sd: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    try:
        return openai.openai_to_native(sd)
    except KeyError as exc:
        raise CheckpointError(f"{path}: OpenAI-layout weights lack {exc}") from exc


def _convert_hf(sd: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    try:
        return hf.hf_to_native(sd)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc


def _read_weights(directory: Path, names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    for name in names:
        if (directory / name).is_file():
            return read_tensor_file(directory / name)[0]
        index = directory / f"{name}.index.json"
        if index.is_file():
            shards = sorted(set(_read_json(index)["weight_map"].values()))
            out: dict[str, torch.Tensor] = {}
            for shard in shards:
                out.update(read_tensor_file(directory / shard)[0])
            return out
    raise CheckpointError(f"{directory}: no weights file; expected one of {list(names)}")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def _tokenizer_dir(directory: Path) -> Path | None:
    """A directory holding tokenizer files next to the weights, if any."""
    names = ("vocab.json", "bpe_simple_vocab_16e6.txt.gz", "tokenizer_config.json")
    return directory if any((directory / n).is_file() for n in names) else None


def build_model(ckpt: Checkpoint) -> CLIP:
    """Instantiate the model and load the weights strictly, explaining any mismatch."""
    model = CLIP(ckpt.config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(ckpt.state_dict))
    unexpected = sorted(set(ckpt.state_dict) - set(expected))
    shapes = [
        f"{k}: checkpoint {tuple(ckpt.state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in ckpt.state_dict and ckpt.state_dict[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {missing[:8]}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {unexpected[:8]}")
        if shapes:
            parts.append(f"shape mismatches ({len(shapes)}): {shapes[:4]}")
        raise CheckpointError(
            f"{ckpt.path}: weights ({ckpt.source_format}) do not fit the model config: "
            + "; ".join(parts)
            + ". Pass config=... (a preset name such as 'ViT-B-32', a ModelConfig, or a config JSON) if the "
            "architecture was inferred wrongly."
        )
    dtype = expected["logit_scale"].dtype
    model.load_state_dict({k: v.to(dtype) if v.is_floating_point() else v for k, v in ckpt.state_dict.items()})
    return model.eval()
