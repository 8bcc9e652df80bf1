"""Linear probe: C search protocol, refit, few-shot sampling."""

from __future__ import annotations

import numpy as np
import pytest

from clipforge.probe import COARSE_GRID, _Fitter, linear_probe, mean_std, sample_shots, search_C

pytest.importorskip("sklearn")


def blobs(n_per_class: int, seed: int, n_classes: int = 4, dim: int = 6, spread: float = 1.0):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(scale=3.0, size=(n_classes, dim))
    y = np.repeat(np.arange(n_classes), n_per_class)
    return (centres[y] + spread * rng.normal(size=(len(y), dim))).astype(np.float32), y


def test_search_tries_the_coarse_grid_then_bisects():
    train, val = blobs(15, 0, spread=3.0), blobs(10, 1, spread=3.0)
    fitter = _Fitter()
    best, tried = search_C(train, val, steps=4, fitter=fitter)
    cs = [c for c, _ in tried]
    assert set(COARSE_GRID) <= set(cs)
    assert len(cs) <= len(COARSE_GRID) + 4  # grid neighbours are grid points: 4 new Cs at most
    refined = [c for c in cs if c not in COARSE_GRID]
    assert refined and all(1e-6 <= c <= 1e6 for c in refined)
    accs = dict(tried)
    assert accs[best] == max(accs.values())
    assert best == min(c for c, a in tried if a == accs[best])  # ties prefer more regularisation


def test_linear_probe_separates_blobs_and_refits_on_train_plus_val():
    res = linear_probe(blobs(20, 0), blobs(10, 1), blobs(25, 2))
    assert res["test_accuracy"] > 0.95
    assert res["n_train"] == 80 + 40 and res["n_test"] == 100
    assert res["ranked_classes"].shape == (100, 4)
    only_train = linear_probe(blobs(20, 0), blobs(10, 1), blobs(25, 2), refit_on_val=False, steps=2)
    assert only_train["n_train"] == 80


def test_linear_probe_refuses_one_class():
    x, y = blobs(5, 0)
    with pytest.raises(ValueError, match="two classes"):
        linear_probe((x[:5], y[:5]), (x, y), (x, y))


def test_sample_shots():
    y = np.array([0] * 10 + [1] * 3 + [2] * 6)
    a = sample_shots(y, 4, seed=0)
    assert np.bincount(y[a]).tolist() == [4, 3, 4]  # class 1 has only 3
    assert np.array_equal(a, sample_shots(y, 4, seed=0))
    assert not np.array_equal(a, sample_shots(y, 4, seed=1))
    with pytest.raises(ValueError):
        sample_shots(y, 0, 0)


def test_mean_std():
    assert mean_std([0.5]) == (0.5, 0.0)
    m, s = mean_std([0.2, 0.4])
    assert m == pytest.approx(0.3) and s == pytest.approx(np.std([0.2, 0.4], ddof=1))
