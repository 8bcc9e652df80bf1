"""Frozen features for evaluation, cached on disk so re-running an evaluation does not touch the model.

Cache entries are `.npy` files named by a hash of everything the numbers depend on: the model
(weights + config), the data (dataset fingerprint, or the texts), the preprocessing, the dtype, the
device type and the inference engine, if any. Image features are stored *un-normalised* (the linear
probe needs them raw; zero-shot and retrieval normalise on the fly). Extraction writes straight into
a memory-mapped file, so a million-image corpus never has to fit in RAM twice.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..images import ImageDecodeError, SkipLog
from .datasets import EvalDataset, ImageSource, digest

_PROBE_TEXTS = ["a photo of a red circle.", "Zebra-crossing, 42 cafés!", "the"]


def model_fingerprint(model: torch.nn.Module) -> str:
    """Hash of the config and every parameter/buffer (names, dtypes, shapes, bytes)."""
    h = hashlib.sha256()
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        h.update(json.dumps(config.to_dict(), sort_keys=True, default=str).encode())
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()[:24]


def tokenizer_fingerprint(tokenizer: Callable) -> str:
    """Class, context length and the ids of a few probe texts (enough to tell tokenizers apart)."""
    tokens = tokenizer(_PROBE_TEXTS)
    return digest(type(tokenizer).__name__, getattr(tokenizer, "context_length", None), tokens.numpy())


def preprocess_fingerprint(preprocess: Callable) -> str:
    config = getattr(preprocess, "config", None)
    return digest(type(preprocess).__name__, repr(config) if config is not None else repr(preprocess))


@dataclass
class ImageFeatures:
    """Features of the images that could be read (`kept` indexes the dataset) and what was skipped."""

    features: np.ndarray
    kept: np.ndarray
    skipped: SkipLog = field(default_factory=SkipLog)
    cached: bool = False


class _Pixels(Dataset):
    def __init__(self, images: ImageSource, preprocess: Callable) -> None:
        self.images, self.preprocess = images, preprocess

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str]:
        try:
            return i, self.preprocess(self.images.load(i)), ""
        except ImageDecodeError as exc:
            return i, None, exc.reason
        except Exception as exc:  # one bad image must not end a long run
            return i, None, f"preprocessing failed ({type(exc).__name__}: {exc})"


def _collate(items: list[tuple[int, torch.Tensor | None, str]]):
    good = [(i, t) for i, t, _ in items if t is not None]
    return (
        [i for i, _ in good],
        (torch.stack([t for _, t in good]) if good else None),
        [(i, r) for i, t, r in items if t is None],
    )


def _atomic_save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


class FeatureExtractor:
    """Embeds datasets and texts with one model, reading and writing the feature cache.

    `cache_dir=None` disables caching. `encode_calls` counts model calls (handy to check caching).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        preprocess: Callable,
        tokenizer: Callable,
        cache_dir: str | Path | None = None,
        batch_size: int = 64,
        num_workers: int | None = None,
        progress: bool = True,
    ) -> None:
        self.model, self.preprocess, self.tokenizer = model, preprocess, tokenizer
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.batch_size, self.num_workers, self.progress = batch_size, num_workers, progress
        self.model_hash = model_fingerprint(model)
        dtype, device = getattr(model, "dtype", torch.float32), getattr(model, "device", torch.device("cpu"))
        self._runtime = f"{dtype}|{torch.device(device).type}"
        if getattr(model, "runtime", None):  # an inference engine: its kernels and precision change the numbers
            self._runtime += f"|{model.runtime}"
        self._image_key = digest(self.model_hash, preprocess_fingerprint(preprocess), self._runtime)
        self._text_key = digest(self.model_hash, tokenizer_fingerprint(tokenizer), self._runtime)
        self.encode_calls = 0
        self._memo: dict[str, object] = {}  # this run's results, so no-cache runs do not embed twice

    # -- images -----------------------------------------------------------------------------

    def images(self, dataset: EvalDataset) -> ImageFeatures:
        """Un-normalised image features [n_kept, d] (a read-only memmap when cached)."""
        key = f"img-{digest(self._image_key, dataset.fingerprint)}"
        if key in self._memo:
            return self._memo[key]  # type: ignore[return-value]
        path = self._path(key)
        if path is not None and path.is_file():
            kept_path = path.with_suffix(".kept.npy")
            kept = np.load(kept_path) if kept_path.is_file() else np.arange(len(dataset))
            result = ImageFeatures(np.load(path, mmap_mode="r"), kept, self._read_skips(path), cached=True)
        else:
            result = self._extract(dataset, path)
        self._memo[key] = result
        return result

    @torch.no_grad()
    def _extract(self, dataset: EvalDataset, path: Path | None) -> ImageFeatures:
        n, dim = len(dataset), self.model.config.embed_dim
        if n == 0:
            return ImageFeatures(np.zeros((0, dim), np.float32), np.zeros(0, np.int64))
        workers = self.num_workers if self.num_workers is not None else (0 if n <= 4 * self.batch_size else 2)
        loader = DataLoader(
            _Pixels(dataset.images, self.preprocess),
            batch_size=self.batch_size,
            num_workers=workers,
            collate_fn=_collate,
        )
        tmp = path.with_suffix(f".tmp{os.getpid()}.npy") if path is not None else None
        out = np.lib.format.open_memmap(tmp, "w+", np.float32, (n, dim)) if tmp else np.empty((n, dim), np.float32)
        ok = np.zeros(n, bool)
        skipped = SkipLog()
        device, dtype = self.model.device, self.model.dtype
        with tqdm(total=n, desc=f"embedding {dataset.title}", unit="img", disable=not self.progress) as bar:
            for idx, pixels, bad in loader:
                for i, reason in bad:
                    skipped.add(f"{dataset.title}[{i}]", reason)
                if pixels is not None:
                    self.encode_calls += 1
                    feats = self.model.encode_image(pixels.to(device=device, dtype=dtype), normalize=False)
                    out[idx] = feats.float().cpu().numpy()
                    ok[idx] = True
                bar.update(len(idx) + len(bad))
        kept = np.flatnonzero(ok)
        features: np.ndarray = out
        if len(kept) < n:  # compact the rows of unreadable images away (rare path)
            features = np.ascontiguousarray(out[kept])
        if path is None:
            return ImageFeatures(features, kept, skipped)
        # The features file appears last: its presence is what marks the entry complete.
        self._write_skips(path, skipped)
        if len(kept) < n:
            del out
            _atomic_save(path.with_suffix(".kept.npy"), kept)
            _atomic_save(path, features)
            tmp.unlink(missing_ok=True)  # type: ignore[union-attr]
        else:
            out.flush()
            del out
            os.replace(tmp, path)  # type: ignore[arg-type]
        return ImageFeatures(np.load(path, mmap_mode="r"), kept, skipped)

    # -- texts ------------------------------------------------------------------------------

    @torch.no_grad()
    def texts(self, texts: Sequence[str], desc: str = "embedding texts") -> np.ndarray:
        """Un-normalised text features [len(texts), d], cached by the exact list of texts."""
        key = f"txt-{digest(self._text_key, list(texts))}"
        if key in self._memo:
            return self._memo[key]  # type: ignore[return-value]
        path = self._path(key)
        if path is not None and path.is_file():
            self._memo[key] = np.load(path, mmap_mode="r")
            return self._memo[key]  # type: ignore[return-value]
        out = np.empty((len(texts), self.model.config.embed_dim), np.float32)
        bs = max(self.batch_size, 256)
        for s in tqdm(range(0, len(texts), bs), desc=desc, unit="batch", disable=not self.progress):
            tokens = self.tokenizer(list(texts[s : s + bs])).to(self.model.device)
            self.encode_calls += 1
            out[s : s + bs] = self.model.encode_text(tokens, normalize=False).float().cpu().numpy()
        if path is not None:
            _atomic_save(path, out)
        self._memo[key] = out
        return out

    # -- cache files ------------------------------------------------------------------------

    def _path(self, stem: str) -> Path | None:
        if self.cache_dir is None:
            return None
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        return self.cache_dir / f"{stem}.npy"

    @staticmethod
    def _write_skips(path: Path, skipped: SkipLog) -> None:
        if skipped.count:
            meta = {"count": skipped.count, "items": skipped.items}
            path.with_suffix(".skipped.json").write_text(json.dumps(meta))

    @staticmethod
    def _read_skips(path: Path) -> SkipLog:
        log = SkipLog()
        meta_path = path.with_suffix(".skipped.json")
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            for source, reason in meta["items"]:
                log.add(source, reason)
            log.count = int(meta["count"])
        return log
