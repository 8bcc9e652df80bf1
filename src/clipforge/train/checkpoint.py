"""Training checkpoints: atomic writes, keep-last-N, and everything needed to resume mid-epoch exactly."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..files import atomic_path, write_text_atomic

LATEST = "latest.json"


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states in a form `torch.load(weights_only=True)` accepts."""
    np_state = np.random.get_state()
    state = {
        "python": list(random.getstate()[1]) + [random.getstate()[2] or 0],
        "python_version": random.getstate()[0],
        "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured, so a resumed run draws the same numbers."""
    py = state["python"]
    random.setstate((state["python_version"], tuple(int(x) for x in py[:-1]), None))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_state(directory: Path, step: int, state: dict[str, Any], keep_last: int) -> Path:
    """Write `step_XXXXXXXX.pt` atomically, point `latest.json` at it, delete all but the last N."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"step_{step:08d}.pt"
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    write_text_atomic(directory / LATEST, json.dumps({"step": step, "path": path.name}) + "\n")
    for old in sorted(directory.glob("step_*.pt"))[:-keep_last]:
        old.unlink(missing_ok=True)
    return path


def find_resume(directory: Path) -> Path | None:
    """The newest complete checkpoint in a run directory (the one `latest.json` names), if any."""
    latest = directory / LATEST
    if latest.is_file():
        path = directory / json.loads(latest.read_text())["path"]
        if path.is_file():
            return path
    found = sorted(directory.glob("step_*.pt"))
    return found[-1] if found else None


def resolve_resume(resume: str | None, ckpt_dir: Path) -> Path | None:
    """The checkpoint to resume from: "auto" (newest in `ckpt_dir`, if any), None/"none", or a file or run dir."""
    if resume in (None, "", "none"):
        return None
    if resume == "auto":
        return find_resume(ckpt_dir)
    path: Path | None = Path(resume)
    if path.is_dir():
        path = find_resume(path / "checkpoints" if (path / "checkpoints").is_dir() else path)
    if path is None or not path.is_file():
        raise FileNotFoundError(f"no checkpoint to resume from at {resume}")
    return path


def load_training_state(path: Path) -> dict[str, Any]:
    """A checkpoint written by `save_training_state` (tensors and plain data only)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: cannot resume from this checkpoint ({type(exc).__name__}: {exc})") from exc


def fsync_dir(directory: Path) -> None:
    """Make the renames in `directory` durable (best effort; not every filesystem supports it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
