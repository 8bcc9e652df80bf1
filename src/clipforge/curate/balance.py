"""MetaCLIP balancing: cap how many pairs each metadata entry brings, keeping the tail whole.

With `count(e)` the number of pairs whose caption matches entry `e` over the whole pool and a
threshold `t`, each entry gets a keep probability `p(e) = t / max(count(e), t)`: 1 for the tail
(`count(e) <= t`), `t / count(e)` for the head. A pair matching entries `E` is kept if, for any
`e` in `E`, an independent Bernoulli(`p(e)`) draw succeeds: it is kept with probability
`1 - prod_{e in E} (1 - p(e))`, always if any of its entries is in the tail. A pair matching no
entry is dropped. The expected number of pairs an over-`t` entry keeps is therefore at least `t`
(exactly `t` for pairs matching that entry alone).

The draw for (pair, entry) is a pure function of (seed, row index, entry id) (splitmix64, 53-bit
uniform), so the result does not depend on the order rows are visited, on chunk sizes, or on which
worker handles which shard: a distributed engine can count per shard, sum the counts, then sample
per shard with the global row offset of each shard.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_MASK64 = (1 << 64) - 1


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser of each uint64 of `x` (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def uniform_draws(seed: int, rows: np.ndarray, entries: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) numbers, one per (row, entry) pair, fixed by (seed, row, entry) alone."""
    base = _splitmix64(np.array([seed & _MASK64], dtype=np.uint64))
    x = _splitmix64(base ^ np.asarray(rows, dtype=np.uint64))
    x = _splitmix64(x ^ np.asarray(entries, dtype=np.uint64))
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def check_threshold(t: float) -> float:
    if not np.isfinite(t) or t <= 0:
        raise ValueError(f"the balancing threshold t must be a positive number of pairs per entry, got {t}")
    return float(t)


def keep_probabilities(counts: np.ndarray, t: float) -> np.ndarray:
    """`p(e) = t / max(count(e), t)` for each entry (1 for entries at or under t, unmatched ones included)."""
    t = check_threshold(t)
    counts = np.asarray(counts, dtype=np.float64)
    return t / np.maximum(counts, t)


def count_entries(matches: Sequence[Sequence[int]], n_entries: int) -> np.ndarray:
    """How many of the pairs in `matches` (entry ids per pair) match each entry (int64, length n_entries)."""
    flat = np.fromiter((i for ids in matches for i in ids), dtype=np.int64)
    return np.bincount(flat, minlength=n_entries).astype(np.int64)


def keep_pairs(matches: Sequence[Sequence[int]], first_row: int, probabilities: np.ndarray, seed: int) -> np.ndarray:
    """Which pairs to keep (bool per pair): row `first_row + i` has matched entry ids `matches[i]`."""
    n = len(matches)
    sizes = np.fromiter((len(ids) for ids in matches), dtype=np.int64, count=n)
    entries = np.fromiter((i for ids in matches for i in ids), dtype=np.int64, count=int(sizes.sum()))
    local = np.repeat(np.arange(n, dtype=np.int64), sizes)
    draws = uniform_draws(seed, local + first_row, entries)
    success = draws < probabilities[entries]  # p = 1 always succeeds: draws are < 1
    return np.bincount(local[success], minlength=n) > 0
