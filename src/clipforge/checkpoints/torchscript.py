"""Read the tensors of a TorchScript archive without running any of its code.

OpenAI released CLIP as TorchScript archives. `torch.jit.load` would execute the archived program;
here the archive's `data.pkl` is unpickled with a whitelist: module objects become inert records,
tensors are rebuilt from the raw storage files, and any other global is refused.
"""

from __future__ import annotations

import collections
import io
import math
import os
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


#: Decompressed bytes an archive may make of its members, as a multiple of its size on disk (torch
#: stores members uncompressed, so a real archive needs 1x; a zip bomb needs thousands).
MAX_EXPANSION = 4


class ScriptRecord:
    """An inert stand-in for a TorchScript object: only its attribute dictionary is kept."""

    def __init__(self, *args: Any) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


def is_torchscript_archive(path: str | Path) -> bool:
    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("/constants.pkl") or "/code/" in n for n in zf.namelist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):  # looks like a zip, is not one
        return False


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, zf: zipfile.ZipFile, prefix: str, source: str, budget: _Budget) -> None:

        super().__init__(io.BytesIO(data))
        self._zf, self._prefix, self._source = zf, prefix, source
        self._storages: dict[str, torch.Tensor] = {}
        self._budget = budget

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
        if len(pid) != 5:
            raise pickle.UnpicklingError(f"{self._source}: malformed storage record {pid!r}"[:300])
        _, dtype, key, _location, numel = pid
        if not isinstance(dtype, torch.dtype) or dtype not in _STORAGE_DTYPES.values():
            raise pickle.UnpicklingError(f"{self._source}: storage {key!r} has an unsupported dtype {dtype!r}"[:300])
        if not isinstance(numel, int) or isinstance(numel, bool) or numel < 0:
            raise pickle.UnpicklingError(f"{self._source}: storage {key!r} has an invalid size {numel!r}"[:300])
        if key not in self._storages:
            raw = bytearray(self._budget.read(self._zf, f"{self._prefix}/data/{key}"))
            if len(raw) % dtype.itemsize or len(raw) // dtype.itemsize < numel:
                raise pickle.UnpicklingError(
                    f"{self._source}: storage {key!r} holds {len(raw)} bytes, not {numel} x {dtype}"
                )
            flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
            self._storages[key] = flat[:numel]
        return self._storages[key]



class _Budget:
    """Bytes an archive's members may still decompress to; charged before a member is inflated."""

    def __init__(self, source: str, archive_size: int) -> None:
        self.source, self.left = source, MAX_EXPANSION * archive_size + 2**20

    def read(self, zf: zipfile.ZipFile, name: str) -> bytes:
        try:
            info = zf.getinfo(name)
        except KeyError:
            raise pickle.UnpicklingError(f"{self.source}: the archive has no member {name!r}") from None
        if info.file_size > self.left:
            raise pickle.UnpicklingError(
                f"{self.source}: member {name} would decompress to {info.file_size} bytes, more than "
                f"{MAX_EXPANSION}x the archive's size on disk allows (a zip bomb?)"
            )
        self.left -= info.file_size
        return zf.read(info)


def _rebuild_tensor(flat: torch.Tensor, offset: int, size: tuple, stride: tuple, *_: Any) -> torch.Tensor:
    numbers = [offset, *size, *stride]
    if not isinstance(flat, torch.Tensor) or not all(isinstance(n, int) and not isinstance(n, bool) for n in numbers):
        raise pickle.UnpicklingError("a tensor record is malformed (storage, offset, sizes or strides)")
    if len(size) != len(stride) or min(numbers) < 0:
        raise pickle.UnpicklingError(f"a tensor record has invalid sizes {size} / strides {stride} / offset {offset}")
    if math.prod(size) and offset + sum((n - 1) * st for n, st in zip(size, stride)) >= flat.numel():
        raise pickle.UnpicklingError(
            f"a tensor of sizes {size}, strides {stride} at offset {offset} reaches past its storage of "
            f"{flat.numel()} elements"
        )
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
        budget = _Budget(source, os.path.getsize(path))
        root = _Unpickler(budget.read(zf, name), zf, prefix, source, budget).load()
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
