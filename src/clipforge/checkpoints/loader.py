"""Find out what a checkpoint is, read it once, and turn it into a native config + state dict.

Formats: a native directory; an OpenAI TorchScript archive or state dict; OpenCLIP files (bare,
training checkpoints, or a hub directory with `open_clip_config.json`); a Hugging Face `CLIPModel`
directory. Layout and architecture come from the weights and config files, never from file names.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import torch

from ..config import Activation, ModelConfig, get_config
from ..model import CLIP
from . import hf, openai, openclip
from .io import CheckpointError, read_safetensors_shapes, read_tensor_file

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
        data = _read_json(path)
        return _model_config(data.get("model", data), path)
    return get_config(str(config))


def _model_config(data: Any, source: Path) -> ModelConfig:
    """A `ModelConfig` from a config file's dict; anything malformed is a `CheckpointError` naming the file."""
    if not isinstance(data, dict):
        raise CheckpointError(f"{source}: the model config must be a JSON object, got {type(data).__name__}")
    try:
        return ModelConfig.from_dict(data)
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{source}: invalid model config ({exc})") from None


def read_checkpoint(path: str | Path, config: ConfigLike = None, activation: Activation | None = None) -> Checkpoint:
    """Read any supported checkpoint. `config` overrides inference; `activation` sets QuickGELU vs GELU
    where the files do not say (bare OpenAI-layout state dicts). The weights are checked against the
    config (keys, shapes, dtypes; no model is allocated for that) and for NaN/infinite values."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory")
    override = resolve_config(config)
    ckpt = _read_dir(path, activation, override) if path.is_dir() else _read_file(path, activation, override)
    if override is not None:
        ckpt.config = override
    elif activation is not None:
        ckpt.config = ckpt.config.replace(vision={"act": activation}, text={"act": activation})
    check_fits(ckpt.config, ckpt.state_dict, ckpt.path, ckpt.source_format)
    _check_values(ckpt)
    return ckpt


def _check_values(ckpt: Checkpoint) -> None:
    """Refuse weights holding NaN or infinities (no trained CLIP does; they would poison every feature)."""
    bad = [k for k, v in ckpt.state_dict.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{ckpt.path}: {len(bad)} tensor(s) hold NaN or infinite values, e.g. {bad[:4]}")


def _read_dir(path: Path, activation: Activation | None, override: ModelConfig | None) -> Checkpoint:
    cfg_file = path / "config.json"
    if cfg_file.is_file():
        data = _read_json(cfg_file)
        if data.get("format") == NATIVE_FORMAT:
            if "model" not in data:
                raise CheckpointError(f"{cfg_file}: a clipforge config.json must hold the model config under 'model'")
            cfg = _model_config(data["model"], cfg_file)
            files = _weight_files(path, (NATIVE_WEIGHTS,))
            _precheck(cfg, files, lambda meta: meta, path, "native")
            return Checkpoint(cfg, _read_files(files), "native", path, _tokenizer_dir(path))
        architectures = data.get("architectures")
        clip = data.get("model_type") == "clip" or (isinstance(architectures, list) and "CLIPModel" in architectures)
        if clip or hf.is_siglip_config(data):
            pre = path / "preprocessor_config.json"
            cfg = hf.config_from_hf(data, _read_json(pre) if pre.is_file() else None, source=cfg_file)
            files = _weight_files(path, ("model.safetensors", "pytorch_model.bin"))
            _precheck(cfg, files, lambda meta: _convert_hf(meta, path), path, "hf")
            sd = _convert_hf(_read_files(files), path)
            return Checkpoint(cfg, sd, "hf", path, _tokenizer_dir(path))
    oc_file = path / "open_clip_config.json"
    if oc_file.is_file():
        data = _read_json(oc_file)
        cfg = _openclip_config(data, oc_file)
        sd = _read_files(_weight_files(path, ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")))
        return Checkpoint(cfg, _convert_openclip(sd, data, path), "openclip", path, _tokenizer_dir(path))
    weights = sorted(p for p in path.iterdir() if p.suffix in _WEIGHT_SUFFIXES)
    if len(weights) == 1:
        return _read_file(weights[0], activation, override)
    raise CheckpointError(
        f"{path}: not a recognised checkpoint directory. Expected a clipforge directory (config.json with "
        f'"format": "clipforge" + {NATIVE_WEIGHTS}), a Hugging Face CLIPModel directory (config.json + '
        "model.safetensors or pytorch_model.bin), an OpenCLIP directory (open_clip_config.json + weights), "
        f"or exactly one weights file; found {[p.name for p in path.iterdir()][:10]}"
    )


def _read_file(path: Path, activation: Activation | None, override: ModelConfig | None = None) -> Checkpoint:
    """One weights file; `override` replaces every inference (and its warnings) from the file's shapes."""
    sd, kind = read_tensor_file(path)
    if openai.is_native_layout(sd):  # a bare clipforge state dict
        sd = openai.native_to_openai(sd)
    sibling = path.parent / "open_clip_config.json"
    if openai.is_openai_layout(sd):
        if sibling.is_file() and override is None:
            data = _read_json(sibling)
            cfg = _openclip_config(data, sibling)
            return Checkpoint(cfg, _convert_openclip(sd, data, path), "openclip", path, _tokenizer_dir(path.parent))
        fmt = "openai-torchscript" if kind == "torchscript" else "openai"
        if override is not None:
            return Checkpoint(override, _convert_openai(sd, path), fmt, path, _tokenizer_dir(path.parent))
        if activation is None:
            activation = "quick_gelu" if kind == "torchscript" else "gelu"
            if kind != "torchscript":
                warnings.warn(
                    f"{path}: the weights do not record their activation; assuming GELU (OpenCLIP's default). "
                    "OpenAI weights and '-quickgelu' OpenCLIP models need activation='quick_gelu' "
                    "(--activation quick_gelu); a wrong choice silently lowers accuracy.",
                    stacklevel=3,
                )
        cfg = _inferred_config(sd, activation, path)
        return Checkpoint(cfg, _convert_openai(sd, path), fmt, path, _tokenizer_dir(path.parent))
    if hf.is_hf_layout(sd):
        cfg_file = path.parent / "config.json"
        native = _convert_hf(sd, path)
        if override is not None:
            cfg = override
        elif cfg_file.is_file():
            cfg = hf.config_from_hf(_read_json(cfg_file), source=cfg_file)
        elif "vision_model.head.probe" in sd:
            raise CheckpointError(
                f"{path}: SigLIP weights without their config.json beside them; put the model's config.json "
                "(and preprocessor_config.json) in the same folder"
            )
        else:
            cfg = _inferred_config(openai.native_to_openai(native), activation or "quick_gelu", path)
        return Checkpoint(cfg, native, "hf", path, _tokenizer_dir(path.parent))
    raise CheckpointError(
        f"{path}: unrecognised weight layout ({len(sd)} tensors, e.g. {sorted(sd)[:5]}). Expected OpenAI/OpenCLIP "
        "keys (visual.conv1.weight, token_embedding.weight, ...) or Hugging Face CLIPModel keys "
        "(vision_model.embeddings.patch_embedding.weight, ...)."
    )


