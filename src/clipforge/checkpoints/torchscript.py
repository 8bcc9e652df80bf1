"""Read the tensors of a TorchScript archive without running any of its code.

OpenAI released CLIP as TorchScript archives. `torch.jit.load` would execute the archived program;
here the archive's `data.pkl` is unpickled with a whitelist: module objects become inert records,
tensors are rebuilt from the raw storage files, and any other global is refused.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class ScriptRecord:
    """An inert stand-in for a TorchScript object: only its attribute dictionary is kept."""

    def __init__(self, *args: Any) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


def is_torchscript_archive(path: str | Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in zf.namelist())


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, zf: zipfile.ZipFile, prefix: str, source: str) -> None:

        super().__init__(io.BytesIO(data))
        self._zf, self._prefix, self._source = zf, prefix, source
        self._storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("__torch__"):
            return type(name, (ScriptRecord,), {})
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return lambda data, requires_grad, hooks: data
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        raise pickle.UnpicklingError(
            f"{self._source}: TorchScript archive refers to {module}.{name}, which clipforge does not load "
            "(only module records and tensors are read; no archived code is run)"
        )

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"{self._source}: unexpected persistent id {pid!r}")
        _, dtype, key, _location, numel = pid
        if key not in self._storages:
            raw = bytearray(self._zf.read(f"{self._prefix}/data/{key}"))
            flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
            self._storages[key] = flat[:numel]
        return self._storages[key]


def _rebuild_tensor(flat: torch.Tensor, offset: int, size: tuple, stride: tuple, *_: Any) -> torch.Tensor:
    return torch.as_strided(flat, size, stride, offset)


def read_torchscript_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensor attributes of the archived module tree, keyed by dotted attribute path."""
    source = str(path)
    with zipfile.ZipFile(path) as zf:
        names = [n for n in zf.namelist() if n.endswith("/data.pkl")]
        if not names:
            raise ValueError(f"{source}: not a TorchScript archive (no data.pkl)")
        name = min(names, key=len)
        prefix = name[: -len("/data.pkl")]
        root = _Unpickler(zf.read(name), zf, prefix, source).load()
    out: dict[str, torch.Tensor] = {}
    _collect(root, "", out)
    return {k: v.clone() for k, v in out.items()}


def _collect(obj: Any, prefix: str, out: dict[str, torch.Tensor]) -> None:
    state = obj.state if isinstance(obj, ScriptRecord) else obj
    if not isinstance(state, dict):
        return
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            out[prefix + key] = value
        elif isinstance(value, (ScriptRecord, dict)):
            _collect(value, f"{prefix}{key}.", out)
