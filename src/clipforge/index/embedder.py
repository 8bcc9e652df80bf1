"""Embed the items of one shard through the shared pipeline (`clipforge.data.embedding`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..data.embedding import Preprocess, embed_images, embed_texts
from ..data.inputs import Item, item_images
from ..images import SkipLog
from ..runtime import Encoder


@dataclass
class ShardEmbeddings:
    """Embeddings of the readable items of a shard (`kept` = their positions in the shard)."""

    features: np.ndarray
    kept: list[int]
    caption_features: np.ndarray | None
    skipped: SkipLog


def embed_items(
    model: Encoder,
    preprocess: Preprocess,
    tokenizer: Callable,
    items: Sequence[Item],
    batch_size: int = 64,
    num_workers: int = 0,
    captions: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> ShardEmbeddings:
    """L2-normalised image (and optionally caption) embeddings of `items`, in order."""
    images = item_images(items)
    res = embed_images(
        model, preprocess, images, batch_size=batch_size, num_workers=num_workers, normalize=True,
        progress=False, name=images.name, on_progress=on_progress,
    )
    kept = res.kept.tolist()
    cap = None
    if captions:
        texts = [items[i].caption or "" for i in kept]
        cap = embed_texts(model, tokenizer, texts, normalize=True, progress=False)
    return ShardEmbeddings(res.features, kept, cap, res.skipped)