def _openclip_config(data: dict[str, Any], source: Path) -> ModelConfig:
    try:
        return openclip.config_from_openclip_json(data)
    except CheckpointError as exc:
        raise CheckpointError(f"{source}: {exc}") from None
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise CheckpointError(f"{source}: invalid OpenCLIP model config ({type(exc).__name__}: {exc})") from None


def _convert_openclip(sd: dict[str, torch.Tensor], data: dict[str, Any], path: Path) -> dict[str, torch.Tensor]:
    """OpenCLIP weights to native keys; a config with LayerScale needs its `ls_*.gamma` weights."""
    if openclip.uses_layer_scale(data) and not any(".ls_1.gamma" in k for k in sd):
        raise CheckpointError(
            f"{path}: open_clip_config.json sets ls_init_value (LayerScale) but the weights hold no "
            "ls_1.gamma / ls_2.gamma"
        )
    return _convert_openai(sd, path)


def _inferred_config(sd: dict[str, torch.Tensor], activation: Activation, path: Path) -> ModelConfig:
    """The architecture of bare OpenAI-layout weights, warning where a head count is a guess."""
    try:
        cfg, guessed = openai.config_from_openai_state(sd, activation)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    if guessed:
        towers = " and ".join(f"{h.tower} tower {h.heads}" for h in guessed)
        warnings.warn(
            f"{path}: the weights match no known OpenAI/OpenCLIP family, so head counts are guessed as width // 64 "
            f"({towers}); a wrong guess silently changes every feature. If the model has other head counts, put "
            "its open_clip_config.json beside the weights or pass config=... (e.g. a config JSON with "
            "vision.heads / text.heads).",
            stacklevel=4,
        )
    return cfg


