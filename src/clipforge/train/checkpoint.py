"""Training checkpoints: atomic writes, keep-last-N, and everything needed to resume mid-epoch exactly.

Each `step_XXXXXXXX.pt` has a `step_XXXXXXXX.pt.sha256` beside it. Resuming verifies it and, when
the newest checkpoint is damaged (bytes overwritten, truncated), falls back to the newest intact one
and says which file it refused and why.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from ..files import atomic_path, write_text_atomic

LATEST = "latest.json"


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states in a form `torch.load(weights_only=True)` accepts."""
    np_state = cast(tuple[Any, ...], np.random.get_state())  # the legacy tuple (the dict form is opt-in)
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


CHECKSUM_SUFFIX = ".sha256"


def checksum_path(path: Path) -> Path:
    """Where the SHA-256 of a checkpoint is recorded: `step_XXXXXXXX.pt.sha256` (`sha256sum -c` reads it)."""
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_training_state(directory: Path, step: int, state: dict[str, Any], keep_last: int) -> Path:
    """Write `step_XXXXXXXX.pt` atomically with its checksum, point `latest.json` at it, keep the last N.

    The checksum file is written before the checkpoint is renamed into place, so every checkpoint
    this writes has one; a kill in between leaves only a checksum without a checkpoint (ignored).
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"step_{step:08d}.pt"
    with atomic_path(path) as tmp:
        try:
            torch.save(state, tmp)
        except (OSError, RuntimeError) as exc:  # torch reports a full disk as "enforce fail at inline_container"
            raise _write_error(path, exc) from exc
        write_text_atomic(checksum_path(path), f"{sha256_of(tmp)}  {path.name}\n")
    write_text_atomic(directory / LATEST, json.dumps({"step": step, "path": path.name}) + "\n")
    for old in sorted(directory.glob("step_*.pt"))[:-keep_last]:
        old.unlink(missing_ok=True)
        checksum_path(old).unlink(missing_ok=True)
    for orphan in directory.glob(f"step_*.pt{CHECKSUM_SUFFIX}"):
        if not orphan.with_suffix("").exists():
            orphan.unlink(missing_ok=True)
    return path


def _write_error(path: Path, exc: BaseException) -> OSError:
    """A checkpoint write failure as an OSError that says where, and whether the disk is full."""
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = -1
    full = getattr(exc, "errno", None) == errno.ENOSPC or "No space left" in str(exc) or 0 <= free < 64 * 2**20
    if full:
        return OSError(errno.ENOSPC, f"no space left on the device while writing checkpoint {path} "
                       f"({free} bytes free in {path.parent}); free some space and re-run to resume")
    return OSError(getattr(exc, "errno", None) or errno.EIO,
                   f"writing checkpoint {path} failed ({type(exc).__name__}: {exc}; {free} bytes free)")


def verify_checkpoint(path: Path) -> str | None:
    """Why the checkpoint at `path` cannot be trusted (missing, empty, checksum mismatch), or None.

    A checkpoint without a recorded checksum (written by an older version) is not refused here; the
    loader still catches a truncated one.
    """
    if not path.is_file():
        return "missing"
    if path.stat().st_size == 0:
        return "empty (0 bytes)"
    record = checksum_path(path)
    if not record.is_file():
        return None
    try:
        expected = record.read_text(encoding="utf-8").split()[0].lower()
    except (OSError, UnicodeDecodeError, IndexError):
        return f"its checksum file {record.name} is unreadable"
    actual = sha256_of(path)
    if actual != expected:
        return f"checksum mismatch: {record.name} records sha256 {expected[:12]}..., the file has {actual[:12]}..."
    return None


def _candidates(directory: Path, notes: list[str]) -> list[Path]:
    """Checkpoints of a run directory, newest first (the one `latest.json` names leads)."""
    found = sorted(directory.glob("step_*.pt"), reverse=True)
    latest = directory / LATEST
    if latest.is_file():
        try:
            named = directory / Path(json.loads(latest.read_text(encoding="utf-8"))["path"]).name
        except (OSError, ValueError, KeyError, TypeError) as exc:
            notes.append(f"{latest} is unreadable ({type(exc).__name__}: {exc}); looking at the checkpoint files")
        else:
            if named in found:
                found.remove(named)
                found.insert(0, named)
    return found


def find_resume(directory: Path) -> Path | None:
    """The newest intact checkpoint of a run directory (`latest.json`'s first, checksums verified), if any."""
    return next((p for p in _candidates(directory, []) if verify_checkpoint(p) is None), None)


def resume_candidates(resume: str | None, ckpt_dir: Path, notes: list[str] | None = None) -> list[Path]:
    """The checkpoints to try, best first: none for None/"none" (or "auto" in a fresh run), the newest
    first for "auto" or a run directory, exactly the one named for a file."""
    notes = [] if notes is None else notes
    if resume in (None, "", "none"):
        return []
    if resume == "auto":
        return _candidates(ckpt_dir, notes) if ckpt_dir.is_dir() else []
    path = Path(resume)
    if path.is_dir():
        found = _candidates(path / "checkpoints" if (path / "checkpoints").is_dir() else path, notes)
        if not found:
            raise FileNotFoundError(f"no checkpoint to resume from at {resume}")
        return found
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint to resume from at {resume}")
    return [path]


def load_training_state(path: Path) -> dict[str, Any]:
    """A checkpoint written by `save_training_state` (tensors and plain data only), checksum verified."""
    problem = verify_checkpoint(path)
    if problem is not None:
        raise ValueError(f"{path}: cannot resume from this checkpoint ({problem})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: cannot resume from this checkpoint ({type(exc).__name__}: {exc})") from exc


def load_resume(resume: str | None, ckpt_dir: Path) -> tuple[Path | None, dict[str, Any] | None, list[str]]:
    """(path, state, notes) of the newest intact checkpoint to resume from, or (None, None, notes).

    Each candidate is verified (checksum) and loaded; a corrupt or truncated one is passed over for the
    next older one, and `notes` say which file was refused and why, and which one is used instead.
    A file named explicitly is used or refused, never replaced. When every candidate is refused the
    error names each of them.
    """
    notes: list[str] = []
    candidates = resume_candidates(resume, ckpt_dir, notes)
    explicit = resume not in (None, "", "none", "auto") and Path(str(resume)).is_file()
    refused: list[str] = []
    for path in candidates:
        try:
            state = load_training_state(path)
        except ValueError as exc:
            if explicit:
                raise
            refused.append(str(exc))
            continue
        if refused:
            notes += [f"passing over a damaged checkpoint: {reason}" for reason in refused]
            notes.append(f"resuming from the newest intact checkpoint instead: {path}")
        return path, state, notes
    if refused:
        raise ValueError("no intact checkpoint to resume from:\n  " + "\n  ".join(refused)
                         + "\n(start afresh with --resume none, or into a new --out-dir)")
    return None, None, notes


def remove_checkpoints(directory: Path) -> int:
    """Delete a run directory's checkpoints, their checksums and `latest.json` (a run started afresh in it:
    the old, higher step numbers would otherwise outrank the new run's in keep-last and resume)."""
    found = sorted(directory.glob("step_*.pt")) if directory.is_dir() else []
    for path in found:
        path.unlink(missing_ok=True)
        checksum_path(path).unlink(missing_ok=True)
    (directory / LATEST).unlink(missing_ok=True)
    return len(found)


def remove_stale_temporaries(*directories: Path) -> list[Path]:
    """Delete the temporary files a killed writer left (`.NAME.XXXX.tmp` of `files.atomic_path`)."""
    removed = []
    for directory in directories:
        for tmp in directory.glob(".*.tmp") if directory.is_dir() else ():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


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
