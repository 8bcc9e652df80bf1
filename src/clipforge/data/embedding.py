"""The one embedding pipeline: decode in DataLoader workers, skip and count bad images, batch the encoder.

Every caller that turns many images or texts into features (`embed`, `classify`, `index build`,
evaluation, adaptation, training validation, the demo) goes through `embed_images` / `embed_texts`,
so skipping, progress, device/dtype handling and the output layout are the same everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..images import ImageDecodeError, SkipLog
from ..runtime.protocol import Encoder, pixel_input
from .images import ImageSource

Preprocess = Callable[..., torch.Tensor]


class _Decoded(Dataset):
    """Item i → (i, preprocessed pixels, "") or (i, None, reason): one bad image never ends a run."""

    def __init__(self, images: ImageSource, preprocess: Preprocess) -> None:
        self.images, self.preprocess = images, preprocess

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str]:
        try:
            return i, self.preprocess(self.images.load(i)), ""
        except ImageDecodeError as exc:
            return i, None, exc.reason
        except Exception as exc:  # a missing tar, an odd file, a failing transform: skip the item, not the run
            return i, None, f"preprocessing failed ({type(exc).__name__}: {exc})"


def _collate(items: list[tuple[int, torch.Tensor | None, str]]):
    good = [(i, t) for i, t, _ in items if t is not None]
    pixels = torch.stack([t for _, t in good]) if good else None
    return [i for i, _ in good], pixels, [(i, r) for i, t, r in items if t is None]


def default_workers(n: int, batch_size: int) -> int:
    """Worker processes for decoding: none for small jobs (start-up costs more than it saves), else 2."""
    return 0 if n <= 2 * batch_size else 2


@dataclass
class ImageFeatures:
    """Features of the images that could be read (`kept` indexes the source) and what was skipped."""

    features: np.ndarray
    kept: np.ndarray
    skipped: SkipLog = field(default_factory=SkipLog)
    cached: bool = False


@torch.no_grad()
def embed_images(
    encoder: Encoder,
    preprocess: Preprocess,
    images: ImageSource,
    *,
    batch_size: int = 64,
    num_workers: int | None = None,
    normalize: bool = False,
    progress: bool = True,
    desc: str = "embedding images",
    name: Callable[[int], str] = lambda i: f"item {i}",
    out: np.ndarray | None = None,
    on_progress: Callable[[int], None] | None = None,
    counter: list[int] | None = None,
) -> ImageFeatures:
    """Image features [n_kept, embed_dim] (float32) in source order; unreadable images are skipped and counted.

    `name(i)` labels item i in the skip log. `out` (e.g. a memory-mapped array of `len(images)` rows)
    receives row i of every readable image in place, so a huge corpus is never held twice.
    `on_progress(n)` is called after each batch; `counter[0]` counts encoder calls.
    """
    n, dim = len(images), encoder.embed_dim
    buffer = out if out is not None else np.empty((n, dim), np.float32)
    ok = np.zeros(n, bool)
    skipped = SkipLog()
    if n:
        loader = DataLoader(
            _Decoded(images, preprocess),
            batch_size=batch_size,
            num_workers=default_workers(n, batch_size) if num_workers is None else num_workers,
            collate_fn=_collate,
        )
        with tqdm(total=n, desc=desc, unit="img", disable=not progress) as bar:
            for idx, pixels, bad in loader:
                for i, reason in bad:
                    skipped.add(name(i), reason)
                if pixels is not None:
                    feats = encoder.encode_image(pixel_input(encoder, pixels), normalize=normalize)
                    buffer[idx] = feats.float().cpu().numpy()
                    ok[idx] = True
                    if counter is not None:
                        counter[0] += 1
                bar.update(len(idx) + len(bad))
                bar.set_postfix(skipped=skipped.count)
                if on_progress is not None:
                    on_progress(len(idx) + len(bad))
    kept = np.flatnonzero(ok)
    features = buffer if len(kept) == n else np.ascontiguousarray(buffer[kept])
    return ImageFeatures(features, kept, skipped)


@torch.no_grad()
def embed_texts(
    encoder: Encoder,
    tokenizer: Callable[[list[str]], torch.Tensor],
    texts: Sequence[str],
    *,
    batch_size: int = 256,
    normalize: bool = False,
    progress: bool = True,
    desc: str = "embedding texts",
    counter: list[int] | None = None,
) -> np.ndarray:
    """Text features [len(texts), embed_dim] (float32), in order."""
    out = np.empty((len(texts), encoder.embed_dim), np.float32)
    for s in tqdm(range(0, len(texts), batch_size), desc=desc, unit="batch", disable=not progress):
        tokens = tokenizer(list(texts[s : s + batch_size])).to(encoder.device)
        out[s : s + batch_size] = encoder.encode_text(tokens, normalize=normalize).float().cpu().numpy()
        if counter is not None:
            counter[0] += 1
    return out


@torch.no_grad()
def encode_pixels(
    encoder: Encoder, pixels: torch.Tensor, batch_size: int = 256, normalize: bool = False
) -> torch.Tensor:
    """Features [N, embed_dim] (float32, CPU) of pixels already preprocessed, in batches."""
    out = [
        encoder.encode_image(pixel_input(encoder, pixels[i : i + batch_size]), normalize=normalize).float().cpu()
        for i in range(0, len(pixels), batch_size)
    ]
    return torch.cat(out) if out else torch.zeros(0, encoder.embed_dim)