def _convert_openai(sd: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    try:
        return openai.openai_to_native(sd)
    except KeyError as exc:
        raise CheckpointError(f"{path}: OpenAI-layout weights lack {exc}") from exc
    except CheckpointError as exc:  # e.g. a LayerScale gamma without the linear it scales
        raise CheckpointError(f"{path}: {exc}") from None


def _convert_hf(sd: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    try:
        return hf.hf_to_native(sd)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc


def _weight_files(directory: Path, names: tuple[str, ...]) -> list[Path]:
    """The weights files of a checkpoint directory: the first of `names` present, or the shards its
    `NAME.index.json` lists (each a plain file name inside `directory`; anything else is refused)."""
    for name in names:
        if (directory / name).is_file():
            return [directory / name]
        index = directory / f"{name}.index.json"
        if index.is_file():
            weight_map = _read_json(index).get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise CheckpointError(f"{index}: expected a non-empty 'weight_map' object")
            shards = []
            for shard in sorted(set(map(str, weight_map.values()))):
                if Path(shard).name != shard or shard in (".", "..") or "\\" in shard:
                    raise CheckpointError(
                        f"{index}: weight_map names {shard[:200]!r}; shards must be files in {directory}"
                    )
                shards.append(directory / shard)
            return shards
    raise CheckpointError(f"{directory}: no weights file; expected one of {list(names)}")


def _read_files(files: list[Path]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for file in files:
        out.update(read_tensor_file(file)[0])
    return out


def _precheck(cfg: ModelConfig, files: list[Path], convert, path: Path, source_format: str) -> None:
    """Check `cfg` against the shapes in the safetensors headers of `files`, before reading any weights
    (pickled weights have no header: they are checked after reading, before the model is built)."""
    if not all(f.suffix == ".safetensors" and f.is_file() for f in files):
        return
    meta: dict[str, torch.Tensor] = {}
    for file in files:
        meta.update(read_safetensors_shapes(file))
    check_fits(cfg, convert(meta), path, source_format)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # JSONDecodeError, UnicodeDecodeError, 4300+ digit integers
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise CheckpointError(f"{path}: not valid JSON (nested too deeply)") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def _tokenizer_dir(directory: Path) -> Path | None:
    """A directory holding tokenizer files next to the weights, if any."""
    names = ("vocab.json", "bpe_simple_vocab_16e6.txt.gz", "tokenizer_config.json")
    return directory if any((directory / n).is_file() for n in names) else None


_BLOCK_INDEX = {
    "text": re.compile(r"^text\.transformer\.resblocks\.(\d+)\."),
    "vit": re.compile(r"^visual\.transformer\.resblocks\.(\d+)\."),
    **{f"stage{i}": re.compile(rf"^visual\.layer{i}\.(\d+)\.") for i in range(1, 5)},
}


def _depths(keys) -> dict[str, int]:
    """Blocks per tower (and ResNet stage) present in native-layout keys: distinct block indices."""
    found: dict[str, set[int]] = {name: set() for name in _BLOCK_INDEX}
    for key in keys:
        for name, pattern in _BLOCK_INDEX.items():
            if m := pattern.match(key):
                found[name].add(int(m.group(1)))
    return {name: len(indices) for name, indices in found.items()}


def check_fits(config: ModelConfig, state_dict: dict[str, torch.Tensor], path: Path, source_format: str) -> None:
    """Refuse a config the weights do not fit, without allocating the model the config describes.

    First the depths (cheap: a config claiming 200,000 layers is refused before a single module is
    made), then every shape and dtype against a skeleton of the model on the `meta` device (no memory).
    Works on real and on `meta` tensors (shapes read from safetensors headers).
    """
    depths = _depths(state_dict)
    v, t = config.vision, config.text
    claimed = {"text": t.layers}
    if v.kind == "vit":
        claimed["vit"] = int(v.layers)  # type: ignore[arg-type]
    else:
        claimed.update({f"stage{i + 1}": n for i, n in enumerate(v.layers)})  # type: ignore[arg-type]
    wrong = [f"{name}: config {n}, weights {depths[name]}" for name, n in claimed.items() if depths[name] != n]
    parts = [f"block counts differ ({'; '.join(wrong)})"] if wrong else []
    if sum(claimed.values()) > 4 * sum(depths.values()) + 256:  # absurd: not even a skeleton is built
        _refuse(path, source_format, parts)
    try:
        with torch.device("meta"):
            expected = CLIP(config).state_dict()
    except (ValueError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: the model config cannot be built ({type(exc).__name__}: {exc})") from None
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    shapes = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    dtypes = [
        f"{k}: {state_dict[k].dtype} for a {v.dtype} parameter"
        for k, v in expected.items()
        if k in state_dict and v.is_floating_point() and not state_dict[k].is_floating_point()
    ]
    if missing:
        parts.append(f"missing keys ({len(missing)}): {missing[:8]}")
    if unexpected:
        parts.append(f"unexpected keys ({len(unexpected)}): {unexpected[:8]}")
    if shapes:
        parts.append(f"shape mismatches ({len(shapes)}): {shapes[:4]}")
    if dtypes:
        parts.append(f"non-float tensors ({len(dtypes)}): {dtypes[:4]}")
    if parts:
        _refuse(path, source_format, parts)


def _refuse(path: Path, source_format: str, parts: list[str]) -> NoReturn:
    raise CheckpointError(
        f"{path}: weights ({source_format}) do not fit the model config: "
        + "; ".join(parts)
        + ". Pass config=... (a preset name such as 'ViT-B-32', a ModelConfig, or a config JSON) if the "
        "architecture was inferred wrongly."
    )


def build_model(ckpt: Checkpoint) -> CLIP:
    """Instantiate the model and load the weights strictly, explaining any mismatch (checked before
    the model is allocated, so a config that lies about its size costs nothing)."""
    check_fits(ckpt.config, ckpt.state_dict, ckpt.path, ckpt.source_format)
    model = CLIP(ckpt.config)
    dtype = model.logit_scale.dtype
    model.load_state_dict({k: v.to(dtype) if v.is_floating_point() else v for k, v in ckpt.state_dict.items()})
    return model.eval()
