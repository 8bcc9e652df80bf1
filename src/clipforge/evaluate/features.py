"""Frozen features for evaluation, cached so re-running an evaluation does not touch the model.

Embedding goes through the shared pipeline (`clipforge.data.embedding`) and caching through the
shared cache (`clipforge.data.cache`), keyed by the encoder's weights and runtime, the
preprocessing or tokenizer, and the data. Image features are stored *un-normalised* (the linear
probe needs them raw; zero-shot and retrieval normalise on the fly) and written straight into a
memory-mapped file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..data.cache import FeatureCache, digest, encoder_key, preprocess_fingerprint, tokenizer_fingerprint
from ..data.embedding import ImageFeatures, Preprocess, embed_images, embed_texts
from ..runtime import Encoder
from .datasets import EvalDataset

__all__ = ["FeatureExtractor", "ImageFeatures"]


class FeatureExtractor:
    """Embeds datasets and texts with one encoder, reading and writing the feature cache.

    `cache_dir=None` disables caching. `encode_calls` counts encoder calls (handy to check caching).
    """

    def __init__(
        self,
        model: Encoder,
        preprocess: Preprocess,
        tokenizer: Callable,
        cache_dir: str | Path | None = None,
        batch_size: int = 64,
        num_workers: int | None = None,
        progress: bool = True,
    ) -> None:
        self.model, self.preprocess, self.tokenizer = model, preprocess, tokenizer
        self.cache = FeatureCache(cache_dir) if cache_dir is not None else None
        self.batch_size, self.num_workers, self.progress = batch_size, num_workers, progress
        self.model_hash = model.fingerprint()
        who = encoder_key(model)
        self._image_key = digest(who, preprocess_fingerprint(preprocess))
        self._text_key = digest(who, tokenizer_fingerprint(tokenizer))
        self._calls = [0]
        # this run's results, so no-cache runs do not embed twice
        self._image_memo: dict[str, ImageFeatures] = {}
        self._text_memo: dict[str, np.ndarray] = {}

    @property
    def encode_calls(self) -> int:
        return self._calls[0]

    def images(self, dataset: EvalDataset) -> ImageFeatures:
        """Un-normalised image features [n_kept, d] (a read-only memmap when cached)."""
        key = f"img-{digest(self._image_key, dataset.fingerprint)}"
        if key in self._image_memo:
            return self._image_memo[key]
        found = self.cache.load(key) if self.cache is not None else None
        if found is not None and self.cache is not None:
            result = ImageFeatures(found, self.cache.kept(key, len(dataset)), self.cache.skipped(key), cached=True)
        else:
            result = self._extract(dataset, key)
        self._image_memo[key] = result
        return result

    def _extract(self, dataset: EvalDataset, key: str) -> ImageFeatures:
        n = len(dataset)
        out = self.cache.partial(key, (n, self.model.embed_dim)) if self.cache is not None and n else None
        result = embed_images(
            self.model,
            self.preprocess,
            dataset.images,
            batch_size=self.batch_size,
            num_workers=self.num_workers if self.num_workers is not None else (0 if n <= 4 * self.batch_size else 2),
            progress=self.progress,
            desc=f"embedding {dataset.title}",
            name=lambda i: f"{dataset.title}[{i}]",
            out=out,
            counter=self._calls,
        )
        if out is None or self.cache is None:
            return result
        del result.features
        features = self.cache.commit(key, out, result.kept, result.skipped)
        return ImageFeatures(features, result.kept, result.skipped)

    def texts(self, texts: Sequence[str], desc: str = "embedding texts") -> np.ndarray:
        """Un-normalised text features [len(texts), d], cached by the exact list of texts."""
        key = f"txt-{digest(self._text_key, list(texts))}"
        if key in self._text_memo:
            return self._text_memo[key]
        found = self.cache.load(key) if self.cache is not None else None
        if found is None:
            found = embed_texts(
                self.model, self.tokenizer, texts, batch_size=max(self.batch_size, 256),
                progress=self.progress, desc=desc, counter=self._calls,
            )
            if self.cache is not None:
                self.cache.save(key, found)
        self._text_memo[key] = found
        return found
