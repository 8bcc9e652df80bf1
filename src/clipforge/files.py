"""Atomic file writes: a reader sees the old file or the new one, never a half-written one.

The one place where clipforge writes results, caches and checkpoints: every writer goes through
`atomic_path`, so a crash or a kill mid-write leaves no truncated file behind. (Also `canonical_path`,
the one path canonicalisation that never raises.) Whole directories (a converted checkpoint) go through
`atomic_directory`.
"""

from __future__ import annotations

import json
import os
import shutil
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


def check_destination(path: str | Path, replace: bool = False, source: str | Path | None = None) -> Path:
    """The canonical `path` if `atomic_directory` may write it (see there); a ValueError saying why not."""
    path = canonical_path(path)
    if source is not None:
        src = canonical_path(source)
        if path == src or src in path.parents or path in src.parents:
            raise ValueError(f"{path}: the destination may not be the source, inside it or around it ({src})")
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not replace:
        raise ValueError(f"{path} is not empty: choose a new or empty directory, or replace it (--force)")
    return path


@contextmanager
def atomic_directory(path: str | Path, replace: bool = False, source: str | Path | None = None) -> Iterator[Path]:
    """Yield an empty temporary directory beside `path`; on success it takes `path`'s place.

    A non-empty `path` is refused unless `replace` (then the old contents are removed only after the new
    directory is complete), and so is a `path` that is `source`, lies inside it or holds it: a writer never
    writes into what it reads. On failure nothing is left behind, not even a parent folder made for it.
    """
    path = check_destination(path, replace, source)
    made = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old)  # an (empty) directory is replaced by a rename
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for parent in made:  # innermost first
            if parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
        raise


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
