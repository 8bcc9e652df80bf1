"""Label-stratified partitions of a dataset (train/val/test splits, few-shot pools)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def stratified_split(labels: np.ndarray, fractions: Sequence[float], seed: int = 0) -> list[np.ndarray]:
    """Partition indices into len(fractions) parts with each class spread in proportion (sorted parts)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in fractions]
    bounds = np.cumsum(np.asarray(fractions, np.float64) / np.sum(fractions))
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        cuts = np.round(bounds * len(members)).astype(int)
        for p, (lo, hi) in enumerate(zip(np.r_[0, cuts[:-1]], cuts)):
            parts[p].extend(members[lo:hi].tolist())
    return [np.sort(np.asarray(p, np.int64)) for p in parts]
