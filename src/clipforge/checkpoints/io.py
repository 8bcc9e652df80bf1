"""Safe tensor file I/O: read weights without executing code, write them atomically."""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import struct
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..files import atomic_path
from .torchscript import is_torchscript_archive, read_torchscript_tensors


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or understood; the message names the file and what was expected."""


_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module")
_KEY_PREFIXES = ("module.", "_orig_mod.", "model.")


def read_tensor_file(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """Tensors of one weights file and the kind of file it was ('safetensors', 'torchscript', 'pickle').

    Pickles are read with `weights_only=True`; a pickle that needs arbitrary Python objects is refused.
    Training checkpoints (`{"state_dict": ..., "optimizer": ...}`) and `module.`/`_orig_mod.` prefixes
    are unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    with open(path, "rb") as fh:
        head = fh.read(16)
    if path.suffix == ".safetensors" or (len(head) >= 9 and head[8:9] == b"{"):
        try:
            return load_file(str(path)), "safetensors"
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    if is_torchscript_archive(path):
        try:
            return read_torchscript_tensors(path), "torchscript"
        except MemoryError:
            raise
        except Exception as exc:  # an untrusted archive: every malformation is the file's fault, not ours
            raise CheckpointError(f"{path}: unreadable TorchScript archive ({type(exc).__name__}: {exc})") from None
    if not (zipfile.is_zipfile(path) or head[:1] == b"\x80"):
        raise CheckpointError(f"{path}: not a readable checkpoint (neither safetensors, a zip archive nor a pickle)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused to unpickle: the file needs Python objects beyond tensors and containers "
            f"({_unpickler_reason(exc)}). clipforge never runs code from a checkpoint; "
            "if you trust the file, re-save its state_dict with torch.save or safetensors."
        ) from exc
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from exc
    return unwrap_state_dict(obj, str(path)), "pickle"


_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
_MAX_HEADER_BYTES = 100 * 2**20  # safetensors' own limit


def read_safetensors_shapes(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file as `meta` tensors (dtype and shape, no data), from its header only.

    What a checkpoint holds can then be checked against a config before a byte of weights is read or a
    parameter allocated. The header is validated (size, offsets within the file, byte counts that match
    the shapes); anything inconsistent is a `CheckpointError` naming the file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            raw = fh.read(8)
            if len(raw) < 8:
                raise CheckpointError(f"{path}: not a readable safetensors file (shorter than its header)")
            (length,) = struct.unpack("<Q", raw)
            if length > min(size - 8, _MAX_HEADER_BYTES):
                raise CheckpointError(f"{path}: not a readable safetensors file (header of {length} bytes)")
            header = json.loads(fh.read(length))
    except (OSError, ValueError, RecursionError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"{path}: not a readable safetensors file ({type(exc).__name__}: {exc})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a readable safetensors file (the header is not an object)")
    data_bytes = size - 8 - length
    out: dict[str, torch.Tensor] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = _SAFETENSORS_DTYPES.get(entry["dtype"], torch.uint8)
            shape = [int(d) for d in entry["shape"]]
            start, end = (int(x) for x in entry["data_offsets"])
            if any(d < 0 for d in shape) or not 0 <= start <= end <= data_bytes:
                raise ValueError("out of range")
            if entry["dtype"] in _SAFETENSORS_DTYPES and math.prod(shape) * dtype.itemsize != end - start:
                raise ValueError(f"{end - start} bytes for shape {shape}")
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: tensor {str(name)[:80]!r} has an invalid header entry ({exc})") from None
        out[name] = torch.empty(shape, dtype=dtype, device="meta")
    return out


def _unpickler_reason(exc: Exception) -> str:
    """The informative part of torch's weights-only error: which global it refused (torch words it
    differently across versions: "Unsupported global: GLOBAL x.y ...", "unsupported GLOBAL x.y whose
    module x is blocked", "WeightsUnpickler error: ...")."""
    text = str(exc)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return f"it refers to the global {found.group(1)}, which is not allowed"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        if line.startswith("WeightsUnpickler error"):
            return (line.split(":", 1)[1].strip() or (lines[i + 1] if i + 1 < len(lines) else "")).rstrip(".")
    return lines[0] if lines else repr(exc)


def unwrap_state_dict(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """The tensor dictionary inside a training checkpoint, with wrapper prefixes removed."""
    while isinstance(obj, dict) and not _is_tensor_dict(obj):
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            raise CheckpointError(
                f"{source}: found a dict with keys {sorted(map(str, obj))[:10]} but no tensors; "
                f"expected a state dict or one wrapped under {_WRAPPER_KEYS}"
            )
        obj = inner
    if not isinstance(obj, dict):
        raise CheckpointError(f"{source}: expected a state dict (str -> tensor), got {type(obj).__name__}")
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    for prefix in _KEY_PREFIXES:
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


def _is_tensor_dict(obj: dict) -> bool:
    return bool(obj) and sum(isinstance(v, torch.Tensor) for v in obj.values()) >= max(1, len(obj) // 2)


def save_safetensors(
    tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None
) -> None:
    """Write tensors as safetensors atomically (contiguous, unshared copies)."""
    seen: set[int] = set()
    clean = {}
    for key, value in tensors.items():
        value = value.detach().contiguous()
        ptr = value.untyped_storage().data_ptr()
        clean[key] = value.clone() if ptr in seen else value  # safetensors refuses shared storage
        seen.add(ptr)
    with atomic_path(path) as tmp:
        save_file(clean, str(tmp), metadata=metadata)
