"""Training data: the pair sources of `clipforge.data.pairs`, mixed with sampling weights into epochs.

The epoch order is a pure function of (seed, epoch), so a run can resume mid-epoch at exactly the
next sample. Corrupt images and empty captions are skipped and counted, never fatal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..data.pairs import PairSource
from ..images import ImageDecodeError, load_image


@dataclass
class EpochPlan:
    """Which (source, index) is sample k of an epoch: a pure function of (seed, epoch).

    Sources are drawn with probability proportional to their weights; each source is walked in
    its own per-epoch permutation (wrapping around if drawn more often than it has items).
    """

    sizes: Sequence[int]
    weights: Sequence[float]
    samples_per_epoch: int
    seed: int

    def order(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch])
        w = np.asarray(self.weights, dtype=np.float64)
        choice = rng.choice(len(self.sizes), size=self.samples_per_epoch, p=w / w.sum())
        index = np.empty(self.samples_per_epoch, dtype=np.int64)
        for s, n in enumerate(self.sizes):
            pos = np.flatnonzero(choice == s)
            perm = np.random.default_rng([self.seed, epoch, s]).permutation(n)
            index[pos] = perm[np.arange(len(pos)) % n]
        return choice, index


class PairDataset(Dataset):
    """Item k of an epoch → (pixels, tokens) or None when the image or caption is unusable."""

    def __init__(
        self, sources: Sequence[PairSource], plan: EpochPlan, transform: Callable, tokenizer: Callable
    ) -> None:
        self.sources, self.plan, self.transform, self.tokenizer = list(sources), plan, transform, tokenizer
        self.epoch = 0
        self._order = plan.order(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._order = self.plan.order(epoch)

    def __len__(self) -> int:
        return self.plan.samples_per_epoch

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor] | tuple[None, str]:
        s, i = int(self._order[0][k]), int(self._order[1][k])
        source = self.sources[s]
        try:
            image, caption = source.item(i)
        except (OSError, ValueError, KeyError) as exc:
            return None, f"{source.name}[{i}]: unreadable item ({exc})"
        if not caption or not caption.strip():
            return None, f"{source.name}[{i}]: empty caption"
        try:
            if not isinstance(image, Image.Image):
                image = load_image(image)
        except ImageDecodeError as exc:
            return None, f"{exc.source if exc.source != '<stream>' else f'{source.name}[{i}]'}: {exc.reason}"
        generator = torch.Generator().manual_seed(sample_seed(self.plan.seed, self.epoch, k))
        return self.transform(image, generator=generator), self.tokenizer(caption)[0]


def sample_seed(seed: int, epoch: int, k: int) -> int:
    """Augmentation seed of sample k in an epoch: resuming mid-epoch replays identical crops."""
    return int(np.random.SeedSequence([seed, epoch, k]).generate_state(1, np.uint64)[0] >> 1)


def collate_pairs(items: list) -> tuple[torch.Tensor | None, torch.Tensor | None, list[str]]:
    """Stack the usable pairs; return the reasons for the rest so the trainer can count them."""
    good = [(p, t) for p, t in items if p is not None]
    bad = [reason for p, reason in items if p is None]
    if not good:
        return None, None, bad
    return torch.stack([p for p, _ in good]), torch.stack([t for _, t in good]), bad
