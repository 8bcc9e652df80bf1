"""Embeddings of a manifest's rows, for the filters that judge rows by them (CLIP score, SemDeDup).

Images go through the one embedding pipeline (`clipforge.data.embedding`: workers, skip-and-count);
a row whose image cannot be read is marked unreadable and named in the skip log, never fatal. All
features are L2-normalised float32, one row per manifest row (zeros where there is nothing to embed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..data.embedding import embed_images, embed_texts
from ..data.images import FileImages
from ..images import SkipLog
from ..runtime.protocol import Encoder
from .manifest import ManifestStream


@dataclass
class RowFeatures:
    """Per manifest row: image features and whether the image was read; caption features and whether
    the row had a caption (when captions were asked for)."""

    images: np.ndarray
    readable: np.ndarray
    captions: np.ndarray | None = None
    has_caption: np.ndarray | None = None
    skipped: SkipLog = field(default_factory=SkipLog)

    def __len__(self) -> int:
        return len(self.readable)


def embed_rows(
    stream: ManifestStream,
    encoder: Encoder,
    preprocess: Callable,
    tokenizer: Callable | None = None,
    chunk_size: int = 10000,
    batch_size: int = 64,
    progress: bool = True,
) -> RowFeatures:
    """Embed every row's image (and, with `tokenizer`, its first caption), chunk by chunk."""
    dim = encoder.embed_dim
    images, readable, captions, has_caption = [], [], [], []
    skipped = SkipLog()
    for chunk in stream.chunks(chunk_size):
        paths = stream.image_paths(chunk)
        rows = [i for i, p in enumerate(paths) if p is not None]
        for i, p in enumerate(paths):
            if p is None:
                skipped.add(f"{stream.path} row {chunk.first_row + i}", "no image in the image column")
        feats = np.zeros((len(paths), dim), np.float32)
        ok = np.zeros(len(paths), bool)
        if rows:
            files = FileImages(tuple(p for p in paths if p is not None))
            out = embed_images(
                encoder,
                preprocess,
                files,
                batch_size=batch_size,
                normalize=True,
                progress=progress,
                desc=f"embedding images (rows {chunk.first_row}-)",
                name=lambda j: str(files.paths[j]),
            )
            picked = np.asarray(rows)[out.kept]
            feats[picked], ok[picked] = out.features, True
            skipped.merge(out.skipped)
        images.append(feats)
        readable.append(ok)
        if tokenizer is not None:
            texts = [t[0] if t else "" for t in chunk.texts]
            text_feats = np.zeros((len(texts), dim), np.float32)
            present = np.asarray([bool(t.strip()) for t in texts], bool)
            if present.any():
                chosen = [t for t, keep in zip(texts, present) if keep]
                text_feats[present] = embed_texts(encoder, tokenizer, chosen, normalize=True, progress=False)
            captions.append(text_feats)
            has_caption.append(present)
    empty = np.zeros((0, dim), np.float32)
    return RowFeatures(
        np.concatenate(images) if images else empty,
        np.concatenate(readable) if readable else np.zeros(0, bool),
        (np.concatenate(captions) if captions else empty) if tokenizer is not None else None,
        (np.concatenate(has_caption) if has_caption else np.zeros(0, bool)) if tokenizer is not None else None,
        skipped,
    )
