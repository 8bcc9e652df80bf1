"""Atomic file writes: a reader sees the old file or the new one, never a half-written one.

The one place where clipforge writes results, caches and checkpoints: every writer goes through
`atomic_path`, so a crash or a kill mid-write leaves no truncated file behind. (Also `canonical_path`,
the one path canonicalisation that never raises.)
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed over `path` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def save_npy_atomic(path: str | Path, array: np.ndarray) -> None:
    """`np.save` through `atomic_path` (the file name is kept exactly; no `.npy` is appended)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)


def canonical_path(path: str | Path) -> Path:
    """`Path.resolve()`, or the plain absolute path where that fails (a symbolic link loop raises
    RuntimeError before Python 3.13, a NUL byte ValueError); whoever opens the path reports the problem."""
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError, ValueError):
        return Path(os.path.abspath(path))
