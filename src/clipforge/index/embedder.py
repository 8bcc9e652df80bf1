"""Embed the items of one shard: decode in DataLoader workers, skip unreadable images, batch the model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..images import ImageDecodeError
from ..inference import embed_texts
from .sources import Item, load_item


class _Items(Dataset):
    def __init__(self, items: Sequence[Item], preprocess: Callable) -> None:
        self.items = list(items)
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str]:
        try:
            return i, self.preprocess(load_item(self.items[i])), ""
        except ImageDecodeError as exc:
            return i, None, exc.reason
        except Exception as exc:  # a missing tar, a bad transform: skip the item, never the run
            return i, None, f"{type(exc).__name__}: {exc}"


def _collate(batch: list[tuple[int, torch.Tensor | None, str]]):
    good = [(i, t) for i, t, _ in batch if t is not None]
    bad = [(i, r) for i, t, r in batch if t is None]
    pixels = torch.stack([t for _, t in good]) if good else None
    return [i for i, _ in good], pixels, bad


@dataclass
class ShardEmbeddings:
    """Embeddings of the readable items of a shard (`kept` = their positions in the shard)."""

    features: np.ndarray
    kept: list[int]
    caption_features: np.ndarray | None
    skipped: list[tuple[str, str]]


@torch.no_grad()
def embed_items(
    model,
    preprocess: Callable,
    tokenizer,
    items: Sequence[Item],
    batch_size: int = 64,
    num_workers: int = 0,
    captions: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> ShardEmbeddings:
    """L2-normalised image (and optionally caption) embeddings of `items`, in order."""
    loader = DataLoader(_Items(items, preprocess), batch_size=batch_size, num_workers=num_workers, collate_fn=_collate)
    feats: list[np.ndarray] = []
    kept: list[int] = []
    skipped: list[tuple[str, str]] = []
    for idx, pixels, bad in loader:
        for i, reason in bad:
            it = items[i]
            skipped.append((f"{it.path}:{it.member}" if it.in_tar else it.path, reason))
        if pixels is not None:
            out = model.encode_image(pixels.to(device=model.device, dtype=model.dtype), normalize=True)
            feats.append(out.float().cpu().numpy())
            kept.extend(idx)
        if on_progress:
            on_progress(len(idx) + len(bad))
    dim = model.config.embed_dim
    features = np.concatenate(feats) if feats else np.zeros((0, dim), np.float32)
    cap = None
    if captions:
        texts = [items[i].caption or "" for i in kept]
        cap = (
            embed_texts(model, tokenizer, texts, normalize=True, progress=False)
            if texts
            else np.zeros((0, dim), np.float32)
        )
    return ShardEmbeddings(features, kept, cap, skipped)
