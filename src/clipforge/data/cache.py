"""The one feature cache: `.npy` files named by a hash of everything the numbers depend on.

A key always includes the encoder's weights (`fingerprint()`), how it computes (`runtime`, input
dtype, device type) and the preprocessing or tokenizer, plus what the caller adds (the data's
fingerprint, the texts, the augmentation), so a bf16 run never reuses fp32 features and changed
weights or data recompute. Entries are written atomically; a present file is a complete entry.
Evaluation and adaptation both cache here.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..files import save_npy_atomic, write_json_atomic
from ..images import SkipLog
from ..runtime.protocol import Encoder

_PROBE_TEXTS = ["a photo of a red circle.", "Zebra-crossing, 42 cafés!", "the"]


def digest(*parts: Any) -> str:
    """A short stable hash of strings, bytes, numpy arrays and JSON-able values."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(str((part.dtype.str, part.shape)).encode())
            h.update(np.ascontiguousarray(part).tobytes())
        elif isinstance(part, bytes):
            h.update(part)
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()[:24]


def files_fingerprint(paths: Sequence[Path]) -> str:
    """Identity of a file list: names, sizes and modification times (content changes show in both)."""
    h = hashlib.sha256()
    for p in paths:
        try:
            st = p.stat()
            h.update(f"{p}\x00{st.st_size}\x00{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}\x00missing\n".encode())
    return h.hexdigest()[:24]


def tokenizer_fingerprint(tokenizer: Callable) -> str:
    """Class, context length and the ids of a few probe texts (enough to tell tokenizers apart)."""
    tokens = tokenizer(_PROBE_TEXTS)
    return digest(type(tokenizer).__name__, getattr(tokenizer, "context_length", None), tokens.numpy())


def preprocess_fingerprint(preprocess: Callable) -> str:
    config = getattr(preprocess, "config", None)  # ImageTransform has one; any callable is accepted
    return digest(type(preprocess).__name__, repr(config) if config is not None else repr(preprocess))


def encoder_key(encoder: Encoder) -> str:
    """Weights and runtime of an encoder: the part of every cache key that says who computed."""
    return digest(encoder.fingerprint(), encoder.runtime, str(encoder.dtype), encoder.device.type)


class FeatureCache:
    """Arrays in `directory`, one `.npy` per key (with an optional `.kept.npy` and `.skipped.json`)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.npy"

    def load(self, key: str) -> np.ndarray | None:
        """The cached array (memory-mapped, read-only), or None."""
        path = self.path(key)
        return np.load(path, mmap_mode="r") if path.is_file() else None

    def save(self, key: str, array: np.ndarray, kept: np.ndarray | None = None, skipped: SkipLog | None = None) -> None:
        """Store an entry; its side files first, the array last (its presence marks the entry complete)."""
        self.save_side_files(key, kept, skipped)
        save_npy_atomic(self.path(key), array)

    def save_side_files(self, key: str, kept: np.ndarray | None, skipped: SkipLog | None) -> None:
        path = self.path(key)
        if skipped is not None and skipped.count:
            write_json_atomic(path.with_suffix(".skipped.json"), {"count": skipped.count, "items": skipped.items})
        if kept is not None:
            save_npy_atomic(path.with_suffix(".kept.npy"), kept)

    def partial(self, key: str, shape: tuple[int, int]) -> np.ndarray:
        """A float32 memory-mapped array to fill in place (a huge corpus is never held in RAM twice);
        `commit` turns it into the entry."""
        return np.lib.format.open_memmap(self._partial_path(key), "w+", np.float32, shape)

    def commit(self, key: str, partial: np.ndarray, kept: np.ndarray, skipped: SkipLog) -> np.ndarray:
        """Make a filled `partial` array the entry (only the `kept` rows); returns the entry, memory-mapped."""
        tmp = self._partial_path(key)
        if len(kept) == len(partial):
            if skipped.count:
                self.save_side_files(key, kept, skipped)
            assert isinstance(partial, np.memmap)
            partial.flush()
            del partial
            os.replace(tmp, self.path(key))  # same directory: atomic
        else:  # compact the rows of unreadable images away (rare path)
            self.save(key, np.ascontiguousarray(partial[kept]), kept, skipped)
            del partial
            tmp.unlink(missing_ok=True)
        return np.load(self.path(key), mmap_mode="r")

    def _partial_path(self, key: str) -> Path:
        return self.path(key).with_suffix(f".partial{os.getpid()}.npy")

    def kept(self, key: str, n: int) -> np.ndarray:
        """Which rows of the data the entry holds (all `n` unless some were skipped)."""
        path = self.path(key).with_suffix(".kept.npy")
        return np.load(path) if path.is_file() else np.arange(n)

    def skipped(self, key: str) -> SkipLog:
        log = SkipLog()
        path = self.path(key).with_suffix(".skipped.json")
        if path.is_file():
            meta = json.loads(path.read_text(encoding="utf-8"))
            for source, reason in meta["items"]:
                log.add(source, reason)
            log.count = int(meta["count"])
        return log

    def get(self, parts: Sequence[Any], compute: Callable[[], np.ndarray]) -> np.ndarray:
        """The entry for `parts`, computed (and stored) on a miss."""
        key = digest(*parts)
        found = self.load(key)
        if found is not None:
            return np.asarray(found)
        value = compute()
        self.save(key, value)
        return value
